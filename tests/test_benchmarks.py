"""Benchmark scripts that no other test runs: they still run, and what they compare agrees."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wml_loss_benchmark_runs_and_both_ways_agree():
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "wml_loss.py"), "--peers", "3", "--batch", "2",
                        "--seq", "8", "--vocab", "50", "--steps", "2"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    m = re.search(r"ratio n-pass / pairwise ([\d.]+); \|loss diff\| ([\d.e+-]+); max \|grad diff\| ([\d.e+-]+)",
                  p.stdout)
    assert m, p.stdout
    assert float(m.group(1)) > 0 and float(m.group(2)) < 1e-5 and float(m.group(3)) < 1e-5
    assert "pairwise (6 KL passes)" in p.stdout
