"""train.py's schedules (transformers.get_scheduler, same values as the formulas used
before), its progress bar in log files (plain lines, at most one per 30 s) and its
TensorBoard event files."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch

from babydistill.train import trainer as tr
from babydistill.train.callbacks import standard_callbacks
torch.set_num_threads(1)


def formula_before(step: int, schedule: str, warmup: int, total: int) -> float:
    """train.lr_factor as written by hand before it came from get_scheduler."""
    if step < warmup:
        return step / max(1, warmup)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


@pytest.mark.parametrize("schedule", tr.SCHEDULES)
@pytest.mark.parametrize("warmup,total", [(0, 50), (10, 110), (7, 13), (20, 400)])
def test_schedule_is_get_scheduler_with_the_same_values(schedule, warmup, total):
    from transformers import get_scheduler

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=3e-3)
    sched = tr.build_scheduler(opt, schedule, warmup, total)
    hf_name = {"constant": "constant_with_warmup"}.get(schedule, schedule)
    ref = get_scheduler(hf_name, torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-3),
                        num_warmup_steps=warmup, num_training_steps=total)
    for step in range(total + 2):
        lr = opt.param_groups[0]["lr"]
        assert lr == ref.optimizer.param_groups[0]["lr"]
        assert tr.lr_factor(step, schedule, warmup, total) * 3e-3 == pytest.approx(lr, rel=1e-15)
        before = formula_before(step, schedule, warmup, total)
        if schedule == "linear":  # (T - s) / (T - w) rounds differently from 1 - (s - w) / (T - w)
            assert tr.lr_factor(step, schedule, warmup, total) == pytest.approx(before, abs=1e-15)
        else:  # cosine (both configs) and constant: bit for bit, so trained weights do not change
            assert tr.lr_factor(step, schedule, warmup, total) == before
        opt.step()
        sched.step()
        ref.optimizer.step()
        ref.step()


# A run of many quick steps with stderr going to a file, as under Snakemake's `2> {log}`.
SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np, torch
    from babydistill.data.chunks import TrainChunks
    from babydistill.models.build import build_model
    from babydistill.train.trainer import LMObjective, train, progress_bar
    torch.set_num_threads(1)
    bar = progress_bar(3000, desc="bare")
    for i in range(3000):
        bar.set_postfix(loss=f"{1 / (i + 1):.3f}", refresh=False)
        bar.update(1)
    bar.close()
    t = np.tile(np.arange(3, 40), 200)
    torch.manual_seed(0)
    obj = LMObjective(build_model({"arch": "llama", "hidden_size": 16, "num_layers": 1,
        "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 32,
        "max_position_embeddings": 16}, 64))
    train({"lr": 1e-3, "epochs": 2, "batch_size": 2, "log_every": 1, "seed": 1},
          obj, TrainChunks(t, 8, random_offset=False, seed=1), None,
          sys.argv[1] + "/out", sys.argv[1] + "/ck")
""")


def test_progress_in_a_log_file_is_a_few_plain_lines(tmp_path):
    log = tmp_path / "stderr.log"
    with log.open("w") as f:
        subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], stderr=f, check=True,
                       timeout=600)
    steps = (6 * 200 // 8) // 2 * 2  # chunks of 8 tokens, batches of 2, 2 epochs
    assert (tmp_path / "out" / "train_summary.json").is_file()
    text = log.read_text()
    assert "\r" not in text and "Writing model shards" not in text, text
    lines = text.splitlines()
    bar_lines = [ln for ln in lines if "step" in ln and "|" in ln]
    # start and end per bar, plus one per 30 s at most (these runs take a few seconds)
    assert 2 <= len(bar_lines) <= 6, text
    assert len(text) < 4000, f"{len(text)} bytes for {steps} + 3000 steps"
    assert any("3000/3000" in ln for ln in bar_lines)


def test_tensorboard_event_files_per_run(tmp_path):
    # tensorboard is a pinned dependency: without it train() writes no events, and this fails
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from babydistill.data.chunks import EvalChunks, TrainChunks
    from babydistill.models.build import build_model

    torch.manual_seed(0)
    t = torch.arange(3, 40).repeat(60).numpy()
    obj = tr.LMObjective(build_model({"arch": "llama", "hidden_size": 16, "num_layers": 1,
                                      "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 32,
                                      "max_position_embeddings": 16}, 64))
    spec = {"lr": 1e-3, "epochs": 1, "batch_size": 4, "log_every": 2, "seed": 1}
    tr.train(spec, obj, TrainChunks(t, 8, random_offset=False, seed=1),
             EvalChunks(t, 8, n_chunks=8, seed=1), tmp_path / "out", tmp_path / "ck",
             callbacks=standard_callbacks(spec))
    events = list((tmp_path / "ck" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"loss", "lr", "eval_loss"} <= set(tags)
    assert [e.step for e in acc.Scalars("loss")][:2] == [2, 4]


# ---------------------------------------------------------------------------- MetricsLogger

def _rows(path):
    import csv
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _log_steps(logger, steps):
    for s in steps:
        logger.row(step=s, epoch=s / 10, loss=1.0 / s, lr=1e-3, tokens_per_s=10.0,
                   eval_loss="", logs="")


def test_metrics_logger_resume_appends_without_duplicate_rows(tmp_path):
    from babydistill.train.metrics import METRICS_FIELDS, MetricsLogger

    fields = METRICS_FIELDS + ["blimp_acc"]
    ref = MetricsLogger(tmp_path / "ref", fields, tensorboard=False)
    (tmp_path / "ref").mkdir()
    ref.open(0, 10, resumed=False)
    _log_steps(ref, range(1, 11))
    ref.close()

    run = tmp_path / "run"
    run.mkdir()
    first = MetricsLogger(run, fields, tensorboard=False)
    first.open(0, 10, resumed=False)
    _log_steps(first, range(1, 9))  # killed after step 8; the checkpoint is at step 5
    first.close()
    again = MetricsLogger(run, fields, tensorboard=False)
    again.open(5, 10, resumed=True)
    assert [int(r["step"]) for r in _rows(run / "metrics.csv")] == [1, 2, 3, 4, 5]
    _log_steps(again, range(6, 11))
    again.close()
    rows = _rows(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 11))
    assert (run / "metrics.csv").read_text() == (tmp_path / "ref" / "metrics.csv").read_text()

    # a fresh (not resumed) start truncates whatever was there
    fresh = MetricsLogger(run, fields, tensorboard=False)
    fresh.open(0, 10, resumed=False)
    fresh.close()
    assert _rows(run / "metrics.csv") == []


def test_metrics_logger_writes_nothing_off_the_main_process(tmp_path):
    from babydistill.train.metrics import METRICS_FIELDS, MetricsLogger

    other = MetricsLogger(tmp_path, METRICS_FIELDS, main=False)
    other.open(0, 3, resumed=False)
    _log_steps(other, [1, 2])
    other.progress(2, loss=1.0, tokens_per_s=1.0, lr=1e-3)
    other.close()
    assert list(tmp_path.iterdir()) == []
