"""wml.py: peer size search, simplex weights and their bi-level update."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from babydistill.common import UserError
from babydistill.data import EvalChunks
from babydistill.models import build_model, preset_parameters
from babydistill.wml import WMLObjective, build_wml_objective, peer_presets, preset_param_count

torch.set_num_threads(1)
REF_58M = {"arch": "llama", "hidden_size": 512, "num_layers": 16, "num_heads": 8, "num_kv_heads": 8,
           "intermediate_size": 1024, "max_position_embeddings": 256}
TINY = {"arch": "llama", "hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 4,
        "intermediate_size": 128, "max_position_embeddings": 256}
GPT2 = {"arch": "gpt2", "hidden_size": 128, "num_layers": 4, "num_heads": 4, "max_position_embeddings": 128}
V, T = 48, 16


@pytest.mark.parametrize("ref,vocab", [(REF_58M, 16000), (TINY, 2000), (GPT2, 2000)])
def test_size_search_hits_targets(ref, vocab):
    n = preset_parameters(ref, vocab)
    assert preset_param_count(ref, vocab) == n  # the fast count is exact
    peers = peer_presets(ref, vocab, 4)
    assert peers == peer_presets(ref, vocab, 4)  # deterministic
    assert peers[:2] == peer_presets(ref, vocab, 2)
    for i, p in enumerate(peers):
        target = n / (i + 2)
        got = preset_parameters(p, vocab)  # built for real (meta device)
        assert abs(got / target - 1) < 0.15, (i, p, got, target)
        assert p["hidden_size"] % p["num_heads"] == 0
        assert p["num_layers"] >= 1 and p["hidden_size"] <= ref["hidden_size"]


def markov_chunks(n_chunks: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    nxt = rng.integers(3, V, size=V)  # a deterministic successor per token (learnable)
    r = np.random.default_rng(seed)
    out = np.empty(n_chunks * T, dtype=np.int64)
    out[0] = 3
    for i in range(1, len(out)):
        out[i] = nxt[out[i - 1]] if r.random() < 0.9 else r.integers(3, V)
    return out


PEER = {"arch": "llama", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32,
        "max_position_embeddings": 32}


def trained_and_random_peers():
    torch.manual_seed(0)
    good, bad = build_model(PEER, V), build_model(PEER, V)
    ids = torch.from_numpy(markov_chunks(64, 1).reshape(-1, T))
    opt = torch.optim.AdamW(good.parameters(), lr=2e-2)
    for s in range(60):
        b = ids[(s * 8) % 64:(s * 8) % 64 + 8]
        loss = good(input_ids=b, labels=b).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return good, bad


def fake_trainer():
    return SimpleNamespace(eval_data=EvalChunks(markov_chunks(32, 2), T, n_chunks=32, seed=0),
                           spec={"keep": "best"})


def test_weights_move_toward_better_peer_and_stay_on_simplex():
    good, bad = trained_and_random_peers()
    obj = WMLObjective([bad, good], alpha=0.5, temperature=1.0, outer_every=2, mirror_lr=0.5,
                       val_batch_size=8)
    assert torch.allclose(obj.weights, torch.tensor([0.5, 0.5], dtype=torch.float64))
    trainer = fake_trainer()
    history = []
    for step in range(1, 21):
        obj.on_step(step, trainer)
        history.append(obj.weights.clone())
        assert math.isclose(float(obj.weights.sum()), 1.0, abs_tol=1e-9)
        assert torch.all(obj.weights > 0)
    assert obj.outer_steps == 10  # every 2nd step only
    assert torch.equal(history[0], torch.tensor([0.5, 0.5], dtype=torch.float64))  # step 1: no update
    # The first step already favours the trained peer; it ends with most of the weight.
    assert history[1][1] > 0.5 and history[-1][1] > 0.7
    # the state round-trips (checkpointing)
    other = WMLObjective([bad, good], alpha=0.5, temperature=1.0)
    other.load_state_dict(obj.state_dict())
    assert torch.equal(other.weights, obj.weights) and other.outer_steps == 10


def test_outer_loop_off_keeps_weights_fixed_during_training():
    good, bad = trained_and_random_peers()
    obj = WMLObjective([bad, good, build_model(PEER, V)], alpha=0.5, temperature=2.0, outer_loop=False,
                       outer_every=1)
    trainer = fake_trainer()
    opt = torch.optim.AdamW([p for m in obj.modules().values() for p in m.parameters()], lr=1e-2)
    ids = torch.from_numpy(markov_chunks(8, 3).reshape(-1, T))
    first = None
    for step in range(1, 6):
        loss, logs = obj.loss({"input_ids": ids})
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        obj.on_step(step, trainer)
    assert torch.equal(obj.weights, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert obj.outer_steps == 0 and loss.item() < first
    assert set(logs) >= {"ce0", "ce1", "ce2", "w0"}


def test_best_peer_saved_at_top(tmp_path):
    good, bad = trained_and_random_peers()
    obj = WMLObjective([bad, good], alpha=0.5, temperature=1.0)
    assert obj.score({"peer0": 3.0, "peer1": 2.0}) == 2.0
    obj.score({"peer0": 2.5, "peer1": 2.6})  # worse best-of: the best stays the first eval
    best = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in obj.modules().items()}
    obj.save(tmp_path, best)
    from transformers import AutoModelForCausalLM

    top = AutoModelForCausalLM.from_pretrained(tmp_path)
    p1 = AutoModelForCausalLM.from_pretrained(tmp_path / "peers" / "1")
    assert (tmp_path / "peers" / "0" / "config.json").is_file()
    for a, b in zip(top.parameters(), p1.parameters()):
        assert torch.equal(a, b)  # peer1 was best by eval loss


def test_build_from_spec_and_errors():
    spec = {"name": "w", "objective": "wml", "reference": TINY, "num_peers": 2, "alpha": 0.5,
            "temperature": 1.0, "outer_loop": True, "outer_every": 5, "mirror_lr": 0.1,
            "train": {"seed": 1, "batch_size": 4}, "seq_length": 16, "eval_chunks": 4}
    obj = build_wml_objective(spec, 2000)
    assert len(obj.peers) == 2 and obj.outer_every == 5
    sizes = [sum(p.numel() for p in m.parameters()) for m in obj.peers]
    assert sizes[0] > sizes[1]
    hand = build_wml_objective({**spec, "peers": [PEER, PEER, PEER, PEER]}, 2000)
    assert len(hand.peers) == 4
    for bad, msg in (({"num_peers": 3}, "num_peers"), ({"mirror_lr": 0}, "mirror_lr"),
                     ({"outer_every": 0}, "outer_every"), ({"alpha": 2}, "alpha")):
        with pytest.raises(UserError, match=msg):
            build_wml_objective({**spec, **bad}, 2000)
