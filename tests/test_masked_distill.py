"""KD and WML on masked LMs (issue 23 items 3 and 4): the student and its teachers (or the
peers) read one masked batch; KD's CE and KL on the masked positions; WML's CE on the masked
positions and KL over every position, against the authors' ``wml_loss`` as test_wml
transcribes it; the peer weights from the dev chunks' fixed masks; both end to end through
the distill stage, and its one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from babydistill.common import UserError
from babydistill.config.specs import DistillSpec, KDSpec
from babydistill.data.chunks import EvalChunks, TrainChunks
from babydistill.distill.losses import IGNORE_INDEX, masked_kd_loss
from babydistill.distill.student import MaskedKDObjective, build_kd_objective
from babydistill.distill.losses import wml_loss
from babydistill.distill.wml import build_wml_objective, peer_presets, val_step_size
from babydistill.models.build import build_model, load_teachers
from babydistill.train.masked_lm import MaskedLMObjective

from test_distill import T, V, run, spec as kd_spec, tokens, world  # noqa: F401
from test_wml import ref_args, ref_validate, ref_wml_loss

torch.set_num_threads(1)
ROBERTA = {"arch": "roberta", "hidden_size": 16, "num_layers": 1, "num_heads": 2,
           "intermediate_size": 32, "max_position_embeddings": T + 2}
TEACHER = {**ROBERTA, "hidden_size": 32, "intermediate_size": 64}
KD = KDSpec(alpha=0.5, temperature=2.0, kl_direction="reverse", kl_reduction="batchmean")


def chunks(n=24, seed=3):
    tr = TrainChunks(tokens(n * T, seed), T, random_offset=False, seed=1)
    ev = EvalChunks(tokens(16 * T, seed + 1), T, n_chunks=16, seed=0)
    return tr, ev


def record_inputs(model, seen: list):
    """Append every input_ids a model's forward sees to ``seen``."""
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].clone()),
                                    with_kwargs=True)


# ---------------------------------------------------------------------------------------
# KD


def test_masked_kd_student_and_teachers_read_the_students_masks():
    torch.manual_seed(0)
    student, teachers = build_model(ROBERTA, V), [build_model(TEACHER, V) for _ in range(2)]
    obj = MaskedKDObjective(student, teachers, KD, V, seed=5)
    student.eval()  # no dropout: the same logits in both computations
    seen = {k: [] for k in ("s", "t0", "t1")}
    record_inputs(student, seen["s"])
    for k, t in zip(("t0", "t1"), teachers):
        record_inputs(t, seen[k])
    tr, _ = chunks()
    raw = next(tr.batches(0, 8))
    batch = obj.prepare(raw, step=3)
    # the student's masks: MaskedLMObjective's, seeded by (seed, step, chunk)
    ids, labels = MaskedLMObjective(student, V, 5).masked(raw, 3)
    assert torch.equal(batch["input_ids"], ids) and torch.equal(batch["labels"], labels)
    assert 0 < (labels != IGNORE_INDEX).sum() < labels.numel()
    loss, logs = obj.loss(batch)
    assert all(torch.equal(seen[k][0], ids) for k in seen)  # one masked input for all three
    with torch.no_grad():
        want = masked_kd_loss(student(input_ids=ids).logits, [t(input_ids=ids).logits for t in teachers],
                              labels, alpha=0.5, temperature=2.0, direction="reverse")
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    # another step draws other masks, and so another loss
    other = obj.prepare(raw, step=4)
    assert not torch.equal(other["labels"], batch["labels"])
    # eval: the masked CE on the fixed eval masks, weighted by their count
    _, ev = chunks()
    eb = next(ev.batches(0, 8))
    got = obj.eval_loss(eb)["student"]
    assert got == MaskedLMObjective(student, V, 5, name="student").eval_loss(eb)["student"]


