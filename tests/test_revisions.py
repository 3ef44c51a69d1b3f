"""The words-seen ledger and the revisions by words seen (train.callbacks WordsSeen,
Revisions; train.hub): folders, hub branches, identical final weights, resume after a kill."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from babydistill.config import challenge
from babydistill.train import pretrain
from babydistill.train.checkpoint import load_file as load_checkpoint
from test_pretrain import ENV, PYTHON, REPO, args, corpus, spec, weights  # noqa: F401 (fixture)

AT = [1000, 3000, 5000]


def at_words(counts):
    return ["--at-words", ",".join(map(str, counts))]


def run(corpus, d: Path, counts=(), **train):
    return pretrain.main(args(corpus, d / "m", d / "ck", spec(**train)) + at_words(counts))


def test_official_schedule_and_names():
    # babylm/evaluation-pipeline-2025 evaluation_pipeline/collate_preds.py @591121d
    small = [f"chck_{i}M" for i in range(1, 10)] + [f"chck_{i * 10}M" for i in range(1, 11)]
    other = (small[:-1] + [f"chck_{i * 100}M" for i in range(1, 11)])
    assert [challenge.revision_name(w) for w in challenge.schedule("strict-small-2026")] == small
    assert [challenge.revision_name(w) for w in challenge.schedule("strict-2026")] == other
    assert challenge.revision_name(50_000) == "chck_50K"
    assert challenge.revision_name(1_500_000) == "chck_1500K"


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):  # noqa: F811
    """One run with revisions (and a stale revision of another run in its way), one without."""
    d = tmp_path_factory.mktemp("runs")
    stale = d / "with" / "ck" / "revisions" / "chck_1K"
    stale.mkdir(parents=True)
    (stale / "revision.json").write_text(json.dumps({"identity": "another run"}))
    (stale / "marker").write_text("stale")
    with_rev = run(corpus, d / "with", AT)
    without = run(corpus, d / "without")
    return d, with_rev, without


def test_revisions_leave_the_final_weights_byte_identical(runs):
    d, with_rev, without = runs
    a = (d / "with" / "m" / "model.safetensors").read_bytes()
    assert a == (d / "without" / "m" / "model.safetensors").read_bytes()
    assert with_rev["ledger"] == without["ledger"]
    assert not (d / "without" / "m" / "revisions").exists()
    assert not (d / "without" / "m" / "hub.git").exists()


def test_ledger_counts_words_tokens_and_epochs(runs):
    _, summary, _ = runs
    led = summary["ledger"]
    assert led["tokens_seen"] == summary["tokens"] == summary["steps"] * 8 * 32
    assert led["epochs"] == summary["epochs"] == 2.0
    # the split's whitespace words (tokenize_split's count) per token
    ratio = led["data_words"] / led["data_tokens"]
    assert led["words_seen"] == round(led["tokens_seen"] * ratio)
    assert led["total_words_seen"] == led["words_seen"] and led["ancillary"] == {}


def test_each_revision_is_the_step_crossing_its_count(runs):
    d, summary, _ = runs
    per_step = summary["ledger"]["words_seen"] / summary["steps"]
    revs = d / "with" / "m" / "revisions"
    assert sorted(p.name for p in revs.iterdir()) == ["chck_1K", "chck_3K", "chck_5K"]
    assert not (revs / "chck_1K" / "marker").exists()  # the other run's revision is gone
    final = weights(d / "with" / "m")
    for w in AT:
        info = json.loads((revs / challenge.revision_name(w) / "revision.json").read_text())
        assert w <= info["words_seen"] < w + per_step + 1
        assert info["tokens_seen"] == info["step"] * 8 * 32
        rev = weights(revs / info["revision"])
        assert rev.keys() == final.keys()
        assert any(not torch.equal(rev[k], final[k]) for k in rev)  # earlier weights
        assert (revs / info["revision"] / "tokenizer.json").is_file()
        assert (revs / info["revision"] / "README.md").is_file()


def test_a_cloned_branch_loads_the_folders_weights(runs, tmp_path):
    from transformers import AutoModelForCausalLM

    d, _, _ = runs
    m = d / "with" / "m"
    hub = m / "hub.git"
    branches = subprocess.run(["git", "--git-dir", str(hub), "branch", "--format=%(refname:short)"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert sorted(branches) == ["chck_1K", "chck_3K", "chck_5K", "main"]
    for branch, folder in (("chck_3K", m / "revisions" / "chck_3K"), ("main", m)):
        clone = tmp_path / branch
        subprocess.run(["git", "clone", "--quiet", "--branch", branch, str(hub), str(clone)],
                       check=True)
        assert (clone / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
        a = AutoModelForCausalLM.from_pretrained(clone).state_dict()
        b = AutoModelForCausalLM.from_pretrained(folder).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "main" / "revisions").exists() and not (tmp_path / "main" / "hub.git").exists()


@pytest.mark.slow
def test_sigkill_keeps_written_revisions_and_writes_none_twice(corpus, tmp_path):  # noqa: F811
    """A real process killed with SIGKILL after some revisions, started again: every revision
    once, the ones before the kill untouched, the same weights as an uninterrupted run."""
    counts = list(range(1000, 11_000, 1000))
    # keep_checkpoints all: the checkpoint folder's revisions are compared after the rerun
    s = spec(checkpoint_every=3, epochs=2, keep_checkpoints="all")
    ref = pretrain.main(args(corpus, tmp_path / "ref", tmp_path / "c_ref", s) + at_words(counts))
    cmd = [PYTHON, "-m", "babydistill.train.pretrain",
           *args(corpus, tmp_path / "run", tmp_path / "ck", s), *at_words(counts)]
    p = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    revs, last = tmp_path / "ck" / "revisions", tmp_path / "ck" / "last.pt"
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline and not (
            last.exists() and len(list(revs.glob("*/revision.json"))) >= 3):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = {f.parent.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in revs.glob("*/revision.json")}
    assert len(before) >= 3 and last.exists() and not (tmp_path / "run").exists()
    # the checkpoint holds no state of the stateless callbacks: older checkpoints stay resumable
    assert set(load_checkpoint(last)["callbacks"]) == {"eval", "blimp_curve"}
    r = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stderr
    for name, stat in before.items():
        f = revs / name / "revision.json"
        assert (f.stat().st_ino, f.stat().st_mtime_ns) == stat
        assert f"revision {name} " not in r.stderr
    names = [challenge.revision_name(w) for w in counts
             if w <= ref["ledger"]["words_seen"]]
    assert sorted(p.name for p in (tmp_path / "run" / "revisions").iterdir()) == sorted(names)
    for name in names:
        a = weights(tmp_path / "ref" / "revisions" / name)
        b = weights(tmp_path / "run" / "revisions" / name)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    a, b = weights(tmp_path / "ref"), weights(tmp_path / "run")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


STUDENT = {"arch": "llama", "hidden_size": 16, "num_layers": 1, "num_heads": 2,
           "intermediate_size": 32, "max_position_embeddings": 64}


def distill(corpus, d: Path, s: dict, *extra):  # noqa: F811
    from babydistill.distill.student import main

    main(["--spec", json.dumps(s), "--train", str(corpus / "train"), "--dev", str(corpus / "dev"),
          "--tokenizer", str(corpus / "tok"), "--out", str(d / "m"), "--checkpoint-dir",
          str(d / "ck"), *extra])
    return json.loads((d / "m" / "train_summary.json").read_text())


def kd_spec(**over):
    return {"name": "s", "objective": "kd", "student": STUDENT, "alpha": 0.5, "temperature": 2.0,
            "kl_direction": "forward", "kl_reduction": "batchmean", "seq_length": 32,
            "eval_chunks": 8, "train": {"lr": 1e-2, "batch_size": 8, "epochs": 1,
                                        "warmup_steps": 0, "random_offset": False,
                                        "tensorboard": False, "seed": 3}, **over}


def test_a_students_ledger_holds_its_teachers_live_or_cached(corpus, runs, tmp_path):  # noqa: F811
    from babydistill.distill.teacher_cache import main as cache_main

    d, teacher_summary, _ = runs
    teacher = d / "with" / "m"
    live = distill(corpus, tmp_path / "live", kd_spec(), "--teacher", str(teacher))
    cache = tmp_path / "cache"
    cache_main(["--teacher", str(teacher), "--train", str(corpus / "train"), "--seq-length", "32",
                "--k", "8", "--out", str(cache), "--temperature", "2"])
    cached = distill(corpus, tmp_path / "cached", kd_spec(cache={"k": 8}), "--cache", str(cache))
    t = teacher_summary["ledger"]
    for s in (live, cached):
        led = s["ledger"]
        assert led["ancillary"] == {"m": t}
        assert led["epochs"] == 1.0 and led["words_seen"] > 0
        assert led["total_words_seen"] == led["words_seen"] + t["total_words_seen"]


def test_a_wml_peer_carries_the_runs_ledger_and_its_revisions(corpus, tmp_path):  # noqa: F811
    from babydistill.distill.wml import export_peer

    s = {"name": "w", "objective": "wml", "reference": {**STUDENT, "hidden_size": 32},
         "num_peers": 2, "peers": None, "alpha": 0.5, "use_bilevel": True,
         "weight_update_frequency": 3, "num_batches": 4, "seq_length": 32, "eval_chunks": 8,
         "train": kd_spec()["train"]}
    run_summary = distill(corpus, tmp_path, s, *at_words([1000, 2000]))
    assert sorted(p.name for p in (tmp_path / "m" / "revisions").iterdir()) == ["chck_1K", "chck_2K"]
    peer = export_peer(tmp_path / "m", 2, tmp_path / "w-peer2")
    summary = json.loads((peer / "train_summary.json").read_text())
    assert summary["ledger"] == run_summary["ledger"] and summary["peer"] == 2
    for name in ("chck_1K", "chck_2K"):
        rev = tmp_path / "m" / "revisions" / name
        assert ((peer / "revisions" / name / "model.safetensors").read_bytes()
                == (rev / "peers" / "2" / "model.safetensors").read_bytes())
        show = subprocess.run(["git", "--git-dir", str(peer / "hub.git"), "show",
                               f"{name}:revision.json"], capture_output=True, text=True, check=True)
        assert json.loads(show.stdout)["revision"] == name


def test_an_ensemble_copies_its_members_without_their_revisions(runs, tmp_path):
    from babydistill.distill.ensemble import save_ensemble

    d, _, _ = runs
    out = save_ensemble([d / "with" / "m", d / "without" / "m"], tmp_path / "ens")
    assert (out / "member0" / "model.safetensors").is_file()
    assert not (out / "member0" / "revisions").exists() and not (out / "member0" / "hub.git").exists()
