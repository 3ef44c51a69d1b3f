"""wml.py against the authors' code (AI-DA-STC/generative-ai-research-babylm@701a0c8):
the peer loss, the peer-weight update and its step-size schedule, transcribed below from
src/WML_distill/utils.py and src/WML_distill/train.py; the peer size search; a tiny run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from babydistill.common import UserError
from babydistill.data.chunks import EvalChunks, TrainChunks
from babydistill.distill.losses import next_token_labels, wml_loss
from babydistill.config.presets import preset_parameters
from babydistill.models.build import build_model, count_parameters
from test_train import train  # the trainer with a stage's callbacks
from babydistill.config.specs import DistillSpec, TrainSpec
from babydistill.distill.wml import (WML_DEFAULTS, WMLObjective, build_wml_objective, main,
                             mirror_descent, peer_presets, val_step_size)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
V, T = 48, 16
PEER = {"arch": "llama", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32,
        "max_position_embeddings": 32}


# ---------------------------------------------------------------------------------------
# The reference, transcribed (dead branches dropped: distillation_method "mutual",
# use_bilevel true, no autocast/wandb/tqdm). Kept as close to their lines as possible.


def ref_wml_loss(labels, peer_outputs, weights, alpha):
    """utils.py wml_loss(labels, peer_outputs, weights, alpha, "mutual")."""
    ce_losses = []
    for i, output_i in enumerate(peer_outputs):
        mean_ce = F.cross_entropy(output_i.logits.view(-1, output_i.logits.size(-1)), labels.view(-1),
                                  ignore_index=-100)
        ce_losses.append(weights[i] * mean_ce)
    total_ce_loss = sum(ce_losses)
    kl_losses = []
    for i, output_i in enumerate(peer_outputs):
        for j, output_j in enumerate(peer_outputs):
            if i != j:
                p = F.log_softmax(output_i.logits.squeeze(1), dim=-1)
                q = F.log_softmax(output_j.logits.squeeze(1), dim=-1)
                mean_kl = F.kl_div(p, q, reduction='batchmean', log_target=True)
                kl_losses.append(weights[j] * mean_kl)
    total_kl_loss = sum(kl_losses)
    list_of_losses = [(1 - alpha) * ce for ce in ce_losses] + [(1 - alpha) * ke for ke in kl_losses]
    loss = (1 - alpha) * total_ce_loss + alpha * total_kl_loss
    return loss, list_of_losses, total_ce_loss


def ref_get_lr(iter, args, lr_type="val"):
    """utils.py get_lr(..., lr_type="val")."""
    if iter < args.WML.warmup_iters:
        return args.WML.step_size * iter / args.WML.warmup_iters
    if iter > args.WML.lr_decay_iters:
        return args.WML.min_step_size
    decay_ratio = (iter - args.WML.warmup_iters) / (args.WML.lr_decay_iters - args.WML.warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return args.WML.min_step_size + coeff * (args.WML.step_size - args.WML.min_step_size)


def ref_validate(peer_models, peer_weights, batches, args, epoch, learning_rate):
    """train.py WMLTrainer.validate: the use_bilevel branch, one update per batch."""
    for model in peer_models:
        model.eval()
    for inputs, labels in batches:
        peer_outputs = [model(input_ids=inputs) for model in peer_models]
        total_loss, peer_losses, ensemble_loss = ref_wml_loss(labels, peer_outputs, peer_weights,
                                                              args.WML.loss_alpha)
        ensemble_loss = ensemble_loss / args.WML.num_batches
        grad_L2_theta, grad_La_theta = [], []
        for i, model in enumerate(peer_models):
            grad_L2_w = torch.autograd.grad(ensemble_loss, peer_weights, retain_graph=True, allow_unused=True)[0]
            grad_L2_theta.append([g if g is not None else torch.zeros_like(p) for g, p in zip(
                torch.autograd.grad(ensemble_loss, model.parameters(), retain_graph=True, allow_unused=True),
                model.parameters())])
            La = peer_losses[i]
            La = La.detach().requires_grad_(True)
            grad_La_theta.append([g if g is not None else torch.zeros_like(p) for g, p in zip(
                torch.autograd.grad(La, model.parameters(), retain_graph=True, allow_unused=True),
                model.parameters())])
        grad_w = []
        for i in range(len(peer_models)):
            grad = grad_L2_w[i]
            for param_L2, param_La in zip(grad_L2_theta[i], grad_La_theta[i]):
                grad += learning_rate * torch.sum(param_L2 * param_La)
            grad_w.append(grad)
        if args.WML.grad_clip != 0:
            grad_w_clipped = [torch.clamp(g, 0, args.WML.grad_clip) for g in grad_w]
        else:
            grad_w_clipped = grad_w
        WML_step_size = ref_get_lr(epoch, args, lr_type="val")
        exp_grad = [torch.exp(-WML_step_size * g) for g in grad_w_clipped]
        sum_exp_grad = sum(w * eg for w, eg in zip(peer_weights, exp_grad))
        peer_weights = nn.Parameter(torch.tensor([(w * eg / sum_exp_grad).item()
                                                  for w, eg in zip(peer_weights, exp_grad)]))
    return peer_weights


def ref_args(**over):
    wml = {"warmup_iters": 5, "lr_decay_iters": 50, "step_size": 0.25, "min_step_size": 0.0025,
           "num_batches": 60, "grad_clip": 1.0, "loss_alpha": 0.5, **over}  # conf/config.yaml
    return SimpleNamespace(WML=SimpleNamespace(**wml))


# ---------------------------------------------------------------------------------------
# Helpers


def markov_chunks(n_chunks: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    nxt = rng.integers(3, V, size=V)  # a deterministic successor per token (learnable)
    r = np.random.default_rng(seed)
    out = np.empty(n_chunks * T, dtype=np.int64)
    out[0] = 3
    for i in range(1, len(out)):
        out[i] = nxt[out[i - 1]] if r.random() < 0.9 else r.integers(3, V)
    return out


def peers(n=3, seed=0):
    torch.manual_seed(seed)
    return [build_model({**PEER, "hidden_size": 8 * (k + 1), "num_heads": 2}, V) for k in range(n)]


def fake_trainer(total_steps=20, warmup_steps=2):
    return SimpleNamespace(eval_data=EvalChunks(markov_chunks(32, 2), T, n_chunks=32, seed=0),
                           spec=TrainSpec.from_json({"keep": "best", "warmup_steps": warmup_steps}), total_steps=total_steps,
                           autocast=None)


# ---------------------------------------------------------------------------------------
# The loss


@pytest.mark.parametrize("alpha", [0.5, 0.2])
def test_loss_and_gradients_match_the_reference(alpha):
    torch.manual_seed(3)
    logits = [torch.randn(3, 5, 7, requires_grad=True) for _ in range(3)]
    labels = torch.randint(0, 7, (3, 5))
    labels[:, -1] = -100  # next-token labels: the last position has no target
    w = torch.tensor([0.5, 0.3, 0.2])
    ours, ces = wml_loss(logits, labels, w, alpha=alpha)
    theirs, _, total_ce = ref_wml_loss(labels, [SimpleNamespace(logits=z) for z in logits], w, alpha)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert sum(wi * c for wi, c in zip(w, ces)).item() == pytest.approx(total_ce.item(), rel=1e-6)
    g_ours = torch.autograd.grad(ours, logits)
    g_theirs = torch.autograd.grad(theirs, logits)
    for a, b in zip(g_ours, g_theirs):
        assert torch.allclose(a, b, atol=1e-7)
    # Not detached: peer 2's logits get a gradient from the KL terms alone (alpha = 1).
    kl_only, _ = wml_loss(logits, torch.full_like(labels, -100), w, alpha=1.0)
    assert torch.autograd.grad(kl_only, logits[2])[0].abs().sum() > 0



@pytest.mark.parametrize("scale", [1.0, 30.0])  # 30: peaked peers, log-probs down to ~-200
def test_the_n_pass_kl_equals_the_pairwise_sum_with_four_peers(scale):
    """wml_loss sums the N(N-1) KL terms through an identity in N passes; the token reduction
    with four peers and peaked distributions still equals the pairwise sum, value and grads."""
    torch.manual_seed(5)
    logits = [(scale * torch.randn(2, 6, 11)).requires_grad_() for _ in range(4)]
    labels = torch.randint(0, 11, (2, 6))
    labels[:, -1] = -100
    w = torch.tensor([0.4, 0.3, 0.2, 0.1])
    ours, _ = wml_loss(logits, labels, w, alpha=1.0, reduction="token")
    log_p = [F.log_softmax(z, dim=-1) for z in logits]
    mask = (labels != -100).float()
    pairwise = sum(w[j] * ((log_p[j].exp() * (log_p[j] - log_p[i])).sum(-1) * mask).sum() / mask.sum()
                   for i in range(4) for j in range(4) if i != j)
    assert ours.item() == pytest.approx(pairwise.item(), rel=1e-5, abs=1e-6)
    for a, b in zip(torch.autograd.grad(ours, logits), torch.autograd.grad(pairwise, logits)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)

def test_token_reduction_is_the_per_position_mean():
    torch.manual_seed(0)
    a, b = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    labels = torch.zeros(2, 4, dtype=torch.long)
    batchmean, _ = wml_loss([a, b], labels, torch.tensor([0.5, 0.5]), alpha=1.0)
    token, _ = wml_loss([a, b], labels, torch.tensor([0.5, 0.5]), alpha=1.0, reduction="token")
    assert batchmean.item() == pytest.approx(4 * token.item(), rel=1e-5)  # T = 4, nothing ignored


# ---------------------------------------------------------------------------------------
# The weight update and its schedule


def test_step_size_schedule_is_their_get_lr():
    args = ref_args(warmup_iters=10, lr_decay_iters=50)
    kw = dict(warmup_iters=10, lr_decay_iters=50, step_size=0.25, min_step_size=0.0025)
    for it in range(0, 60):
        assert val_step_size(it, **kw) == pytest.approx(ref_get_lr(it, args), abs=1e-15)
    # by hand: linear warm-up from 0, cosine from step_size to min_step_size
    assert val_step_size(0, **kw) == 0.0
    assert val_step_size(4, **kw) == pytest.approx(0.1)
    assert val_step_size(10, **kw) == pytest.approx(0.25)
    assert val_step_size(30, **kw) == pytest.approx((0.25 + 0.0025) / 2)
    assert val_step_size(50, **kw) == pytest.approx(0.0025)
    assert val_step_size(51, **kw) == 0.0025


@pytest.mark.parametrize("num_batches,grad_clip", [(60, 1.0), (8, 1.0), (2, 0.0), (2, 1.0)])
def test_weight_update_matches_the_reference(num_batches, grad_clip):
    models = peers(3)
    ids = torch.from_numpy(markov_chunks(8, 7).reshape(-1, T))
    batches = [(ids[:4], next_token_labels(ids[:4])), (ids[4:], next_token_labels(ids[4:]))]
    args = ref_args(num_batches=num_batches, grad_clip=grad_clip)
    epoch = 7
    start = torch.tensor([0.5, 0.3, 0.2])
    expected = ref_validate(models, nn.Parameter(start.clone()), batches, args, epoch, learning_rate=1e-3)

    obj = WMLObjective(models, alpha=0.5, num_batches=num_batches, grad_clip=grad_clip)
    obj.weights = start.double()
    eta = val_step_size(epoch, warmup_iters=5, lr_decay_iters=50, step_size=0.25, min_step_size=0.0025)
    for inputs, _ in batches:
        obj.update_weights(inputs, eta, step=epoch + 1)
    assert torch.allclose(obj.weights.float(), expected.detach(), atol=1e-6), (obj.weights, expected)
    assert math.isclose(float(obj.weights.sum()), 1.0, abs_tol=1e-9)
    if num_batches == 2 and grad_clip:  # every g = CE / 2 > 1 is clamped to 1: nothing moves
        assert torch.allclose(obj.weights, start.double(), atol=1e-7)
    else:
        assert not torch.allclose(obj.weights, start.double(), atol=1e-5)


def test_mirror_descent_by_hand():
    w, g = mirror_descent(torch.tensor([0.25, 0.75]), torch.tensor([3.0, 1.5]), eta=0.5, num_batches=3,
                          grad_clip=0.8)
    ga, gb = 0.8, 0.5  # 3/3 = 1 clamped to 0.8; 1.5/3
    za, zb = 0.25 * math.exp(-0.5 * ga), 0.75 * math.exp(-0.5 * gb)
    assert g.tolist() == pytest.approx([ga, gb])
    assert w.tolist() == pytest.approx([za / (za + zb), zb / (za + zb)])


def test_validation_cadence_eta_and_trajectory():
    torch.manual_seed(0)
    good, bad = build_model(PEER, V), build_model(PEER, V)
    ids = torch.from_numpy(markov_chunks(64, 1).reshape(-1, T))
    opt = torch.optim.AdamW(good.parameters(), lr=2e-2)
    for s in range(40):
        b = ids[(s * 8) % 64:(s * 8) % 64 + 8]
        loss = good(input_ids=b, labels=b).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    obj = WMLObjective([bad, good], alpha=0.5, val_batch_size=8, val_batches=2)
    trainer = fake_trainer(total_steps=20, warmup_steps=2)
    for step in range(1, 21):
        obj.on_step(step, trainer)
        assert math.isclose(float(obj.weights.sum()), 1.0, abs_tol=1e-12)
    # Their loop: validate after 0-based steps 0, 5, 10, 15; two batches each here.
    assert [r["step"] for r in obj.history] == [1, 1, 6, 6, 11, 11, 16, 16]
    etas = [r["eta"] for r in obj.history]
    assert etas[0] == 0.0 and obj.history[1]["weights"] == [0.5, 0.5]  # step 0: no warm-up yet
    assert etas[2] == pytest.approx(val_step_size(5, warmup_iters=2, lr_decay_iters=20, step_size=0.25,
                                                  min_step_size=0.0025))
    assert obj.weights[1] > 0.5  # the trained peer gains weight
    assert obj.val_position == 8
    # the state round-trips (checkpointing), and the trajectory is a CSV
    other = WMLObjective([bad, good], alpha=0.5)
    other.load_state_dict(obj.state_dict())
    assert torch.equal(other.weights, obj.weights) and other.history == obj.history
    rows = list(csv.DictReader(obj.weights_csv().splitlines()))
    assert len(rows) == 9 and rows[0]["w1"] == "0.5" and rows[0]["step"] == "0"
    assert float(rows[-1]["w2"]) == pytest.approx(float(obj.weights[1]))
    assert set(rows[1]) == {"step", "update", "eta", "w1", "w2", "val_ce1", "val_ce2", "g1", "g2"}


def test_use_bilevel_false_keeps_weights():
    obj = WMLObjective(peers(2), alpha=0.5, use_bilevel=False, weight_update_frequency=1)
    for step in range(1, 6):
        obj.on_step(step, fake_trainer())
    assert torch.equal(obj.weights, torch.full((2,), 0.5, dtype=torch.float64)) and obj.history == []


# ---------------------------------------------------------------------------------------
# Peers: the size search and the spec


def wml_references():
    """(reference preset, vocab) of every wml run in config.yaml and workflow/demo.yaml."""
    out = []
    for f in ("config.yaml", "workflow/demo.yaml"):
        cfg = yaml.safe_load((REPO / f).read_text())
        for name, run in cfg["distill"].items():
            if run["objective"] == "wml":
                out.append(pytest.param(cfg["models"][run["reference"]], cfg["tokenizer"]["vocab_size"],
                                        run.get("num_peers", 4), id=f"{f}:{name}"))
    return out


GPT2 = {"arch": "gpt2", "hidden_size": 128, "num_layers": 4, "num_heads": 4, "max_position_embeddings": 128}


@pytest.mark.parametrize("ref,vocab,n", [*wml_references(), pytest.param(GPT2, 2000, 4, id="gpt2")])
def test_size_search_hits_targets_within_5_percent(ref, vocab, n):
    total = preset_parameters(ref, vocab)
    found = peer_presets(ref, vocab, n)
    assert found == peer_presets(ref, vocab, n)  # deterministic
    assert len(found) == n == 4
    for i, p in enumerate(found):
        target = total / (i + 2)
        with torch.device("meta"):
            got = count_parameters(build_model(p, vocab))  # built for real
        assert got == preset_parameters(p, vocab)
        assert abs(got / target - 1) <= 0.05, (i, p, got, target)
        assert p.hidden_size % p.num_heads == 0 and p.hidden_size <= ref["hidden_size"]


def spec(**over):
    return DistillSpec.from_json(spec_json(**over))


def spec_json(**over):
    s = {"name": "w", "objective": "wml", "reference": {**PEER, "hidden_size": 32, "num_heads": 2,
                                                        "intermediate_size": 64},
         "num_peers": 4, "alpha": 0.5, "seq_length": T, "eval_chunks": 8,
         "train": {"seed": 1, "batch_size": 8, "grad_clip": 1.0}}
    s.update(over)
    return s


def test_build_from_spec_defaults_and_errors():
    obj = build_wml_objective(spec(), V)
    assert len(obj.peers) == 4 and list(obj.modules()) == ["peer1", "peer2", "peer3", "peer4"]
    sizes = [sum(p.numel() for p in m.parameters()) for m in obj.peers]
    assert sizes == sorted(sizes, reverse=True)
    for key in ("use_bilevel", "weight_update_frequency", "step_size", "min_step_size", "num_batches",
                "val_batches"):
        assert getattr(obj, key) == WML_DEFAULTS[key], key
    assert obj.val_batch_size == 8 and obj.grad_clip == 1.0 and obj.reduction == "batchmean"
    hand = build_wml_objective(spec(peers=[PEER, PEER]), V)
    assert len(hand.peers) == 2
    for bad, msg in (({"num_peers": 3}, "num_peers"), ({"step_size": 0}, "step_size"),
                     ({"weight_update_frequency": 0}, "weight_update_frequency"), ({"alpha": 2}, "alpha"),
                     ({"temperature": 2.0}, "unknown key temperature"), ({"kl_reduction": "x"}, "kl_reduction"),
                     ({"use_bilevel": "yes"}, "use_bilevel")):
        with pytest.raises(UserError, match=msg) as e:
            build_wml_objective(spec(**bad), V)
        assert "\n" not in str(e.value)


def test_schema_defaults_are_the_code_defaults():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = {**schema["$defs"]["wml_keys"]["properties"], **schema["$defs"]["loss_keys"]["properties"]}
    for key, value in WML_DEFAULTS.items():
        assert props[key]["default"] == value, key
    assert WML_DEFAULTS["num_peers"] == 4 and WML_DEFAULTS["weight_update_frequency"] == 5


# ---------------------------------------------------------------------------------------
# A tiny run end to end: every peer saved, the trajectory written, peers exported


def test_tiny_run_writes_every_peer_and_the_trajectory(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    s = spec(weight_update_frequency=2, num_batches=6)
    tr = TrainChunks(markov_chunks(48, 3), T, random_offset=False, seed=1)
    ev = EvalChunks(markov_chunks(16, 4), T, n_chunks=16, seed=0)
    train_spec = {"batch_size": 8, "epochs": 1, "lr": 1e-2, "warmup_steps": 2, "log_every": 2,
                  "tensorboard": False, "seed": 1}
    obj = build_wml_objective(s, V)
    out = tmp_path / "w"
    summary = train(train_spec, obj, tr, ev, out, tmp_path / "ck")
    assert summary["steps"] == 6 and set(summary["final_eval"]) == {f"peer{i}" for i in range(1, 5)}
    rows = list(csv.DictReader((out / "wml_weights.csv").open()))
    assert [r["step"] for r in rows] == ["0", "1", "3", "5"]  # after 0-based steps 0, 2, 4
    assert sum(float(rows[-1][f"w{i}"]) for i in range(1, 5)) == pytest.approx(1.0)
    assert rows[2]["w1"] != rows[1]["w1"]  # eta > 0 after the warm-up: the weights moved
    ids = torch.from_numpy(markov_chunks(2, 9).reshape(-1, T))
    best = obj.best_peer()
    for i in range(1, 5):
        d = tmp_path / f"w-peer{i}"
        assert main(["--run-dir", str(out), "--peer", str(i), "--out", str(d)]) is None
        m = AutoModelForCausalLM.from_pretrained(d)
        assert m.num_parameters() == sum(p.numel() for p in obj.peers[i - 1].parameters())
        ref = AutoModelForCausalLM.from_pretrained(out / "peers" / str(i))
        assert torch.equal(m(ids).logits, ref(ids).logits)
        metrics = list(csv.DictReader((d / "metrics.csv").open()))
        evals = [float(r["eval_loss"]) for r in metrics if r["eval_loss"]]
        assert evals[-1] == pytest.approx(summary["final_eval"][f"peer{i}"])
        assert all(json.loads(r["logs"]).keys() <= {f"peer{i}", f"ce{i}", f"w{i}"} for r in metrics)
        prov = json.loads((d / "provenance.json").read_text())
        assert prov["model"] == f"w-peer{i}" and prov["spec"] == {"wml_run": "w", "peer": i}
    top = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(top(ids).logits, AutoModelForCausalLM.from_pretrained(tmp_path / f"w-peer{best}")(ids).logits)
    with pytest.raises(SystemExit):
        main(["--run-dir", str(out), "--peer", "5", "--out", str(tmp_path / "x")])
    assert "no such peer" in capsys.readouterr().err


def test_no_import_cycle_between_distill_and_wml():
    """wml takes the loss keys from losses (issue 10): it imports nothing from the distill
    stage (student), and losses imports neither."""
    import ast

    src = REPO / "src" / "babydistill" / "distill"
    for module, banned in (("wml.py", "babydistill.distill.student"), ("losses.py", "babydistill.distill.student"),
                           ("losses.py", "babydistill.distill.wml")):
        tree = ast.parse((src / module).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert banned not in imported, (module, banned)