def test_masked_kd_loss_gradient_is_zero_at_unmasked_positions():
    torch.manual_seed(1)
    logits = torch.randn(2, 6, V, requires_grad=True)
    labels = torch.full((2, 6), IGNORE_INDEX)
    labels[0, 2], labels[1, 5] = 4, 7
    masked_kd_loss(logits, torch.randn(2, 6, V), labels, alpha=0.5, temperature=2.0,
                   direction="forward").backward()
    chosen = labels != IGNORE_INDEX
    assert logits.grad[~chosen].abs().max() == 0 and logits.grad[chosen].abs().min() > 0


@pytest.fixture(scope="module")
def masked_teachers(world, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("masked_teachers")
    dirs = []
    for i in range(2):
        torch.manual_seed(10 + i)
        build_model(TEACHER, V).save_pretrained(d / f"r{i}")
        dirs.append(str(d / f"r{i}"))
    return dirs


def test_load_teachers_loads_masked_lms_and_refuses_a_mix(world, masked_teachers):  # noqa: F811
    teachers = load_teachers(masked_teachers)
    assert [type(t).__name__ for t in teachers] == ["RobertaForMaskedLM"] * 2
    assert teachers[0].config.vocab_size == V + 1 and not teachers[0].training
    with pytest.raises(UserError, match="teachers must all be masked or all causal") as e:
        load_teachers([masked_teachers[0], world["teachers"][0]])
    assert "\n" not in str(e.value)


def masked_kd_spec(**over):
    return kd_spec(student=ROBERTA, kl_direction="reverse", **over)


def test_masked_kd_end_to_end_saves_a_masked_student(world, masked_teachers, tmp_path):  # noqa: F811
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = run(world, tmp_path, masked_kd_spec(), "--teacher", masked_teachers[0],
              "--teacher", masked_teachers[1])
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["objective"] == "kd" and summary["steps"] == 10
    model, tok = AutoModelForMaskedLM.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    assert tok.mask_token_id == V and model.config.vocab_size == V + 1
    # the saved student's masked CE on the fixed eval masks is the summary's best eval loss
    ev = EvalChunks(str(world["d"] / "dev"), T, 8, seed=3)
    mlm = MaskedLMObjective(model, V, seed=3, name="student")
    total = n = 0.0
    for b in ev.batches(0, 8):
        v, c = mlm.eval_loss(b)["student"]
        total, n = total + v * c, n + c
    assert total / n == pytest.approx(summary["best_eval_loss"], rel=1e-4)


def test_masked_kd_refusals_are_one_line(world, masked_teachers, tmp_path, capsys):  # noqa: F811
    cases = [(masked_kd_spec(), ["--teacher", world["teachers"][0]],
              "the student is a masked LM and this teacher a causal one"),
             (kd_spec(), ["--teacher", masked_teachers[0]],
              "the student is a causal LM and this teacher a masked one"),
             (masked_kd_spec(cache={"k": 4}), ["--cache", str(tmp_path / "nocache")],
              "distils from live teachers only")]
    for i, (s, extra, msg) in enumerate(cases):
        with pytest.raises(SystemExit) as e:
            run(world, tmp_path / str(i), s, *extra)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and msg in err and len(err.splitlines()) == 1, err
    # the objective builder says the same without the CLI
    with pytest.raises(UserError, match="live teachers only"):
        build_kd_objective(DistillSpec.from_json(masked_kd_spec(cache={"k": 4})), V, [], "x")


# ---------------------------------------------------------------------------------------
# WML


def wml_spec(**over):
    s = {"name": "w", "objective": "wml", "reference": {**ROBERTA, "hidden_size": 32,
                                                        "intermediate_size": 64},
         "num_peers": 2, "alpha": 0.5, "seq_length": T, "eval_chunks": 8,
         "weight_update_frequency": 2, "num_batches": 6,
         "train": {"seed": 1, "batch_size": 8, "grad_clip": 1.0}}
    s.update(over)
    return DistillSpec.from_json(s)


def test_roberta_peers_keep_the_reference_ffn_width():
    ref = {"arch": "roberta", "hidden_size": 64, "num_layers": 4, "num_heads": 4,
           "intermediate_size": 256, "max_position_embeddings": 34}
    found = peer_presets(ref, 500, 4)
    assert all(p.intermediate_size == 256 and p.arch == "roberta" for p in found)
    assert [p.hidden_size for p in found] == sorted((p.hidden_size for p in found), reverse=True)


@pytest.mark.parametrize("reduction", ["batchmean", "token"])
def test_wml_masked_peers_one_step_is_the_authors_loss(reduction):
    obj = build_wml_objective(wml_spec(kl_reduction=reduction), V)
    assert obj.mlm is not None and all(type(m).__name__ == "RobertaForMaskedLM" for m in obj.peers)
    seen = [[] for _ in obj.peers]
    for m, s in zip(obj.peers, seen):
        record_inputs(m, s)
    tr, _ = chunks()
    raw = next(tr.batches(0, 8))
    batch = obj.prepare(raw, step=2)
    ids, labels = obj.mlm.masked(raw, 2)
    assert torch.equal(batch["input_ids"], ids) and (labels != IGNORE_INDEX).any()
    obj.weights = torch.tensor([0.7, 0.3], dtype=torch.float64)
    for m in obj.peers:
        m.eval()  # no dropout: the same logits in both computations
    total, logs = obj.loss(batch)
    assert all(torch.equal(s[0], ids) for s in seen)  # every peer read the same masked batch
    outs = [m(input_ids=ids) for m in obj.peers]
    ref, _, _ = ref_wml_loss(labels, outs, obj.weights.float(), 0.5)
    if reduction == "batchmean":  # theirs: CE on the masked positions, KL over every position / B
        assert total.item() == pytest.approx(ref.item(), rel=1e-6)
    else:  # the KL's mean over every position, not the masked ones only
        logp = [F.log_softmax(o.logits, -1) for o in outs]
        kl = sum(obj.weights[j].item() * (logp[j].exp() * (logp[j] - logp[i])).sum(-1).mean()
                 for i in range(2) for j in range(2) if i != j)
        ces = [F.cross_entropy(o.logits.flatten(0, 1), labels.flatten()) for o in outs]
        want = 0.5 * sum(obj.weights[i].item() * c for i, c in enumerate(ces)) + 0.5 * kl
        assert total.item() == pytest.approx(want.item(), rel=1e-5)
    total.backward()  # one step trains both peers
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for m in obj.peers for p in [m.roberta.embeddings.word_embeddings.weight])


