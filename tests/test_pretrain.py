"""pretrain CLI end to end (real tokenizer + token files), its spec errors, launch, DDP on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from babydistill.train.checkpoint import load_file as load_checkpoint
from babydistill.train.trainer import TrainingStopped

from babydistill.train import launch

from babydistill.train import pretrain
from babydistill.data.tokenize_split import tokenize_files
from babydistill.data.tokenizer import save_tokenizer, train_tokenizer

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

MODEL = {"arch": "llama", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "num_kv_heads": 2,
         "intermediate_size": 64, "max_position_embeddings": 64}
TRAIN = {"lr": 3e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1, "grad_clip": 1.0,
         "schedule": "cosine", "warmup_steps": 4, "epochs": 2, "batch_size": 8, "grad_accum": 1,
         "random_offset": True, "keep": "best", "checkpoint_every": 5, "eval_every": 0,
         "precision": "auto", "compile": False, "seed": 7, "gpus": 1, "optimizer": "adamw",
         "blimp_every_epoch": False, "log_every": 5}


def spec(**train):
    return {"name": "tiny", "model": MODEL, "train": {**TRAIN, **train}, "seq_length": 32,
            "eval_chunks": 16}


def tiny_corpus(d: Path, n_lines: int = 700, vocab_size: int = 300) -> Path:
    """A real tokenizer dir (``d/tok``) and tokenized train/dev splits (``d/train``,
    ``d/dev``) of a repetitive toy text, built by the project's stages."""
    words = "the cat sat on a mat . a dog ran to the park and the bird sang".split()
    lines = [" ".join(words[(i * 3) % 7:][: 5 + i % 7]) for i in range(n_lines)]
    (d / "train.txt").write_text("\n".join(lines) + "\n")
    (d / "dev.txt").write_text("\n".join(lines[::7]) + "\n")
    save_tokenizer(train_tokenizer([d / "train.txt"], vocab_size=vocab_size, min_frequency=2), d / "tok")
    for split in ("train", "dev"):
        tokenize_files(d / "tok", [d / f"{split}.txt"], d / split, progress=False)
    return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.mktemp("corpus"))


def args(corpus, out, ck, s):
    return ["--spec", json.dumps(s), "--train", str(corpus / "train"), "--dev",
            str(corpus / "dev"), "--tokenizer", str(corpus / "tok"), "--out", str(out),
            "--checkpoint-dir", str(ck)]


def weights(d):
    from safetensors.torch import load_file
    return load_file(str(Path(d) / "model.safetensors"))


