"""Provenance: what produced a model directory (config spec, inputs, code version, libraries).

Each stage that saves a model (pretrain, distill, ensemble) ends with
``record_model(out, spec, stage_inputs(args))``, which writes ``DIR/provenance.json``, so
every table cell can be traced back to the model directory, the config that made it and the
git commit of the code (rule model_card's card reads it too). The CLI does the same for
any folder::

    python -m babydistill.config.provenance --model-dir DIR --spec JSON --input FILE ...
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from babydistill.common import (REPO_ROOT, UserError, cli, cpu_bf16_native, file_digest,
                                parse_json_arg, read_json, write_json)

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
        # what `precision: auto` saw here, and what the trainer ran in (train_summary.json)
        "cpu_bf16_native": cpu_bf16_native(),
        "precision": (read_json(model_dir / "train_summary.json").get("precision")
                      if (model_dir / "train_summary.json").is_file() else None),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def stage_inputs(args) -> list[str]:
    """The inputs a model stage records, from its own CLI arguments (an argparse namespace):
    the token splits' metadata (``--train``/``--dev`` PREFIX -> PREFIX.json), ``--tokenizer``,
    and the ``provenance.json`` of every teacher or member (``--teacher``; with ``--cache``,
    the teachers the cache was built from, as its header.json names them). The same list
    the model rules once passed to ``python -m babydistill.config.provenance --input``."""
    inputs = [f"{p}.json" for p in (getattr(args, "train", None), getattr(args, "dev", None)) if p]
    if getattr(args, "tokenizer", None):
        inputs.append(args.tokenizer)
    if getattr(args, "sweep_best", None):  # the best trial a sweep:<name>:best run trained
        inputs.append(args.sweep_best)
    teachers = list(getattr(args, "teacher", None) or [])
    if getattr(args, "cache", None) and not teachers:
        teachers = read_json(Path(args.cache) / "header.json").get("teachers") or []
    # a teacher from outside the workflow (no provenance.json) is recorded by its files
    return inputs + [f"{t}/provenance.json" if Path(t, "provenance.json").is_file() else str(t)
                     for t in teachers]


def record_model(model_dir: str | os.PathLike, spec: str | dict | None, inputs: list[str]) -> Path | None:
    """Write ``model_dir/provenance.json`` (``spec``: a dict, JSON text or @FILE; ``inputs``:
    files or folders, digested), once the model directory is complete.
    Rank 0 only under torchrun (the other ranks return None). Returns the provenance path."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    if isinstance(spec, str):
        spec = read_json(spec[1:]) if spec.startswith("@") else parse_json_arg(spec, "--spec")
    return write_provenance(model_dir, spec or {}, inputs)


def write_provenance(model_dir: str | os.PathLike, spec: dict, inputs: list[str]) -> Path:
    """``model_dir/provenance.json`` for ``spec`` and ``inputs`` (each must exist)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: model directory not found")
    for i in inputs:
        if not Path(i).exists():
            raise UserError(f"{i}: input not found")
    write_json(model_dir / "provenance.json", record(model_dir, spec, list(inputs)))
    return model_dir / "provenance.json"


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m babydistill.config.provenance", description=__doc__)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--spec", default="{}", help="the JSON spec the model was trained with")
    ap.add_argument("--input", action="append", default=[], help="an input file or folder")
    args = ap.parse_args(argv)
    write_provenance(args.model_dir, parse_json_arg(args.spec, "--spec"), args.input)


if __name__ == "__main__":
    main()
