"""The training loop: learning, resume after a kill, NaN stop, schedules, batch bookkeeping."""

from __future__ import annotations

import csv
import json
import logging
import math
import re

import numpy as np
import pytest
import torch

from babydistill.train.checkpoint import load_file as load_checkpoint
from babydistill.common import UserError
from babydistill.data.chunks import EvalChunks, TrainChunks
from babydistill.models.build import build_model
from babydistill.train import checkpoint, trainer
from babydistill.train.callbacks import Callback, standard_callbacks
from babydistill.config.specs import TrainSpec
from babydistill.train.trainer import LMObjective, Trainer, TrainingStopped, lr_factor

torch.set_num_threads(1)

LLAMA = {"arch": "llama", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1,
         "intermediate_size": 64, "max_position_embeddings": 64}
GPT2 = {"arch": "gpt2", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
        "max_position_embeddings": 32}  # GPT-2 keeps dropout 0.1: resume must restore RNG
VOCAB, SEQ = 64, 16


def tokens(n=6000, seed=0):
    """A mostly periodic stream (learnable in a few steps) with 10% random noise."""
    rng = np.random.default_rng(seed)
    t = np.tile(np.arange(3, 40), n // 37 + 1)[:n]
    return np.where(rng.random(n) < 0.1, rng.integers(3, VOCAB, n), t)


def data(n=6000):
    t = tokens(n)
    return (TrainChunks(t, SEQ, random_offset=True, seed=1),
            EvalChunks(tokens(1500, seed=5), SEQ, n_chunks=40, seed=1))


ROBERTA = {"arch": "roberta", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
           "intermediate_size": 64, "max_position_embeddings": 18}  # a masked LM, dropout 0.1


def objective(preset=LLAMA, seed=0):
    torch.manual_seed(seed)
    if preset["arch"] == "roberta":  # its masks are seeded by the run's seed, step and chunk
        from babydistill.train.masked_lm import MaskedLMObjective

        return MaskedLMObjective(build_model(preset, VOCAB), VOCAB, seed=SPEC["seed"])
    return LMObjective(build_model(preset, VOCAB))


SPEC = {"lr": 3e-3, "epochs": 2, "batch_size": 16, "warmup_steps": 3, "log_every": 4,
        "checkpoint_every": 5, "eval_every": 8, "seed": 3}


def train(spec, objective, train_data, eval_data, out_dir, checkpoint_dir, tokenizer_dir=None, *,
          blimp_suite=None, callbacks=(), **kw):
    """:func:`babydistill.train.trainer.train` given the callbacks a stage gives it: the
    standard ones (evaluator, BLiMP curve), then ``callbacks``."""
    return trainer.train(spec, objective, train_data, eval_data, out_dir, checkpoint_dir,
                         tokenizer_dir, callbacks=[*standard_callbacks(spec, tokenizer_dir, blimp_suite),
                                                   *callbacks], **kw)


def weights(out_dir):
    from safetensors.torch import load_file
    return load_file(str(out_dir / "model.safetensors"))


def test_tiny_run_eval_loss_falls_and_outputs(tmp_path):
    tr, ev = data()
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    summary = train({**SPEC, "eval_every": 0}, objective(), tr, ev, tmp_path / "out",
                    tmp_path / "ck", tok)
    with (tmp_path / "out" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    evals = [float(r["eval_loss"]) for r in rows if r["eval_loss"]]
    assert len(evals) == 2                          # eval_every 0: once per epoch
    assert evals[-1] < evals[0] < math.log(VOCAB)    # learning, and better than uniform
    assert summary["steps"] == 2 * tr.num_batches(16)
    assert summary["tokens"] == summary["steps"] * 16 * SEQ
    assert summary["best_eval_loss"] == pytest.approx(min(evals))
    saved = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert saved["steps"] == summary["steps"]
    assert (tmp_path / "out" / "tokenizer.json").read_text() == "{}"
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert m.config.vocab_size == VOCAB and m.config.eos_token_id == 2
    # No temporary directories left beside the output.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("preset", [GPT2, LLAMA, ROBERTA], ids=["gpt2-dropout", "llama", "roberta-mlm"])
def test_resume_after_kill_equals_uninterrupted(tmp_path, preset):
    tr, ev = data()
    ref = train(SPEC, objective(preset), tr, ev, tmp_path / "ref", tmp_path / "ck_ref")
    # Killed after step 12 (last checkpoint at step 10), then started again identically.
    with pytest.raises(TrainingStopped):
        train({**SPEC, "stop_after_steps": 12}, objective(preset), tr, ev, tmp_path / "run",
              tmp_path / "ck")
    assert not (tmp_path / "run").exists()
    ck = load_checkpoint(tmp_path / "ck" / "last.pt")
    assert ck["position"]["step"] == 10
    got = train(SPEC, objective(preset, seed=99), tr, ev, tmp_path / "run", tmp_path / "ck")
    a, b = weights(tmp_path / "ref"), weights(tmp_path / "run")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert got["best_eval_loss"] == ref["best_eval_loss"] and got["best_step"] == ref["best_step"]
    # metrics.csv has each step once, same as the uninterrupted run's
    def steps(d):
        with (d / "metrics.csv").open() as f:
            return [(r["step"], r["eval_loss"] != "") for r in csv.DictReader(f)]
    assert steps(tmp_path / "run") == steps(tmp_path / "ref")


def test_keep_best_vs_last(tmp_path):
    """keep=best writes the best eval checkpoint; keep=last the final weights."""
    tr, ev = data()
    spec = {**SPEC, "lr": 0.3, "warmup_steps": 0, "schedule": "constant", "grad_clip": 0}
    s = train({**spec, "keep": "last"}, objective(), tr, ev, tmp_path / "last", tmp_path / "c1")
    s2 = train({**spec, "keep": "best"}, objective(), tr, ev, tmp_path / "best", tmp_path / "c2")
    assert s2["best_step"] == s["best_step"]
    best = load_checkpoint(tmp_path / "c2" / "best.pt")["modules"]["model"]
    got = weights(tmp_path / "best")
    for k in got:
        torch.testing.assert_close(got[k], best[k])
    if s["best_step"] != s["steps"]:  # otherwise both are the same weights
        last = weights(tmp_path / "last")
        assert any(not torch.equal(last[k], got[k]) for k in got)


class NaNAt(LMObjective):
    def __init__(self, model, bad_step):
        super().__init__(model)
        self.calls, self.bad_step = 0, bad_step

    def loss(self, batch):
        self.calls += 1
        loss, logs = super().loss(batch)
        return (loss * float("nan") if self.calls == self.bad_step else loss), logs


def test_nan_stops_with_step_and_keeps_good_checkpoint(tmp_path):
    tr, ev = data()
    obj = NaNAt(build_model(LLAMA, VOCAB), bad_step=7)
    with pytest.raises(UserError, match=r"loss is nan at step 7\b"):
        train(SPEC, obj, tr, ev, tmp_path / "out", tmp_path / "ck")
    ck = load_checkpoint(tmp_path / "ck" / "last.pt")
    assert ck["position"]["step"] == 5
    assert all(torch.isfinite(v).all() for v in ck["modules"]["model"].values())
    assert not (tmp_path / "out").exists()


def test_schedule_values():
    assert lr_factor(0, "cosine", 10, 110) == 0.0
    assert lr_factor(5, "cosine", 10, 110) == 0.5
    assert lr_factor(10, "cosine", 10, 110) == 1.0
    assert lr_factor(60, "cosine", 10, 110) == pytest.approx(0.5)
    assert lr_factor(110, "cosine", 10, 110) == pytest.approx(0.0)
    assert lr_factor(35, "linear", 10, 110) == pytest.approx(0.75)
    assert lr_factor(100, "constant", 10, 110) == 1.0
    f = [lr_factor(s, "cosine", 10, 110) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(f, f[1:]))  # monotone decay after warm-up


def test_optimizer_follows_schedule_and_decay_groups(tmp_path):
    tr, ev = data()
    seen = []

    class Spy(LMObjective):
        def on_step(self, step, trainer):
            seen.append(trainer.optimizer.param_groups[0]["lr"])

    torch.manual_seed(0)
    obj = Spy(build_model(LLAMA, VOCAB))
    spec = {**SPEC, "weight_decay": 0.1, "max_steps": 12}
    t = Trainer(spec, obj, tr, ev, None)
    t.fit()
    # after step k the optimizer holds the lr of step k (0-based)
    assert seen == pytest.approx([3e-3 * lr_factor(k, "cosine", 3, 12) for k in range(1, 13)])
    decay, no_decay = t.optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(obj.model.parameters()))


def test_global_batch_is_the_same_with_grad_accum(tmp_path):
    """batch 16 as 1 x 16 or 4 x 4 micro batches: same steps, same tokens, same weights."""
    tr, ev = data()
    spec = {**SPEC, "epochs": 1, "eval_every": 0}
    a = train(spec, objective(), tr, ev, tmp_path / "a", tmp_path / "ca")
    b = train({**spec, "grad_accum": 4}, objective(), tr, ev, tmp_path / "b", tmp_path / "cb")
    assert a["steps"] == b["steps"] == tr.num_batches(16)
    assert a["tokens"] == b["tokens"]
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)
    t = Trainer({**spec, "grad_accum": 4}, objective(), tr, ev, None)
    assert t.micro_batch == 4
    with pytest.raises(UserError, match="train.batch_size: 16 is not a multiple"):
        Trainer({**spec, "grad_accum": 3}, objective(), tr, ev, None)