def test_wml_masked_validation_uses_the_fixed_dev_masks():
    obj = build_wml_objective(wml_spec(), V)
    _, ev = chunks()
    batch = next(ev.batches(0, 8))
    ids, labels = obj.mlm.masked(batch, None)
    with torch.no_grad():
        want = [F.cross_entropy(m.eval()(input_ids=ids).logits.flatten(0, 1), labels.flatten()).item()
                for m in obj.peers]
    ces = obj.validation_ces(batch)
    assert ces.tolist() == pytest.approx(want, rel=1e-5)
    assert obj.validation_ces(batch).tolist() == ces.tolist()  # fixed masks: the same CE again
    g = obj.update_weights(batch, eta=0.25)
    assert g.tolist() == pytest.approx([c / 6 for c in want], rel=1e-5)
    evals = obj.eval_loss(batch)
    assert [evals[f"peer{i}"][0] for i in (1, 2)] == pytest.approx(want, rel=1e-5)
    assert evals["peer1"][1] == int((labels != IGNORE_INDEX).sum())


def test_wml_masked_peers_end_to_end(world, tmp_path):  # noqa: F811
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    s = {"name": "w", "objective": "wml", "reference": {**ROBERTA, "hidden_size": 32,
                                                        "intermediate_size": 64},
         "num_peers": 2, "peers": None, "alpha": 0.5, "use_bilevel": True,
         "weight_update_frequency": 3, "num_batches": 4, "seq_length": T, "eval_chunks": 8,
         "train": {**kd_spec()["train"], "epochs": 1}}
    out = run(world, tmp_path, s)
    summary = json.loads((out / "train_summary.json").read_text())
    assert set(summary["final_eval"]) == {"peer1", "peer2"}
    assert np.isfinite(list(summary["final_eval"].values())).all()
    weights = (out / "wml_weights.csv").read_text().splitlines()
    assert len(weights) >= 3  # validations on the masked dev chunks moved the weights
    for d in (out, out / "peers" / "1", out / "peers" / "2"):
        assert AutoTokenizer.from_pretrained(d).mask_token_id == V
        assert AutoModelForMaskedLM.from_pretrained(d).config.intermediate_size == 64  # reference's


