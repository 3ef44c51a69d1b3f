"""Benchmark scripts that no other test runs: they still run, and what they compare agrees."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_precision_benchmark_runs_and_bf16_stays_close_with_fp32_master_weights(tmp_path):
    out = tmp_path / "precision.json"
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "precision.py"), "--presets", "llama-tiny",
                        "--batch-size", "2", "--seq-length", "16", "--vocab-size", "300", "--rounds", "1",
                        "--steps", "1", "--k", "16", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["train_step_speedup"]["llama-tiny"] > 0 and res["forward_speedup"]["llama-tiny"] > 0
    train = res["detail"]["llama-tiny"]["train"]
    # autocast leaves the parameters and the loss in fp32 (what the optimizer steps on)
    assert train["master_dtype"] == {"fp32": "torch.float32", "bf16": "torch.float32"}
    assert train["loss_dtype"] == {"fp32": "torch.float32", "bf16": "torch.float32"}
    assert abs(train["loss"]["fp32"] - train["loss"]["bf16"]) < 0.05
    assert res["topk_overlap"]["llama-tiny"] > 0.9 and 0 <= res["kl_per_token"]["llama-tiny"] < 1e-2
    assert "llama-tiny" in p.stdout and "native bf16" in p.stdout


def test_precision_benchmark_names_an_unknown_preset_in_one_line():
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "precision.py"), "--presets", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "'nope'" in p.stderr, p.stderr


def test_mlm_scoring_benchmark_runs_and_agrees_with_minicons(tmp_path, shared_subdir):
    pytest.importorskip("minicons")
    out = tmp_path / "mlm.json"
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "mlm_scoring.py"), "--suite-dir",
                        str(shared_subdir("blimp")), "--paradigms", "adjunct_island,wh_vs_that_with_gap",
                        "--limit", "4", "--hidden", "32", "--layers", "1", "--threads", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["pairs"] == 8 and res["identical_decisions"] == 8 and res["max_abs_diff"] < 1e-4
    assert res["minicons_pairs_per_s"] > 0 and res["fast_babylm2025_pairs_per_s"] > 0