def test_resume_refuses_a_changed_spec(tmp_path):
    tr, ev = data()
    with pytest.raises(TrainingStopped):
        train({**SPEC, "stop_after_steps": 5}, objective(), tr, ev, tmp_path / "o", tmp_path / "ck")
    with pytest.raises(UserError, match="different train.lr"):
        train({**SPEC, "lr": 1e-3}, objective(), tr, ev, tmp_path / "o", tmp_path / "ck")


@pytest.mark.parametrize("key,value,match", [
    ("lr", -1, r"^train: lr: -1 is not valid \(less than or equal to the minimum of 0\)$"),
    ("schedule", "step", "^train: schedule: 'step' is not valid"),
    ("betas", [0.9], "^train: betas: list is not valid"),
    ("batch_size", 0, "^train: batch_size: 0 is not valid"),
    ("keep", "first", "^train: keep: 'first' is not valid"),
    ("optimizer", "sgd", "^train: optimizer: 'sgd' is not valid"),
    ("compile", "yes", "^train: compile: 'yes' is not valid"),
    ("precision", "float32", "^train: precision: 'float32' is not valid"),
    ("checkpoint_every", -1, "^train: checkpoint_every: -1 is not valid"),
    ("lerning_rate", 1, "^train: unknown key lerning_rate"),
])
def test_train_spec_errors(key, value, match):
    with pytest.raises(UserError, match=match):
        TrainSpec.from_json({key: value})
    with pytest.raises(UserError, match=match):  # what train() does with a mapping
        Trainer({key: value}, None, None)


