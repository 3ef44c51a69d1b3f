"""Running the real workflow from tests: the shrunk demo (tests/fixtures/demo_small.yaml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIGS = [str(REPO / "workflow" / "demo.yaml"), str(REPO / "tests" / "fixtures" / "demo_small.yaml")]
RUN = "demo-small"


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    """Snakemake on the repo's Snakefile, outputs under ``workdir``, the small demo config."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), *args, "--configfile", *DEMO_CONFIGS]


def env() -> dict:
    """Rules call `python -m babydistill...`: this interpreter's folder goes first on PATH."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def run_snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1800):
    r = subprocess.run(snakemake_cmd(workdir, *args), capture_output=True, text=True, env=env(),
                       cwd=workdir, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def compare_tables(first: Path, second: Path) -> tuple[set[str], list[str]]:
    """Two runs' ``tables/`` folders: (every file of the first, relative; those whose bytes
    differ in the second, or that it lacks)."""
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    different = [str(f) for f in files
                 if not (second / f).is_file() or (second / f).read_bytes() != (first / f).read_bytes()]
    return {str(f) for f in files}, different