def test_pretrain_cli_end_to_end(corpus, tmp_path):
    summary = pretrain.main(args(corpus, tmp_path / "m", tmp_path / "ck", spec()))
    out = tmp_path / "m"
    assert summary["name"] == "tiny" and summary["steps"] > 10
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == len(tok) == summary["vocab_size"]
    # The trained model predicts held-out text far better than chance.
    ids = torch.tensor([tok("the cat sat on a mat . a dog ran to the park")["input_ids"]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < 0.6 * torch.log(torch.tensor(float(len(tok)))).item()
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,loss,lr,tokens_per_s,eval_loss,logs"
    # the stage itself wrote provenance.json (the rule's inputs); the card is rule model_card's
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["spec"] == spec() and prov["model_dir"] == str(out)
    assert list(prov["inputs"]) == [f"{corpus}/train.json", f"{corpus}/dev.json", str(corpus / "tok")]
    assert not (out / "README.md").exists()


def test_stale_checkpoint_of_another_run_is_not_resumed(corpus, tmp_path, capfd):
    """Snakemake reruns a job whose config or inputs changed: its old checkpoint must not be
    resumed (that would silently write the old model again); a killed run still resumes."""
    ref = tmp_path / "ref"
    pretrain.main(args(corpus, ref, tmp_path / "ck_ref", spec(lr=1e-3)))
    ck = tmp_path / "ck"
    with pytest.raises(TrainingStopped):  # an earlier run, lr 3e-3, killed after 6 steps
        pretrain.main(args(corpus, tmp_path / "m", ck, spec(stop_after_steps=6)))
    capfd.readouterr()
    pretrain.main(args(corpus, tmp_path / "m", ck, spec(lr=1e-3)))  # the config changed
    err = capfd.readouterr().err
    assert "starting over" in err and "resumed from" not in err
    for k, v in weights(ref).items():
        assert torch.equal(v, weights(tmp_path / "m")[k]), k

    ck = tmp_path / "ck2"
    with pytest.raises(TrainingStopped):  # same run killed, then started again: resumes
        pretrain.main(args(corpus, tmp_path / "m2", ck, spec(lr=1e-3, stop_after_steps=6)))
    capfd.readouterr()
    pretrain.main(args(corpus, tmp_path / "m2", ck, spec(lr=1e-3)))
    assert "resumed from" in capfd.readouterr().err

    ck = tmp_path / "ck3"
    with pytest.raises(TrainingStopped):
        pretrain.main(args(corpus, tmp_path / "m3", ck, spec(lr=1e-3, stop_after_steps=6)))
    (corpus / "dev.json").touch()  # a new timestamp, the same content: resumes
    capfd.readouterr()
    pretrain.main(args(corpus, tmp_path / "m3", ck, spec(lr=1e-3)))
    assert "resumed from" in capfd.readouterr().err


LOGS = {"metrics.csv", "tensorboard", "input_digests.json"}  # never removed
KEPT = {"all": {"last.pt", "best.pt", "revisions", *LOGS}, "last": {"last.pt", "revisions", *LOGS},
        "none": LOGS}
# best.pt (step 24) is not the last step's weights (72): exporting the last as the best shows
KEEP_TRAIN = {"lr": 0.03, "epochs": 3, "schedule": "constant", "warmup_steps": 0}


@pytest.fixture(scope="module")
def kept_runs(corpus, tmp_path_factory):
    """The tiny model trained once with each keep_checkpoints policy (revisions on)."""
    d = tmp_path_factory.mktemp("keep")
    for policy in KEPT:
        s = pretrain.main(args(corpus, d / policy / "m", d / policy / "ck",
                               spec(keep_checkpoints=policy, **KEEP_TRAIN))
                          + ["--at-words", "1000,3000"])
        assert s["best_step"] < s["steps"]
    return d


@pytest.mark.parametrize("policy", sorted(KEPT))
def test_keep_checkpoints_leaves_exactly_its_files(kept_runs, policy):
    """Once the model folder is final: none frees last.pt, best.pt and revisions/, last keeps
    last.pt (and the revisions it resumes with), all keeps everything; the logs stay. The model
    folder (weights, revisions) is the same whatever the policy."""
    ck, m = kept_runs / policy / "ck", kept_runs / policy / "m"
    assert {p.name for p in ck.iterdir()} == KEPT[policy]
    assert ((m / "model.safetensors").read_bytes()
            == (kept_runs / "all" / "m" / "model.safetensors").read_bytes())
    for rev in ("chck_1K", "chck_3K"):
        assert ((m / "revisions" / rev / "model.safetensors").read_bytes()
                == (kept_runs / "all" / "m" / "revisions" / rev / "model.safetensors").read_bytes())
    assert (m / "metrics.csv").read_text().count("\n") == (ck / "metrics.csv").read_text().count("\n")


def test_default_policy_still_resumes_a_killed_run_then_frees_the_disk(corpus, tmp_path, capfd):
    """keep_checkpoints' default (none) keeps last.pt while the job runs: a kill resumes
    to the uninterrupted weights; the finished job leaves no .pt behind."""
    pretrain.main(args(corpus, tmp_path / "ref", tmp_path / "c_ref", spec()))
    ck = tmp_path / "ck"
    with pytest.raises(TrainingStopped):
        pretrain.main(args(corpus, tmp_path / "m", ck, spec(stop_after_steps=27)))  # epoch: 24
    assert load_checkpoint(ck / "last.pt")["position"]["step"] == 25 and (ck / "best.pt").is_file()
    capfd.readouterr()
    pretrain.main(args(corpus, tmp_path / "m", ck, spec()))
    assert "resumed from step 25" in capfd.readouterr().err
    assert not list(ck.glob("*.pt")) and not list((tmp_path / "c_ref").glob("*.pt"))
    a, b = weights(tmp_path / "ref"), weights(tmp_path / "m")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("policy", ["none", "last"])
def test_forced_rerun_of_a_pruned_job_starts_over_to_the_same_model(kept_runs, corpus, tmp_path,
                                                                   capfd, policy):
    """Snakemake reruns a finished job (its model folder removed) after the policy ran: none
    left nothing to resume; last left the final last.pt without the best.pt that keep: best
    exports, so the run starts over rather than export the last weights as the best."""
    import shutil

    ck = tmp_path / "ck"
    shutil.copytree(kept_runs / policy / "ck", ck)
    capfd.readouterr()
    pretrain.main(args(corpus, tmp_path / "m", ck, spec(keep_checkpoints=policy, **KEEP_TRAIN))
                  + ["--at-words", "1000,3000"])
    err = capfd.readouterr().err
    assert "resumed from" not in err
    assert ("best.pt was removed (keep_checkpoints: last)" in err) == (policy == "last")
    a, b = weights(kept_runs / "all" / "m"), weights(tmp_path / "m")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (tmp_path / "m" / "revisions").iterdir()) == ["chck_1K", "chck_3K"]
    assert {p.name for p in ck.iterdir()} == KEPT[policy]


def test_keep_checkpoints_leaves_the_run_identity_as_before():
    """The policy only decides what is removed after the run: a run's identity (in every
    revision.json of its model folder, and what decides whether a checkpoint resumes) is the
    one a spec without the key had, whatever the policy."""
    from babydistill.train.trainer import run_identity

    before = run_identity(spec())  # TRAIN has no keep_checkpoints: the spec as before the key
    assert all(run_identity(spec(keep_checkpoints=p)) == before for p in KEPT)


def test_bad_keep_checkpoints_is_one_line(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit):
        pretrain.main(args(corpus, tmp_path / "m", tmp_path / "ck", spec(keep_checkpoints="some")))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "keep_checkpoints" in err[0] and "none" in err[0], err


def test_start_token_trains_on_chunks_led_by_bos(corpus, tmp_path):
    """data.start_token: chunk: the model learns what follows <s> (the first word of a chunk),
    which it cannot learn without; the run is another run (its own identity)."""
    from transformers import AutoModelForCausalLM

    on = pretrain.main(args(corpus, tmp_path / "on", tmp_path / "ck_on", {**spec(), "start_token": "chunk"}))
    off = pretrain.main(args(corpus, tmp_path / "off", tmp_path / "ck_off", spec()))
    assert on["steps"] > 10 and on["best_eval_loss"] < 0.6 * torch.log(torch.tensor(300.0)).item()
    from babydistill.data.chunks import TrainChunks

    bos = 1  # <s>
    rows = TrainChunks(str(corpus / "dev"), 32, random_offset=False, seed=0, start_token=bos)
    first = torch.tensor([rows.chunk(i)[1] for i in range(len(rows))])  # what follows <s>
    nll = {}
    for name in ("on", "off"):
        m = AutoModelForCausalLM.from_pretrained(tmp_path / name)
        with torch.no_grad():
            logp = torch.log_softmax(m(input_ids=torch.full((len(first), 1), bos)).logits[:, -1], -1)
        nll[name] = -logp[torch.arange(len(first)), first].mean().item()
    assert nll["on"] < nll["off"] - 0.5, nll  # only the run with <s> learned its embedding
    assert json.loads((tmp_path / "on" / "provenance.json").read_text())["spec"]["start_token"] == "chunk"


@pytest.mark.parametrize("mutate,match", [
    (lambda s: s.pop("model"), "--spec: 'model' is a required property"),
    (lambda s: s["train"].update(lr="fast"), "--spec: train.lr: 'fast' is not valid (not of type 'number')"),
    (lambda s: s["train"].update(schedule="step"), "--spec: train.schedule: 'step' is not valid"),
    (lambda s: s["train"].update(lerning_rate=1), "--spec: train: unknown key lerning_rate"),
    (lambda s: s["model"].update(arch="rnn"), "--spec: model.arch: 'rnn' is not valid"),
    (lambda s: s.update(seq_length=512), "--spec: model.max_position_embeddings: 64 is less than"),
    (lambda s: s.update(eval_chunks=0), "--spec: eval_chunks: 0 is not valid"),
])
def test_bad_spec_is_one_line(corpus, tmp_path, capsys, mutate, match):
    s = json.loads(json.dumps(spec()))
    mutate(s)
    with pytest.raises(SystemExit) as e:
        pretrain.main(args(corpus, tmp_path / "m", tmp_path / "ck", s))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0]
    assert not (tmp_path / "m").exists()