# ---------------------------------------------------------------------------- BLiMP curves

def word_tokenizer(path):
    """A word-level tokenizer over the model's 64 ids (w4 .. w63), saved like the project's."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": i for i in range(4, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                            eos_token="</s>", unk_token="<unk>").save_pretrained(path)
    return path


def tiny_suite(path, n=8):
    """Two paradigms: the good sentence follows the training stream's +1 pattern."""
    path.mkdir()
    for p, length in (("runs_short", 4), ("runs_long", 7)):
        lines = []
        for i in range(n):
            ids = list(range(5 + 3 * i, 5 + 3 * i + length))
            bad = ids[:1] + ids[1:][::-1]
            lines.append(json.dumps({"sentence_good": " ".join(f"w{k}" for k in ids),
                                     "sentence_bad": " ".join(f"w{k}" for k in bad),
                                     "linguistics_term": p.split("_")[0], "pairID": str(i)}))
        (path / f"{p}.jsonl").write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def blimp_inputs(tmp_path):
    return word_tokenizer(tmp_path / "tok"), tiny_suite(tmp_path / "mysuite")


CURVE = {**SPEC, "eval_every": 0, "keep": "last", "blimp_every_epoch": True}


def rows_of(out_dir):
    with (out_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_blimp_curve_per_epoch(tmp_path, blimp_inputs):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from babydistill.eval.scorer import blimp_accuracy

    tok, suite = blimp_inputs
    tr, ev = data()
    summary = train(CURVE, objective(), tr, ev, tmp_path / "out", tmp_path / "ck", tok,
                    blimp_suite=suite)
    curve = json.loads((tmp_path / "out" / "blimp_curve.json").read_text())
    spe = tr.num_batches(16)
    assert curve["suite"] == "mysuite"
    assert [(p["step"], p["module"]) for p in curve["points"]] == \
        [(0, "model"), (spe, "model"), (2 * spe, "model")]
    assert set(curve["points"][0]["categories"]) == {"runs"}
    # metrics.csv: the same numbers in blimp_acc rows, loss/eval rows untouched
    blimp_rows = [r for r in rows_of(tmp_path / "out") if r["blimp_acc"]]
    assert [int(r["step"]) for r in blimp_rows] == [0, spe, 2 * spe]
    assert [float(r["blimp_acc"]) for r in blimp_rows] == \
        [p["accuracy"] for p in curve["points"]]
    assert all(not r["loss"] and not r["eval_loss"] for r in blimp_rows)
    # the last point is what the standalone scorer says about the saved model
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    want = blimp_accuracy(model, PreTrainedTokenizerFast.from_pretrained(tmp_path / "out"), suite)
    assert curve["points"][-1]["accuracy"] == want["accuracy"]
    assert curve["points"][-1]["categories"] == want["categories"]
    # the model learns the +1 pattern, so the good sentences win more often than at step 0
    assert curve["points"][-1]["accuracy"] > curve["points"][0]["accuracy"]
    assert summary["blimp_eval_s"] > 0


def test_blimp_curve_limit_and_resume_keep_metrics(tmp_path, blimp_inputs):
    tok, suite = blimp_inputs
    tr, ev = data()
    spec = {**CURVE, "blimp_limit": 3, "eval_every": 8}
    train(spec, objective(), tr, ev, tmp_path / "ref", tmp_path / "ck_ref", tok, blimp_suite=suite)
    spe = tr.num_batches(16)
    with pytest.raises(TrainingStopped):  # killed after the first epoch's checkpoint
        train({**spec, "stop_after_steps": spe + 2}, objective(), tr, ev, tmp_path / "run",
              tmp_path / "ck", tok, blimp_suite=suite)
    train(spec, objective(seed=99), tr, ev, tmp_path / "run", tmp_path / "ck", tok,
          blimp_suite=suite)

    def without_speed(d):
        return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows_of(d)]
    assert without_speed(tmp_path / "run") == without_speed(tmp_path / "ref")
    a, b = (json.loads((tmp_path / d / "blimp_curve.json").read_text()) for d in ("ref", "run"))
    assert a == b and a["limit"] == 3 and len(a["points"]) == 3
    from babydistill.eval.scorer import blimp_accuracy  # limit 3: the scorer on 3 pairs each
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    want = blimp_accuracy(AutoModelForCausalLM.from_pretrained(tmp_path / "run"),
                          PreTrainedTokenizerFast.from_pretrained(tok), suite, limit=3)
    assert a["points"][-1]["accuracy"] == want["accuracy"]


