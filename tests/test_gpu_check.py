"""benchmarks/gpu_check.sh must keep working where there is no GPU: its quick mode on CPU
fills every row, skips the CUDA-only ones with a reason, and fails none."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~1-3 min on a shared 2-core machine (torchrun, lm-eval start-up)
def test_gpu_check_quick_runs_on_cpu(tmp_path):
    out = tmp_path / "rows.json"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable)
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--quick", "--json", str(out)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    by_check = {}
    for r in rows:
        by_check.setdefault(r["check"], []).append(r)
    assert set(by_check) == {"train", "matmul", "attention", "distill", "blimp", "torchrun"}
    skipped = [r for r in rows if r["status"] == "skipped"]
    # the compile rows and the flash kernel need CUDA; each says so
    assert {r["setting"] for r in skipped} == {"llama-tiny compile", "gpt2-tiny compile", "flash kernel"}
    assert all("CUDA" in r["result"] for r in skipped)
    assert all(r["status"] == "ok" for r in rows if r not in skipped)
    assert "weights equal" in by_check["torchrun"][0]["result"]
    assert "decisions identical 8/8" in by_check["blimp"][0]["result"]
    assert "gpu_check on cpu" in p.stdout  # the table itself
