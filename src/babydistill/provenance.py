"""Provenance: what produced a model directory (config spec, inputs, code version, libraries).

Each model rule ends with
``python -m babydistill.provenance --model-dir DIR --spec JSON --input FILE ...``,
which writes ``DIR/provenance.json``, so every table cell can be traced back to the model
directory, the config that made it and the git commit of the code.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import platform
import subprocess
import time
from pathlib import Path

from .common import UserError, cli, parse_json_arg, write_json

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("babydistill", "torch", "transformers", "tokenizers", "lm-eval", "snakemake")


def git_state(repo: Path = REPO_ROOT) -> dict:
    """The commit of the code and whether the working tree had uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                               timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or "unknown", "dirty": bool(dirty) if dirty is not None else None}


def file_digest(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents, sorted)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def versions() -> dict:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = None
    out["python"] = platform.python_version()
    return out


def record(model_dir: Path, spec: dict, inputs: list[str]) -> dict:
    return {
        "model": model_dir.name,
        "model_dir": str(model_dir),
        "spec": spec,
        "spec_sha256": hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest(),
        "inputs": {i: file_digest(Path(i)) for i in inputs},
        "code": git_state(),
        "versions": versions(),
        "host": platform.node(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m babydistill.provenance", description=__doc__)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--spec", default="{}", help="the JSON spec the model was trained with")
    ap.add_argument("--input", action="append", default=[], help="an input file or folder")
    args = ap.parse_args(argv)
    model_dir = Path(args.model_dir)
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: model directory not found")
    for i in args.input:
        if not Path(i).exists():
            raise UserError(f"{i}: input not found")
    write_json(model_dir / "provenance.json", record(model_dir, parse_json_arg(args.spec, "--spec"),
                                                     args.input))


if __name__ == "__main__":
    main()