def test_blimp_curve_off_by_default_records_nothing(tmp_path, blimp_inputs):
    tok, suite = blimp_inputs
    tr, ev = data()
    spec = {**SPEC, "epochs": 1, "eval_every": 0}
    train(spec, objective(), tr, ev, tmp_path / "off", tmp_path / "c1", tok, blimp_suite=suite)
    assert not (tmp_path / "off" / "blimp_curve.json").exists()
    assert "blimp_acc" not in rows_of(tmp_path / "off")[0]
    # on, but without a suite: trained as usual, no curve
    s = train({**spec, "blimp_every_epoch": True}, objective(), tr, ev, tmp_path / "nosuite",
              tmp_path / "c2", tok)
    assert not (tmp_path / "nosuite" / "blimp_curve.json").exists()
    assert "blimp_eval_s" not in s


def test_blimp_curve_bad_inputs_are_one_line(tmp_path, blimp_inputs):
    tok, suite = blimp_inputs
    tr, ev = data()
    with pytest.raises(UserError, match="suite directory not found"):
        train(CURVE, objective(), tr, ev, tmp_path / "o", tmp_path / "c", tok,
              blimp_suite=tmp_path / "nope")
    with pytest.raises(UserError, match="needs the tokenizer"):
        train(CURVE, objective(), tr, ev, tmp_path / "o", tmp_path / "c", None, blimp_suite=suite)
    with pytest.raises(UserError, match="train: blimp_limit: 0 is not valid"):
        TrainSpec.from_json({"blimp_limit": 0})
    with pytest.raises(UserError, match="train: blimp_every_epoch: 'yes' is not valid"):
        TrainSpec.from_json({"blimp_every_epoch": "yes"})


