"""distill.py end to end through babydistill.train.trainer: live KD, cached KD, WML, spec errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from babydistill.train.checkpoint import load_file as load_checkpoint
from babydistill.data.chunks import EvalChunks
from babydistill.distill.student import main as distill_main
from babydistill.distill.losses import ce_loss, next_token_labels
from babydistill.models.build import build_model
from babydistill.distill.teacher_cache import main as cache_main
from test_ensemble import save_tokenizer  # tests/ is on sys.path (no __init__.py)

torch.set_num_threads(1)
V, T = 40, 16
STUDENT = {"arch": "llama", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32,
           "max_position_embeddings": 32}
TEACHERS = [
    {"arch": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
     "max_position_embeddings": 32},
    {"arch": "gpt2", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_position_embeddings": 32},
]


def write_split(prefix, tokens):
    tokens.astype("<u2").tofile(str(prefix) + ".bin")
    (prefix.parent / (prefix.name + ".json")).write_text(json.dumps(
        {"dtype": "uint16", "n_tokens": int(tokens.size), "vocab_size": V, "eos_id": 2, "bos_id": 1, "pad_id": 0}))


def tokens(n, seed):
    rng = np.random.default_rng(0)
    nxt = rng.integers(3, V, size=V)
    r = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.int64)
    out[0] = 3
    for i in range(1, n):
        out[i] = nxt[out[i - 1]] if r.random() < 0.8 else r.integers(3, V)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill")
    save_tokenizer(d / "tok")
    write_split(d / "train", tokens(40 * T + 5, 1))
    write_split(d / "dev", tokens(12 * T, 2))
    teachers = []
    for i, p in enumerate(TEACHERS):
        torch.manual_seed(i)
        build_model(p, V).save_pretrained(d / f"teacher{i}")
        teachers.append(str(d / f"teacher{i}"))
    return {"d": d, "teachers": teachers}


def spec(**over):
    s = {"name": "t", "objective": "kd", "student": STUDENT, "alpha": 0.5, "temperature": 2.0,
         "kl_direction": "forward", "kl_reduction": "batchmean", "seq_length": T, "eval_chunks": 8,
         "train": {"lr": 1e-2, "batch_size": 8, "epochs": 2, "warmup_steps": 0, "random_offset": False,
                   "log_every": 1, "tensorboard": False, "seed": 3}}
    s.update(over)
    return s


def run(world, tmp_path, s, *extra):
    d = world["d"]
    out = tmp_path / "out"
    distill_main(["--spec", json.dumps(s), "--train", str(d / "train"), "--dev", str(d / "dev"),
                  "--tokenizer", str(d / "tok"), "--out", str(out), "--checkpoint-dir",
                  str(tmp_path / "ckpt"), *extra])
    return out


def losses(out):
    with open(out / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]


def dev_ce(model_dir, world):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(model_dir)
    ev = EvalChunks(str(world["d"] / "dev"), T, 8, seed=3)
    ids = torch.cat([b["input_ids"] for b in ev.batches(0, 8)])
    with torch.no_grad():
        return ce_loss(m(input_ids=ids).logits, next_token_labels(ids)).item()


def test_live_kd_trains_and_saves_best(world, tmp_path):
    out = run(world, tmp_path, spec(), "--teacher", world["teachers"][0], "--teacher", world["teachers"][1])
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["objective"] == "kd" and summary["steps"] == 10
    # the saved student is the one the summary scored
    assert dev_ce(out, world) == pytest.approx(summary["best_eval_loss"], rel=1e-4)
    assert summary["best_eval_loss"] < 0.9 * np.log(V)
    assert (out / "tokenizer.json").is_file()


def test_cached_kd_matches_live_kd(world, tmp_path):
    cache = tmp_path / "cache"
    cache_main(["--teacher", world["teachers"][0], "--teacher", world["teachers"][1],
                "--train", str(world["d"] / "train"), "--seq-length", str(T), "--k", str(V),
                "--out", str(cache), "--temperature", "2"])
    live = losses(run(world, tmp_path / "live", spec(), "--teacher", world["teachers"][0],
                      "--teacher", world["teachers"][1]))
    cached = losses(run(world, tmp_path / "cached", spec(cache={"k": V}), "--cache", str(cache)))
    # k = V: same targets up to fp16 storage, so the same training trajectory
    assert len(live) == len(cached) == 10
    assert cached[0] == pytest.approx(live[0], rel=1e-3)
    assert cached[-1] == pytest.approx(live[-1], rel=1e-2)


def test_cache_refuses_random_offset(world, tmp_path, capsys):
    cache = tmp_path / "cache"
    cache_main(["--teacher", world["teachers"][0], "--train", str(world["d"] / "train"),
                "--seq-length", str(T), "--k", "4", "--out", str(cache)])
    s = spec()
    s["train"] = {**s["train"], "random_offset": True}
    with pytest.raises(SystemExit) as e:
        run(world, tmp_path, s, "--cache", str(cache))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "random_offset: false" in err[-1] and err[-1].startswith("error:")


def test_wml_trains_peers_and_saves_best(world, tmp_path):
    s = {"name": "w", "objective": "wml", "reference": {**STUDENT, "hidden_size": 32, "num_heads": 2},
         "num_peers": 2, "peers": None, "alpha": 0.5, "use_bilevel": True,
         "weight_update_frequency": 3, "num_batches": 4, "seq_length": T, "eval_chunks": 8,
         "train": {**spec()["train"], "epochs": 1, "keep_checkpoints": "all"}}  # last.pt read below
    out = run(world, tmp_path, s)
    summary = json.loads((out / "train_summary.json").read_text())
    evals = summary["final_eval"]
    assert set(evals) == {"peer1", "peer2"}
    best = min(evals, key=evals.get)[-1]
    assert dev_ce(out, world) == pytest.approx(evals[f"peer{best}"], rel=1e-4)
    for i in "12":
        assert dev_ce(out / "peers" / i, world) == pytest.approx(evals[f"peer{i}"], rel=1e-4)
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    w = ckpt["objective"]["weights"]
    assert len(ckpt["objective"]["history"]) >= 1 and abs(sum(w) - 1) < 1e-9
    assert (out / "wml_weights.csv").read_text().startswith("step,update,eta,w1,w2,")


@pytest.mark.parametrize("over,msg", [
    ({"alpha": 1.5}, "--spec: alpha: 1.5 is not valid (greater than the maximum of 1)"),
    ({"objective": "mkd"}, "--spec: objective: 'mkd' is not valid"),
    ({"kl_direction": "sideways"}, "--spec: kl_direction: 'sideways' is not valid"),
    ({"student": "llama"}, "--spec: student: 'llama' is not valid (not of type 'object')"),
    ({"seq_length": 64}, "--spec: student.max_position_embeddings: 32 is less than"),
    ({"train": {"lr": 0}}, "--spec: train.lr: 0 is not valid"),
    ({"num_peers": 2}, "--spec: unknown key num_peers"),
])
def test_spec_errors_are_one_line(world, tmp_path, capsys, over, msg):
    with pytest.raises(SystemExit) as e:
        run(world, tmp_path, spec(**over), "--teacher", world["teachers"][0])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1


def test_kd_without_teachers_or_cache(world, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(world, tmp_path, spec())
    assert "needs --teacher" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["kd", "wml"])
def test_ddp_two_processes_match_one(world, tmp_path, objective):
    """torchrun, 2 gloo ranks x 2 micro batches against 1 process x 1 micro batch of the same
    global batch: the student (kd: frozen teachers stay unwrapped) or every WML peer (each
    wrapped in its own DDP) ends with the same weights on both ranks and as in one process."""
    import subprocess
    import sys

    from babydistill.train import launch
    from test_pretrain import ENV, REPO, weights

    d = world["d"]
    if objective == "kd":
        s, extra = spec(), [a for t in world["teachers"] for a in ("--teacher", t)]
    else:
        s = {"name": "w", "objective": "wml", "reference": {**STUDENT, "hidden_size": 32},
             "num_peers": 2, "alpha": 0.5, "weight_update_frequency": 3, "num_batches": 4,
             "seq_length": T, "eval_chunks": 8, "train": spec()["train"]}
        extra = []
    s["train"] = {**s["train"], "epochs": 1, "checkpoint_every": 0}

    def argv(name, train):
        return ["--spec", json.dumps({**s, "train": train}), "--train", str(d / "train"),
                "--dev", str(d / "dev"), "--tokenizer", str(d / "tok"),
                "--out", str(tmp_path / name), "--checkpoint-dir", str(tmp_path / f"c-{name}"),
                *extra]

    one = distill_main(argv("one", s["train"]))
    cmd = launch.build_command(2, "babydistill.distill.student",
                               argv("two", {**s["train"], "grad_accum": 2}),
                               cuda_available=True, python=sys.executable)
    r = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert two["world_size"] == 2 and len(set(two["rank_checksums"])) == 1
    assert two["steps"] == one["steps"] and two["tokens"] == one["tokens"]
    dirs = ["."] if objective == "kd" else ["peers/1", "peers/2"]
    for sub in dirs:
        a, b = weights(tmp_path / "one" / sub), weights(tmp_path / "two" / sub)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