def test_wml_refuses_peers_of_two_kinds():
    llama = {"arch": "llama", "hidden_size": 16, "num_layers": 1, "num_heads": 2,
             "intermediate_size": 32, "max_position_embeddings": 32}
    with pytest.raises(UserError, match="mix masked and causal") as e:
        build_wml_objective(wml_spec(peers=[ROBERTA, llama]), V)
    assert "\n" not in str(e.value)


def test_teacher_cache_refuses_masked_teachers(world, masked_teachers, tmp_path, capsys):  # noqa: F811
    from babydistill.distill.teacher_cache import main as cache_main

    with pytest.raises(SystemExit) as e:
        cache_main(["--teacher", masked_teachers[0], "--train", str(world["d"] / "train"),
                    "--seq-length", str(T), "--k", "4", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "is a masked LM; the top-k cache serves causal teachers only" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "c").exists()


def test_wml_masked_labels_loss_and_gradients_match_the_reference():
    """Their wml_loss on MLM labels (-100 off the masked positions): ours with the KL over
    every position (kl_labels), to 1e-6, gradients too."""
    from types import SimpleNamespace

    torch.manual_seed(4)
    logits = [torch.randn(3, 6, 9, requires_grad=True) for _ in range(3)]
    labels = torch.full((3, 6), IGNORE_INDEX)
    labels[0, 1], labels[1, 4], labels[2, 0], labels[2, 5] = 3, 8, 0, 5
    w = torch.tensor([0.5, 0.3, 0.2])
    ours, _ = wml_loss(logits, labels, w, alpha=0.5, kl_labels=torch.zeros_like(labels))
    theirs, _, _ = ref_wml_loss(labels, [SimpleNamespace(logits=z) for z in logits], w, 0.5)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    for a, b in zip(torch.autograd.grad(ours, logits), torch.autograd.grad(theirs, logits)):
        assert torch.allclose(a, b, atol=1e-7)


@pytest.mark.parametrize("num_batches,grad_clip", [(60, 1.0), (8, 0.0)])
def test_wml_masked_weight_update_matches_the_reference(num_batches, grad_clip):
    """Their validate on masked dev batches (inputs, labels) = ours on the same chunks'
    fixed eval masks, to 1e-6."""
    obj = build_wml_objective(wml_spec(num_batches=num_batches), V)
    obj.grad_clip = grad_clip
    _, ev = chunks()
    dev = [b for _, b in zip(range(2), ev.batches(0, 4))]
    masked = [obj.mlm.masked(b, None) for b in dev]
    start = torch.tensor([0.6, 0.4])
    args = ref_args(num_batches=num_batches, grad_clip=grad_clip)
    expected = ref_validate(obj.peers, torch.nn.Parameter(start.clone()), masked, args, 7,
                            learning_rate=1e-3)
    obj.weights = start.double()
    eta = val_step_size(7, warmup_iters=5, lr_decay_iters=50, step_size=0.25, min_step_size=0.0025)
    for b in dev:
        obj.update_weights(b, eta, step=8)
    assert torch.allclose(obj.weights.float(), expected.detach(), atol=1e-6), (obj.weights, expected)
    assert not torch.allclose(obj.weights, start.double(), atol=1e-5)