def test_blimp_curve_scores_every_module(tmp_path, blimp_inputs):
    """Two WML peers: a point per peer per epoch; blimp_acc is their mean."""
    from babydistill.distill.wml import WMLObjective

    tok, suite = blimp_inputs
    tr, ev = data()
    torch.manual_seed(0)
    peers = [build_model(LLAMA, VOCAB), build_model(GPT2, VOCAB)]
    obj = WMLObjective(peers, alpha=0.5, use_bilevel=False, tokenizer_dir=tok)
    train({**CURVE, "epochs": 1}, obj, tr, ev, tmp_path / "out", tmp_path / "ck", tok,
          blimp_suite=suite)
    points = json.loads((tmp_path / "out" / "blimp_curve.json").read_text())["points"]
    spe = tr.num_batches(16)
    assert [(p["step"], p["module"]) for p in points] == \
        [(0, "peer1"), (0, "peer2"), (spe, "peer1"), (spe, "peer2")]
    last = [r for r in rows_of(tmp_path / "out") if r["blimp_acc"]][-1]
    assert json.loads(last["logs"]) == {p["module"]: p["accuracy"] for p in points[2:]}
    assert float(last["blimp_acc"]) == pytest.approx((points[2]["accuracy"] + points[3]["accuracy"]) / 2)


def test_curriculum_epochs_grow_and_resume_mid_curriculum(tmp_path):
    """Epoch sizes follow the open buckets; steps, epoch ends (eval rows) and resumption use
    each epoch's own batch count."""
    t = tokens(6000)
    files = [{"name": "a.txt", "tokens": 1000}, {"name": "b.txt", "tokens": 2000},
             {"name": "c.txt", "tokens": 3000}]
    cur = {"buckets": [["a"], ["b"], ["c"]], "epochs_per_bucket": 1}

    def chunks():
        return TrainChunks(t, SEQ, random_offset="per_chunk", seed=1, files=files, curriculum=cur)
    ev = EvalChunks(tokens(1500, seed=5), SEQ, n_chunks=40, seed=1)
    spec = {**SPEC, "epochs": 4, "batch_size": 8, "eval_every": 0, "checkpoint_every": 0}
    steps = [chunks().num_batches(8, e) for e in range(4)]
    assert steps[0] < steps[1] < steps[2] == steps[3]
    full = train(spec, objective(), chunks(), ev, tmp_path / "full", tmp_path / "ck1")
    assert full["steps"] == sum(steps) and full["epochs"] == 4.0
    with (tmp_path / "full" / "metrics.csv").open() as f:
        eval_steps = [int(r["step"]) for r in csv.DictReader(f) if r["eval_loss"]]
    assert eval_steps == list(np.cumsum(steps))  # one eval at each (uneven) epoch end
    # Killed in the second bucket's epoch, resumed: the same weights.
    with pytest.raises(TrainingStopped):
        train({**spec, "stop_after_steps": steps[0] + 3}, objective(), chunks(), ev,
              tmp_path / "r", tmp_path / "ck2")
    train(spec, objective(), chunks(), ev, tmp_path / "r", tmp_path / "ck2")
    a, b = weights(tmp_path / "full"), weights(tmp_path / "r")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- callbacks

class Recorder(Callback):
    """Records every hook call; its count of steps is checkpointed state."""

    name = "recorder"

    def __init__(self):
        self.calls, self.steps_seen = [], 0

    def on_train_start(self, trainer, resumed):
        self.calls.append(("start", trainer.step, resumed))

    def on_step_end(self, trainer, evaluate):
        self.steps_seen += 1
        # the trainer's own evaluator ran first at an evaluation point
        self.calls.append(("step", trainer.step, evaluate,
                           bool(evaluate) and bool(trainer.evaluator.last_eval)))

    def on_epoch_end(self, trainer):
        self.calls.append(("epoch", trainer.step))

    def on_train_end(self, trainer, summary):
        self.calls.append(("end", trainer.step))
        summary["recorded_steps"] = self.steps_seen

    def save(self, out_dir):
        (out_dir / "recorder.txt").write_text(str(self.steps_seen))

    def state_dict(self):
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state):
        self.steps_seen = state["steps_seen"]


