"""``training.precision: auto``: bf16 autocast on CUDA and on CPUs with native bf16, fp32
elsewhere; the resolved precision is recorded, and a resumed run keeps the one it started with."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from babydistill.common import UserError, cpu_bf16_native, resolve_precision
from babydistill.train.checkpoint import load_file as load_checkpoint
from babydistill.train.trainer import TrainingStopped
from test_train import SPEC, data, objective, train, weights

X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
X86_OLD = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("text,native", [(X86_BF16, True), (X86_OLD, False), (ARM_BF16, True),
                                         ("", False)], ids=["avx512_bf16", "avx2", "arm-bf16", "empty"])
def test_native_bf16_is_read_from_cpuinfo(tmp_path, monkeypatch, text, native):
    monkeypatch.delenv("BABYDISTILL_CPU_BF16", raising=False)
    (tmp_path / "cpuinfo").write_text(text)
    assert cpu_bf16_native(tmp_path / "cpuinfo") is native
    assert cpu_bf16_native(tmp_path / "absent") is False  # macOS: no /proc, fp32


def test_auto_resolves_by_device_and_the_override(monkeypatch):
    monkeypatch.setenv("BABYDISTILL_CPU_BF16", "1")
    assert [resolve_precision("auto", d) for d in ("cpu", "cuda")] == ["bf16", "bf16"]
    monkeypatch.setenv("BABYDISTILL_CPU_BF16", "0")
    assert [resolve_precision("auto", d) for d in ("cpu", "cuda")] == ["fp32", "bf16"]
    assert resolve_precision("fp32", "cuda") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setenv("BABYDISTILL_CPU_BF16", "yes")
    with pytest.raises(UserError, match=r"^\$BABYDISTILL_CPU_BF16='yes': use 1 .* or unset it$"):
        resolve_precision("auto", "cpu")


def test_auto_trains_in_bf16_on_a_bf16_cpu_and_records_it(tmp_path, monkeypatch):
    tr, ev = data()
    spec = {**SPEC, "epochs": 1, "precision": "auto"}
    monkeypatch.setenv("BABYDISTILL_CPU_BF16", "0")
    fp32 = train(spec, objective(), tr, ev, tmp_path / "a", tmp_path / "cka")
    explicit = train({**spec, "precision": "fp32"}, objective(), tr, ev, tmp_path / "b", tmp_path / "ckb")
    monkeypatch.setenv("BABYDISTILL_CPU_BF16", "1")
    bf16 = train(spec, objective(), tr, ev, tmp_path / "c", tmp_path / "ckc")
    assert (fp32["precision"], explicit["precision"], bf16["precision"]) == ("fp32", "fp32", "bf16")
    assert json.loads((tmp_path / "c" / "train_summary.json").read_text())["precision"] == "bf16"
    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)        # auto without bf16 is fp32, bit for bit
    assert any(not torch.equal(a[k], c[k]) for k in a)    # the bf16 forward changed the steps
    assert all(c[k].dtype == torch.float32 for k in c)    # master weights stay fp32
    # ... and the run still learns about as well
    assert bf16["best_eval_loss"] == pytest.approx(fp32["best_eval_loss"], rel=0.05)


def test_a_resumed_run_keeps_the_precision_it_started_with(tmp_path, monkeypatch, caplog):
    tr, ev = data()
    spec = {**SPEC, "precision": "auto"}
    monkeypatch.setenv("BABYDISTILL_CPU_BF16", "1")
    ref = train(spec, objective(), tr, ev, tmp_path / "ref", tmp_path / "ck_ref")
    with pytest.raises(TrainingStopped):
        train({**spec, "stop_after_steps": 12}, objective(), tr, ev, tmp_path / "run", tmp_path / "ck")
    assert load_checkpoint(tmp_path / "ck" / "last.pt")["position"]["precision"] == "bf16"
    monkeypatch.setenv("BABYDISTILL_CPU_BF16", "0")  # resumed on a CPU without native bf16
    with caplog.at_level(logging.WARNING, logger="babydistill"):
        got = train(spec, objective(), tr, ev, tmp_path / "run", tmp_path / "ck")
    assert "resuming in bf16, the precision this run started with" in caplog.text
    assert got["precision"] == "bf16"
    a, b = weights(tmp_path / "ref"), weights(tmp_path / "run")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
