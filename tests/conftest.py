"""Shared fixtures: where the real data lives (../shared/data), and skips when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# `precision: auto` is bf16 on a CPU with native bf16 (babydistill.common.cpu_bf16_native): pin
# the detection to "no", so that every test's numbers are the same on every CI machine; the
# tests of the bf16 path set it themselves.
os.environ.setdefault("BABYDISTILL_CPU_BF16", "0")


def shared_data_dir() -> Path:
    """The read-only real data beside the checkout (../shared/data), or $BABYDISTILL_SHARED_DATA."""
    env = os.environ.get("BABYDISTILL_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Skip cleanly when the real data is not beside this checkout."""
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"real data not found at {d}")
    return d


@pytest.fixture(scope="session")
def shared_subdir(shared_data):
    def get(name: str) -> Path:
        p = shared_data / name
        if not p.exists():
            pytest.skip(f"real data {name} not found at {p}")
        return p

    return get


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory):
    """The whole demo DAG, shrunk (tests/fixtures/demo_small.yaml), run once per session
    with the local executor; returns the working directory holding results/."""
    from e2e import run_snakemake

    workdir = tmp_path_factory.mktemp("demo_small")
    run_snakemake(workdir, "--cores", "2")
    return workdir


@pytest.fixture
def small_fs(tmp_path):
    """A real 2 MiB filesystem (tmpfs) for the disk-full cases; skipped cleanly where the
    test cannot mount one (not root, or no mount permission in a container)."""
    import subprocess

    mnt = tmp_path / "small_fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