def test_callback_hooks_are_called_in_order(tmp_path):
    tr, ev = data()
    rec = Recorder()
    spec = {**SPEC, "eval_every": 4}
    summary = train(spec, objective(), tr, ev, tmp_path / "out", tmp_path / "ck", callbacks=[rec])
    spe, total = tr.num_batches(16), summary["steps"]
    want = [("start", 0, False)]
    for step in range(1, total + 1):
        evaluate = step % 4 == 0 or step == total
        want.append(("step", step, evaluate, evaluate))
        if step % spe == 0 or step == total:
            want.append(("epoch", step))
    want.append(("end", total))
    assert rec.calls == want
    assert summary["recorded_steps"] == total
    assert (tmp_path / "out" / "recorder.txt").read_text() == str(total)


def test_callback_state_survives_a_kill(tmp_path):
    tr, ev = data()
    with pytest.raises(TrainingStopped):
        train({**SPEC, "stop_after_steps": 12}, objective(), tr, ev, tmp_path / "o",
              tmp_path / "ck", callbacks=[Recorder()])
    rec = Recorder()
    summary = train(SPEC, objective(), tr, ev, tmp_path / "o", tmp_path / "ck", callbacks=[rec])
    assert rec.calls[0] == ("start", 10, True)  # resumed at the step-10 checkpoint
    assert summary["recorded_steps"] == summary["steps"]  # 10 restored + the steps after


def test_checkpoint_holds_each_callbacks_state_by_name(tmp_path, caplog):
    """{name: state_dict} per callback; a resumed run gives each its own state back by name
    (whatever order the stage lists them in); other callbacks' checkpoint is moved aside."""
    from babydistill.train.callbacks import BlimpCurve, EvalTracker

    tr, ev = data()
    with pytest.raises(TrainingStopped):  # SPEC: eval every 8 steps, last.pt every 5
        train({**SPEC, "stop_after_steps": 12}, objective(), tr, ev, tmp_path / "o",
              tmp_path / "ck", callbacks=[Recorder()])
    ck = load_checkpoint(tmp_path / "ck" / "last.pt")
    states = ck["callbacks"]
    assert list(states) == ["eval", "blimp_curve", "recorder"]
    assert states["recorder"] == {"steps_seen": 10}
    assert states["eval"]["best"]["step"] == 8 and set(states["eval"]["last_eval"]) == {"model"}
    assert states["blimp_curve"] == {"points": [], "seconds": 0.0}
    assert set(ck["position"]) == {"step", "epoch", "batch", "wall_time", "precision"}

    rec, evaluator = Recorder(), EvalTracker(SPEC["eval_every"])
    t = Trainer(SPEC, objective(), tr, ev, tmp_path / "ck",
                callbacks=[rec, BlimpCurve(None), evaluator])
    assert list(t.callbacks) == ["recorder", "blimp_curve", "eval"] and t.evaluator is evaluator
    assert t.resume() and t.step == 10
    assert rec.steps_seen == 10
    assert (evaluator.best_step, evaluator.best_loss) == (8, states["eval"]["best"]["loss"])
    assert evaluator.last_eval == states["eval"]["last_eval"]

    # Without the recorder the checkpoint is another run's: moved aside, never half-loaded.
    caplog.set_level(logging.WARNING)
    t = Trainer(SPEC, objective(), tr, ev, tmp_path / "ck", callbacks=standard_callbacks(SPEC))
    assert not t.resume() and t.step == 0 and t.evaluator.best_step == -1
    [stale] = [d for d in (tmp_path / "ck").iterdir() if d.name.startswith("stale-")]
    assert (stale / "last.pt").is_file() and not (tmp_path / "ck" / "last.pt").exists()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "callbacks eval, blimp_curve, recorder, this run has eval, blimp_curve" in warning

    with pytest.raises(ValueError, match="name 'recorder' is taken"):
        Trainer(SPEC, objective(), tr, ev, None, callbacks=[Recorder(), Recorder()])


def test_the_evaluator_and_the_checkpointer_own_their_cadence():
    from babydistill.train.callbacks import EvalTracker
    from babydistill.train.checkpoint import Checkpointer

    every4, per_epoch = EvalTracker(4), EvalTracker(0)
    # 11 steps, an epoch end after step 6: eval_every 4 ignores epochs, 0 follows them
    assert [s for s in range(1, 12) if every4.due(s, epoch_end=s == 6, last=s == 11)] == [4, 8, 11]
    assert [s for s in range(1, 12) if per_epoch.due(s, epoch_end=s == 6, last=s == 11)] == [6, 11]
    ck = Checkpointer(None, {}, spec={}, every=5)
    assert [s for s in range(1, 13) if ck.due(s, epoch_end=s == 6, last=s == 12)] == [5, 6, 10, 12]
    assert not Checkpointer(None, {}, spec={}).due(5, epoch_end=False, last=False)