def test_bad_json_and_missing_tokens(corpus, tmp_path, capsys):
    def with_arg(flag, value):
        a = args(corpus, tmp_path / "m", tmp_path / "c", spec())
        a[a.index(flag) + 1] = value
        return a

    for argv, match in [(with_arg("--spec", "{oops"), "--spec: not valid JSON"),
                        (with_arg("--train", str(tmp_path / "nope")), "nope.json"),
                        (with_arg("--tokenizer", str(tmp_path / "notok")), "notok")]:
        with pytest.raises(SystemExit):
            pretrain.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err


def test_launch_command_construction():
    py = "/py"
    assert launch.build_command(1, "babydistill.train.pretrain", ["--x", "1"], cuda_available=True,
                                python=py) == [py, "-m", "babydistill.train.pretrain", "--x", "1"]
    # no CUDA: one process whatever was asked
    assert launch.build_command(4, "m", [], cuda_available=False, python=py) == [py, "-m", "m"]
    assert launch.build_command(4, "m", ["--a"], cuda_available=True, python=py) == [
        py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m", "m", "--a"]
    cmd = launch.main(["--gpus", "1", "--dry-run", "--", "babydistill.train.pretrain", "--spec", "{}"])
    assert cmd[1:] == ["-m", "babydistill.train.pretrain", "--spec", "{}"]


def test_launch_of_one_process_does_not_import_torch():
    """The launcher of a one-GPU/CPU job only execs the stage, which imports torch itself:
    importing it first too cost ~1.4 s per training job."""
    code = ("import sys; from babydistill.train import launch; "
            "launch.build_command(1, 'm', []); launch.build_command(0, 'm', []); "
            "print('torch' in sys.modules)")
    out = subprocess.run([PYTHON, "-c", code], env=ENV, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_launch_errors(capsys):
    with pytest.raises(SystemExit):
        launch.main(["--gpus", "2", "--"])
    assert "nothing to run" in capsys.readouterr().err


def test_launch_execs_the_module_and_keeps_its_exit_code():
    base = [PYTHON, "-m", "babydistill.train.launch", "--gpus", "1", "--", "babydistill.config.presets"]
    ok = subprocess.run(base + ["--count", "llama-58M"], env=ENV, cwd=REPO, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip().splitlines()[-1] == "58343936"
    bad = subprocess.run(base[:-1] + ["json.tool", str(REPO / "no-such.json")], env=ENV,
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no-such.json" in bad.stderr


@pytest.mark.slow
def test_ddp_two_processes_on_cpu_match_one(corpus, tmp_path):
    """torchrun, 2 gloo ranks x 2 micro batches: ranks agree, and equal 1 process x 1 micro
    batch of the same global batch."""
    s = spec(epochs=1, checkpoint_every=0)
    one = pretrain.main(args(corpus, tmp_path / "one", tmp_path / "c1", s))
    cmd = launch.build_command(2, "babydistill.train.pretrain", args(corpus, tmp_path / "two",
                               tmp_path / "c2", spec(epochs=1, checkpoint_every=0, grad_accum=2)),
                               cuda_available=True)
    r = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert two["world_size"] == 2 and len(set(two["rank_checksums"])) == 1
    assert two["steps"] == one["steps"] and two["tokens"] == one["tokens"]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_masked_lm_ddp_two_processes_match_one_with_two_micro_batches(corpus, tmp_path):
    """Issue 23: the masks are seeded per chunk, so 2 gloo ranks of 4 rows see the masks of
    1 process x 2 micro batches of the same 4 rows (no dropout: ranks draw their own)."""
    roberta = {"arch": "roberta", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
               "intermediate_size": 64, "max_position_embeddings": 34, "dropout": 0.0}
    one = pretrain.main(args(corpus, tmp_path / "one", tmp_path / "c1",
                             {**spec(epochs=1, checkpoint_every=0, grad_accum=2), "model": roberta}))
    cmd = launch.build_command(2, "babydistill.train.pretrain", args(
        corpus, tmp_path / "two", tmp_path / "c2",
        {**spec(epochs=1, checkpoint_every=0), "model": roberta}), cuda_available=True)
    r = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert two["world_size"] == 2 and len(set(two["rank_checksums"])) == 1
    assert two["steps"] == one["steps"]
    assert two["best_eval_loss"] == pytest.approx(one["best_eval_loss"], rel=1e-4)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


ROBERTA_TINY = {"arch": "roberta", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
                "intermediate_size": 64, "max_position_embeddings": 34}


# the spec's causal model, and (issue 23) a RoBERTa: dropout 0.1, masks seeded per step and chunk
@pytest.mark.slow
@pytest.mark.parametrize("model,atol", [(None, 1e-6), (ROBERTA_TINY, 0)], ids=["causal", "masked-lm"])
def test_sigkill_then_rerun_matches_uninterrupted(corpus, tmp_path, model, atol):
    """A real process killed with SIGKILL mid-run, started again, ends with the same weights."""
    s = spec(checkpoint_every=3, epochs=3)
    if model:
        s = {**s, "model": model}
    pretrain.main(args(corpus, tmp_path / "ref", tmp_path / "c_ref", s))
    cmd = [PYTHON, "-m", "babydistill.train.pretrain", *args(corpus, tmp_path / "run", tmp_path / "ck", s)]
    p = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "ck" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert last.exists(), "the run never wrote a checkpoint"
    step = load_checkpoint(last)["position"]["step"]
    assert not (tmp_path / "run").exists()  # killed before the end
    r = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from step {step} of {last}" in r.stderr
    a, b = weights(tmp_path / "ref"), weights(tmp_path / "run")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol)
    ref, run = (json.loads((tmp_path / d / "train_summary.json").read_text()) for d in ("ref", "run"))
    assert run["best_eval_loss"] == ref["best_eval_loss"]


@pytest.mark.slow
def test_real_data_demo_preset_learns(shared_subdir, tmp_path):
    """switchboard (real BabyLM 2023 text): the demo's llama-tiny, 2 epochs, eval loss falls."""
    src = shared_subdir("babylm_2023_partial")
    train_txt, dev_txt = src / "babylm_10M" / "switchboard.train", src / "babylm_dev" / "switchboard.dev"
    save_tokenizer(train_tokenizer([train_txt], vocab_size=2000), tmp_path / "tok")
    tokenize_files(tmp_path / "tok", [train_txt], tmp_path / "train", progress=False)
    tokenize_files(tmp_path / "tok", [dev_txt], tmp_path / "dev", progress=False)
    from babydistill.config import DEFAULT_CONFIG, load_yaml
    demo = load_yaml(DEFAULT_CONFIG.parent / "workflow" / "demo.yaml")
    s = {"name": "llama-tiny", "model": demo["models"]["llama-tiny"],
         "train": {**demo["training"], "eval_every": 20, "checkpoint_every": 1000},
         "seq_length": 128, "eval_chunks": 64}
    summary = pretrain.main(args(tmp_path, tmp_path / "m", tmp_path / "ck", s))
    with (tmp_path / "m" / "metrics.csv").open() as f:
        evals = [float(r["eval_loss"]) for r in __import__("csv").DictReader(f) if r["eval_loss"]]
    print("real-data eval losses:", [round(e, 3) for e in evals], summary["wall_time_s"], "s")
    assert len(evals) >= 3 and evals[-1] < evals[0] - 1.0
    assert summary["best_eval_loss"] == pytest.approx(min(evals))


def _start(corpus, out, ck, s):
    """A real pretrain process; returns it once it has written its first checkpoint (the
    run is then mid-training, past its lock)."""
    cmd = [PYTHON, "-m", "babydistill.train.pretrain", *args(corpus, out, ck, s)]
    p = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.time() + 120
    while not (ck / "last.pt").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    assert p.poll() is None, p.communicate()[1][-3000:]
    return p, cmd


@pytest.mark.slow
def test_second_trainer_on_one_checkpoint_dir_is_refused(corpus, tmp_path):
    """Issue 27 #1/#2 with real processes: a trainer still running (an orphaned job) and a
    second one given the same --checkpoint-dir (another lr): the second stops with one line
    naming the holder, and touches nothing of the first's."""
    import socket

    ck = tmp_path / "ck"
    first, _ = _start(corpus, tmp_path / "a", ck, spec(epochs=200, checkpoint_every=2))
    try:
        second = subprocess.run(
            [PYTHON, "-m", "babydistill.train.pretrain",
             *args(corpus, tmp_path / "b", ck, spec(lr=0.3))],
            env=ENV, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second was refused"
    finally:
        first.kill()
        first.wait()
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and lines[-1].startswith("error: "), second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    assert f"PID {first.pid} on {socket.gethostname()} is writing" in lines[-1]
    assert str(ck) in lines[-1]
    assert not (tmp_path / "b").exists() and not list(ck.glob("stale-*"))
    assert load_checkpoint(ck / "last.pt")["spec"]["lr"] == 3e-3  # still the first run's


@pytest.mark.slow
def test_sigterm_checkpoints_and_a_rerun_resumes_to_the_same_weights(corpus, tmp_path):
    """Issue 27 #3: SIGTERM (what SLURM sends before preempting) mid-run: a checkpoint at
    the next step, one line, exit 143; the rerun says where it resumed and ends with the
    weights of an uninterrupted run."""
    s = spec(epochs=8, checkpoint_every=100)  # the periodic checkpoint alone would lose steps
    total = pretrain.main(args(corpus, tmp_path / "ref", tmp_path / "c_ref", s))["steps"]
    ck = tmp_path / "ck"
    s_first = {**s, "train": {**s["train"], "checkpoint_every": 2}}  # resume-free: same run
    p, _ = _start(corpus, tmp_path / "run", ck, s_first)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert p.returncode == 143, err[-3000:]
    assert "no checkpoint: starting at step 0" in err and "Traceback" not in err
    step = load_checkpoint(ck / "last.pt")["position"]["step"]
    assert lines[-1] == (f"error: SIGTERM at step {step} of {total}: checkpointed to "
                         f"{ck / 'last.pt'}; run again to resume from step {step}")
    assert 2 <= step < total and not (tmp_path / "run").exists()
    r = subprocess.run([PYTHON, "-m", "babydistill.train.pretrain",
                        *args(corpus, tmp_path / "run", ck, s)],
                       env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from step {step} of {ck / 'last.pt'}" in r.stderr
    a, b = weights(tmp_path / "ref"), weights(tmp_path / "run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