# ---------------------------------------------------------------------------- data parallel

def test_objectives_call_their_wrapped_modules_in_loss_only():
    """What DDP relies on: after Objective.wrap, loss() runs every trainable module through
    its wrapper (so DDP sees the forward and syncs the backward); eval_loss, modules() and
    save keep the bare modules; frozen teachers are never wrapped."""
    from babydistill.distill.student import KDObjective
    from babydistill.config.specs import KDSpec
    from babydistill.distill.wml import WMLObjective

    class Spy(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module, self.calls = module, 0

        def forward(self, *a, **kw):
            self.calls += 1
            return self.module(*a, **kw)

    torch.manual_seed(0)
    lm = LMObjective(build_model(LLAMA, VOCAB))
    kd = KDObjective(build_model(LLAMA, VOCAB), [build_model(LLAMA, VOCAB)],
                     KDSpec(alpha=0.5, temperature=2.0, kl_direction="forward",
                            kl_reduction="batchmean"))
    wml = WMLObjective([build_model(LLAMA, VOCAB) for _ in range(2)], alpha=0.5)
    mlm = objective(ROBERTA)
    batch = {"input_ids": torch.randint(3, VOCAB, (2, SEQ)), "chunk_index": torch.arange(2)}
    for obj in (lm, kd, wml, mlm):
        spies = []
        bare = dict(obj.modules())
        obj.wrap(lambda m: spies.append(Spy(m)) or spies[-1])
        assert {id(s.module) for s in spies} == {id(m) for m in bare.values()}
        obj.eval_loss(batch)
        assert all(s.calls == 0 for s in spies)
        obj.loss(obj.prepare(batch, 0))
        assert all(s.calls == 1 for s in spies), type(obj).__name__
        assert obj.modules() == bare


@pytest.mark.parametrize("bad_step,holds", [
    (7, r"kept in \S+ck: last\.pt \(step 5\)$"),  # after the checkpoint of step 5
    (2, r"\S+ck holds no checkpoint yet .*a rerun starts at step 0$"),  # before any
])
def test_divergence_line_says_what_the_folder_holds(tmp_path, bad_step, holds):
    """Issue 27 #6: the line named a 'last good checkpoint' in a folder that held none."""
    tr, ev = data()
    obj = NaNAt(build_model(LLAMA, VOCAB), bad_step=bad_step)
    with pytest.raises(UserError, match=rf"loss is nan at step {bad_step}\b") as e:
        train(SPEC, obj, tr, ev, tmp_path / "out", tmp_path / "ck")
    assert re.search(holds, str(e.value)), str(e.value)
    assert (tmp_path / "ck" / "last.pt").is_file() == (bad_step == 7)


class ForeignBest(Callback):
    """Another run writes best.pt into this run's folder before the export (what a second
    trainer sharing --checkpoint-dir did before the lock)."""

    name = "foreign_best"

    def on_train_end(self, trainer, summary) -> None:
        weights = {n: {k: torch.zeros_like(v) for k, v in m.state_dict().items()}
                   for n, m in trainer.modules.items()}
        checkpoint.save_file(trainer.checkpoint_dir / "best.pt",
                             {"identity": "another run", "step": 1, "loss": 0.0,
                              "modules": weights})


def test_foreign_best_checkpoint_is_refused_never_exported(tmp_path):
    """Issue 27 #2: the final step re-read best.pt without asking whose it was."""
    tr, ev = data()
    with pytest.raises(UserError, match=r"best\.pt: written by another run .* not exported"):
        train(SPEC, objective(), tr, ev, tmp_path / "out", tmp_path / "ck",
              identity="this run", callbacks=[ForeignBest()])
    assert not (tmp_path / "out").exists()
    # the same run without the intruder exports its own best.pt
    train(SPEC, objective(), tr, ev, tmp_path / "out", tmp_path / "ck2", identity="this run")
    assert (tmp_path / "out" / "model.safetensors").is_file()
