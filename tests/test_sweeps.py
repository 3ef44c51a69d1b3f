"""Hyperparameter sweeps (config sweeps:, babydistill.sweep): the space's checks, a tiny study
run through the real training stage, determinism, a killed worker's retried trial, results."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from babydistill import config as bdconfig
from babydistill.common import UserError
from babydistill.config import sweeps
from test_pretrain import tiny_corpus

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO / "src")}
DEMO = bdconfig.load_yaml(REPO / "workflow" / "demo.yaml")

# a model and run small enough that one trial trains in well under a second
MODEL = {"arch": "llama", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 2,
         "intermediate_size": 32, "max_position_embeddings": 32}
TRAIN = {"epochs": 2, "batch_size": 16, "warmup_steps": 2, "checkpoint_every": 0, "log_every": 5,
         "tensorboard": False, "random_offset": False, "seed": 7}
SPACE = {"lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
         "lr_scheduler_type": {"choices": ["linear", "cosine"]},
         "one_minus_adam_beta2": {"low": 1.0e-3, "high": 1.0e-1, "log": True}}


def demo_with(sweep: dict) -> dict:
    cfg = copy.deepcopy(DEMO)
    cfg["sweeps"] = {"s": sweep}
    return cfg


def spec_for(trials=3, workers=1, **extra) -> dict:
    """The workers' spec of a sweep of the demo's student baseline, its stage shrunk."""
    cfg = bdconfig.prepare(demo_with({"base": "student-tiny-nodistill", "space": SPACE,
                                      "trials": trials, "workers": workers, "seed": 3,
                                      "heartbeat_seconds": 0.5, **extra}))
    spec = bdconfig.sweep_spec(cfg, "s")
    spec["stage"].update(model=MODEL, seq_length=16, eval_chunks=8)
    spec["stage"]["train"].update(TRAIN)
    return spec


# -------------------------------------------------------------------------- the space


@pytest.mark.parametrize("space, match", [
    ({"learning_rate": {"low": 1e-4, "high": 1e-3}}, r"space\.learning_rate: unknown hyperparameter"),
    ({"lr": {"low": 1e-3, "high": 1e-3}}, r"space\.lr: low 0\.001 >= high 0\.001 is an empty range"),
    ({"lr": {"low": 1e-2, "high": 1e-3}}, r"space\.lr: .* an inverted range"),
    ({"weight_decay": {"low": 0, "high": 1, "log": True}}, r"space\.weight_decay: log scale .* needs low > 0"),
    ({"lr_scheduler_type": {"choices": ["cosine"]}}, r"space\.lr_scheduler_type\.choices: .*two or more"),
    ({"batch_size": {"choices": [32, 32]}}, r"space\.batch_size\.choices: .*distinct"),
    ({"batch_size": {"low": 8, "high": 64.5}}, r"space\.batch_size\.high: 64\.5 is not an integer"),
    ({"attention_dropout": {"low": 0, "high": 1}}, r"space\.attention_dropout\.high: 1 is outside \[0, 1\)"),
    ({"lr_scheduler_type": {"choices": ["cosine", "step"]}}, r"choices\[1\]: 'step' is not one of"),
    ({"kl_direction": {"choices": ["forward", "reverse"]}}, r"space\.kl_direction: does not apply to a pretrain run"),
    ({"lr": {"low": 1e-4}}, r"space\.lr: give low and high"),
])
def test_bad_space_is_one_line_naming_the_key(space, match):
    with pytest.raises(UserError, match=match) as e:
        bdconfig.prepare(demo_with({"base": "student-tiny-nodistill", "space": space}), source="c.yaml")
    assert "\n" not in str(e.value) and str(e.value).startswith("c.yaml: sweeps.s")


def test_bad_base_objective_and_schema_keys():
    with pytest.raises(UserError, match=r"sweeps\.s\.base: 'nope' is not a pretrain or distill run"):
        bdconfig.prepare(demo_with({"base": "nope", "space": SPACE}))
    with pytest.raises(UserError, match=r"sweeps\.s\.space\.k: base run student-tiny-kd-ensemble "
                                        r"distills from live teachers"):
        bdconfig.prepare(demo_with({"base": "student-tiny-kd-ensemble",
                                    "space": {"k": {"low": 8, "high": 64}}}))
    with pytest.raises(UserError, match=r"sweeps\.s\.suite: 'nope' is not in eval\.blimp\.suites"):
        bdconfig.prepare(demo_with({"base": "student-tiny-nodistill", "space": SPACE,
                                    "objective": "blimp", "suite": "nope"}))
    with pytest.raises(UserError, match=r"sweeps\.s\.train: .*epoch"):
        bdconfig.prepare(demo_with({"base": "student-tiny-nodistill", "space": SPACE,
                                    "train": {"epoch": 1}}))
    with pytest.raises(UserError, match=r"sweeps\.s\.space\.lr: sets train\.lr, which sweeps\.s\.train fixes"):
        bdconfig.prepare(demo_with({"base": "student-tiny-nodistill", "space": SPACE,
                                    "train": {"lr": 1e-3}}))
    with pytest.raises(UserError, match=r"sweeps\.s.*trails"):
        bdconfig.prepare(demo_with({"base": "student-tiny-nodistill", "space": SPACE, "trails": 4}))


def test_trial_params_set_the_run_keys():
    """BabyLlama-2's names reach the job spec's keys (one_minus_* as 1 - v); distillation keys too."""
    cfg = bdconfig.prepare(demo_with({"base": "student-tiny-kd-topk", "space": {
        "alpha": {"low": 0.1, "high": 0.9}, "temperature": {"low": 1, "high": 4},
        "kl_direction": {"choices": ["forward", "reverse"]}, "k": {"low": 16, "high": 256, "log": True},
        "one_minus_adam_beta1": {"low": 0.01, "high": 1, "log": True},
        "attention_dropout": {"low": 0, "high": 0.5}, "num_epochs": {"low": 1, "high": 4}}}))
    spec = bdconfig.sweep_spec(cfg, "s")
    assert spec["space"]["k"] == {"type": "int", "low": 16, "high": 256, "log": True}
    params = {"alpha": 0.3, "temperature": 1.5, "kl_direction": "reverse", "k": 32,
              "one_minus_adam_beta1": 0.05, "attention_dropout": 0.2, "num_epochs": 3}
    stage = sweeps.apply(spec["stage"], "kd", params, "t1")
    parsed = bdconfig.specs.DistillSpec.from_json(stage)
    assert (parsed.kd.alpha, parsed.kd.temperature, parsed.kd.kl_direction, parsed.kd.top_k) == \
        (0.3, 1.5, "reverse", 32)
    assert parsed.train.betas == (0.95, 0.999) and parsed.train.epochs == 3
    assert parsed.student.dropout == 0.2 and parsed.name == "t1"
    assert spec["stage"]["alpha"] == 0.5  # the base spec is untouched
    keys = sweeps.as_run_keys(spec["stage"], "kd", params)
    assert keys["betas"] == [0.95, 0.999] and keys["cache"] == {"k": 32} and keys["dropout"] == 0.2


def test_shipped_paper_sweep_is_babyllama2s_space():
    cfg = bdconfig.prepare(bdconfig.load_yaml(REPO / "config.yaml"))
    spec = bdconfig.sweep_spec(cfg, "smollama-345M")
    assert set(spec["space"]) == {"batch_size", "num_epochs", "lr", "one_minus_adam_beta1",
                                  "one_minus_adam_beta2", "adam_epsilon", "lr_scheduler_type",
                                  "weight_decay", "max_grad_norm", "num_warmup_steps",
                                  "attention_dropout"}
    assert (spec["sampler"], spec["pruner"], spec["min_resource"], spec["reduction_factor"]) == \
        ("tpe", "hyperband", 1, 2)
    assert spec["direction"] == "minimize" and spec["objective"] == "eval_loss"


# -------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A real tokenizer and tokenized splits, built by the project's stages (tiny)."""
    return tiny_corpus(tmp_path_factory.mktemp("corpus"), n_lines=300, vocab_size=280)


def worker_argv(corpus, spec, study, i, out):
    return ["--spec", json.dumps(spec), "--study-dir", str(study), "--worker", str(i),
            "--out", str(out), "--train", str(corpus / "train"), "--dev", str(corpus / "dev"),
            "--tokenizer", str(corpus / "tok")]


def study_of(spec, study_dir):
    from babydistill.sweep import study as sstudy

    return sstudy.open_study(spec, study_dir)


def finished(study):
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]


def test_one_worker_sweep_is_deterministic_and_a_rerun_continues(corpus, tmp_path):
    """Three trials trained by the real stage; the same seed gives the same trials; a rerun
    with more trials adds only the missing ones; results write the table and best run."""
    from babydistill.sweep import results, worker

    spec = spec_for(trials=3)
    runs = []
    for name in ("a", "b"):
        out = worker.main(worker_argv(corpus, spec, tmp_path / name, 0, tmp_path / f"{name}.json"))
        assert [t["number"] for t in out["trials"]] == [0, 1, 2]
        runs.append([(t.params, t.value, t.state.name) for t in study_of(spec, tmp_path / name).get_trials()])
    assert runs[0] == runs[1] and len(runs[0]) == 3
    assert len({json.dumps(p, sort_keys=True) for p, _, _ in runs[0]}) == 3
    # each trial trained with its own parameters, and reported its evaluations
    s = study_of(spec, tmp_path / "a")
    t0 = s.get_trials()[0]
    summary = json.loads((tmp_path / "a" / "trials" / "0000" / "model" / "train_summary.json").read_text())
    if t0.state.name == "COMPLETE":
        assert t0.value == pytest.approx(summary["best_eval_loss"])
        assert len(t0.intermediate_values) == 2  # one evaluation per epoch
    assert not list((tmp_path / "a" / "trials" / "0000" / "checkpoints").glob("*.pt"))
    # a rerun of a complete study runs nothing; with one more trial, runs exactly one
    again = worker.main(worker_argv(corpus, spec, tmp_path / "a", 0, tmp_path / "again.json"))
    assert again["trials"] == []
    more = worker.main(worker_argv(corpus, {**spec, "trials": 4}, tmp_path / "a", 0, tmp_path / "m.json"))
    assert [t["number"] for t in more["trials"]] == [3]
    # another space on the same study folder is refused
    with pytest.raises(SystemExit):
        worker.main(worker_argv(corpus, {**spec, "seed": 4}, tmp_path / "a", 0, tmp_path / "x.json"))
    best = results.write_results({**spec, "trials": 4}, tmp_path / "a", tmp_path / "res")
    table = (tmp_path / "res" / "trials.csv").read_text().splitlines()
    assert table[0].split(",")[:6] == ["trial", "state", "pruned", "lr", "lr_scheduler_type",
                                       "one_minus_adam_beta2"]
    written = {p.name for p in (tmp_path / "res").iterdir()}
    assert len(table) == 5 and {"trials.md", "trials.tex", "best.yaml", "parallel_coordinates.png",
                                "parallel_coordinates.pdf", "importances.csv"} <= written
    importance = (tmp_path / "res" / "importances.csv").read_text().splitlines()
    assert sorted(r.split(",")[0] for r in importance[1:]) == sorted(SPACE)
    complete = [t for t in study_of(spec, tmp_path / "a").get_trials() if t.state.name == "COMPLETE"]
    assert best["value"] == min(t.value for t in complete)
    snippet = bdconfig.yaml.safe_load((tmp_path / "res" / "best.yaml").read_text())
    keys = snippet["pretrain"]["student-tiny-nodistill-best"]
    assert keys["lr"] == best["params"]["lr"] and keys["schedule"] == best["params"]["lr_scheduler_type"]
    assert keys["betas"][1] == pytest.approx(1 - best["params"]["one_minus_adam_beta2"])


def _wait(what, until, procs, timeout=120.0):
    deadline = time.time() + timeout
    while not until():
        for p, log in procs:
            if p.poll() is not None and p.returncode != 0:
                raise AssertionError(f"a worker died while waiting for {what}: "
                                     f"{log.read_text()[-2000:]}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_killed_worker_trial_is_retried_by_the_other(corpus, tmp_path):
    """Two worker processes share a study; one is SIGKILLed mid-trial. The other fails the
    trial once its heartbeat stops, runs it again with the same parameters from the killed
    attempt's checkpoint, and the study ends with the requested finished trials, none twice."""
    spec = spec_for(trials=3, workers=2)
    spec["stage"]["train"]["checkpoint_every"] = 3  # a checkpoint before the first evaluation
    study_dir = tmp_path / "study"
    cmd = [sys.executable, "-m", "babydistill.sweep.worker"]

    def start(i, **env):
        log = tmp_path / f"w{i}.log"
        p = subprocess.Popen([*cmd, *worker_argv(corpus, spec, study_dir, i, tmp_path / f"w{i}.json")],
                             env={**ENV, **env}, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=log.open("w"))
        return p, log

    doomed = start(0, BABYDISTILL_SWEEP_TEST_HOLD="600")  # holds after its trial's first report
    procs = [doomed]
    try:
        _wait("the first report", lambda: (study_dir / "journal.log").exists() and any(
            t.intermediate_values for t in study_of(spec, study_dir).get_trials()), procs)
        survivor = start(1)
        procs.append(survivor)
        _wait("the survivor's trials", lambda: len(finished(study_of(spec, study_dir))) == 2, procs)
        assert doomed[0].poll() is None  # still inside trial 0, its heartbeat going
        doomed[0].send_signal(signal.SIGKILL)
        doomed[0].wait()
        assert survivor[0].wait(timeout=120) == 0, survivor[1].read_text()[-3000:]
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
    trials = study_of(spec, study_dir).get_trials()
    done = finished(study_of(spec, study_dir))
    assert len(done) == 3 and [t.state.name for t in trials].count("FAIL") == 1
    killed = next(t for t in trials if t.state.name == "FAIL")
    retry = next(t for t in done if t.system_attrs.get("failed_trial") == killed.number)
    assert killed.number == 0 and retry.params == killed.params
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == 3  # no trial twice
    out = json.loads((tmp_path / "w1.json").read_text())
    assert sorted(t["number"] for t in out["trials"]) == [1, 2, 3]
    assert not (tmp_path / "w0.json").exists()
    ckpt = study_dir / "trials" / "0000" / "checkpoints" / "last.pt"
    # the killed attempt's checkpoint ("resumed from step N of PATH", the trainer's line)
    assert re.search(rf"resumed from step \d+ of {re.escape(str(ckpt))}", survivor[1].read_text())


def test_dry_run_has_one_gpu_job_per_worker_under_the_slurm_profile(tmp_path):
    """config.yaml's BabyLlama-2 sweep: its workers are N jobs of one GPU each on the GPU
    partition, each with a log and a benchmark, then one results job."""
    from test_workflow import dry_run_jobs, snakemake

    r = snakemake(REPO, "-n", "--profile", str(REPO / "workflow" / "profiles" / "slurm"),
                  "sweeps", "--configfile", str(REPO / "config.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = dry_run_jobs(r.stdout)
    workers = [j for j in jobs if j["rule"] == "sweep_worker"]
    assert sorted(j["wildcards"] for j in workers) == \
        [f"sweep=smollama-345M, worker={i}" for i in range(4)]
    for j in workers:
        assert j["resources"]["gpu"] == "1" and j.get("log") and j.get("benchmark"), j
    assert [j["rule"] for j in jobs].count("sweep_results") == 1


def test_worker_and_results_refuse_a_bad_spec_in_one_line(tmp_path, capsys):
    from babydistill.sweep import results, worker

    bad = {**spec_for(), "space": {"learning_rate": {}}}
    for argv, match in [
        (["--spec", "{}"], "--spec: not a sweep spec (missing name, base"),
        (["--spec", "{"], "--spec: not valid JSON"),
        (["--spec", json.dumps(bad)], "--spec: space: unknown or no hyperparameters (learning_rate)"),
    ]:
        with pytest.raises(SystemExit):
            worker.main([*argv, "--study-dir", str(tmp_path), "--worker", "0", "--out", "o.json",
                         "--train", "t", "--dev", "d", "--tokenizer", "k"])
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit):  # a study with no completed trial has no best one
        results.main(["--spec", json.dumps(spec_for()), "--study-dir", str(tmp_path / "s"),
                      "--out-dir", str(tmp_path / "r")])
    assert "no trial completed" in capsys.readouterr().err


def test_which_trial_failures_count_as_results():
    """A diverged loss or an out-of-memory batch is the trial's result (done, not retried);
    any other error is the run's fault (the worker stops with it)."""
    from babydistill.sweep.worker import _failure

    assert _failure(UserError("training diverged: loss is nan at step 3")) == "diverged"
    assert _failure(torch.OutOfMemoryError("CUDA out of memory")) == "out of memory"
    assert _failure(UserError("--train: not found")) is None
    assert _failure(RuntimeError("boom")) is None


# ------------------------------------------------------------ the best trial as a run


def demo_with_best(**refs) -> dict:
    """The demo with sweep s over its seeded student baseline, named sweep:s:best by a
    distill run's baseline and a paper table (``refs`` replaces those references)."""
    cfg = demo_with({"base": "student-tiny-nodistill", "space": SPACE, "trials": 2})
    cfg["pretrain"]["student-tiny-nodistill"]["seeds"] = [1, 2]
    cfg["distill"]["student-tiny-kd-ensemble"]["baseline"] = refs.get("baseline", "sweep:s:best")
    cfg["tables"]["paper"]["tuned"] = {
        "kind": "zero_shot", "models": [refs.get("model", "sweep:s:best"),
                                        "student-tiny-kd-ensemble"],
        "reference": refs.get("reference", "sweep:s:best")}
    return cfg


def test_best_reference_is_the_base_run_retrained_with_its_seeds():
    cfg = bdconfig.prepare(demo_with_best())
    base = cfg["pretrain"]["student-tiny-nodistill"]
    assert cfg["pretrain"]["s-best"] == {**base, "sweep_best": "s"}
    assert bdconfig.sweep_best_models(cfg) == {
        "s-best@1": {"sweep": "s", "section": "pretrain"},
        "s-best@2": {"sweep": "s", "section": "pretrain"}}
    assert {"s-best@1", "s-best@2"} <= set(bdconfig.model_names(cfg))
    assert bdconfig.baseline_of(cfg, "student-tiny-kd-ensemble") == "s-best@1"
    assert cfg["tables"]["paper"]["tuned"]["models"][0] == "s-best"
    assert cfg["tables"]["paper"]["tuned"]["reference"] == "s-best"
    # the sweep itself still searches its base run, not the best run
    assert bdconfig.sweep_spec(cfg, "s")["base"] == "student-tiny-nodistill@1"
    again = copy.deepcopy(cfg)
    bdconfig.prepare(again)  # a prepared config prepares as it is
    assert again == cfg
    raw = demo_with_best()
    bdconfig.validate(raw)  # validate checks, and leaves the config as written
    assert raw == demo_with_best()


@pytest.mark.parametrize("refs, match", [
    ({"baseline": "sweep:nope:best"},
     r"distill\.student-tiny-kd-ensemble\.baseline: 'sweep:nope:best': no sweep 'nope'"),
    ({"baseline": "sweep:s:worst"}, r"\.baseline: 'sweep:s:worst': write sweep:<name>:best"),
    ({"model": "sweep:other:best"}, r"tables\.paper\.tuned\.models\[0\]: .*no sweep 'other' "
                                    r"in sweeps: \(known: s\)"),
    ({"reference": "sweep::best"}, r"tables\.paper\.tuned\.reference: 'sweep::best': write"),
])
def test_bad_best_reference_is_one_line_naming_the_key(refs, match):
    with pytest.raises(UserError, match=match) as e:
        bdconfig.prepare(demo_with_best(**refs), source="cfg.yaml")
    assert "\n" not in str(e.value) and str(e.value).startswith("cfg.yaml: ")


def test_best_reference_refusals():
    cfg = demo_with_best()
    cfg["pretrain"]["s-best"] = {"model": "llama-student-tiny"}
    with pytest.raises(UserError, match=r"is run s-best, which pretrain\.s-best already names"):
        bdconfig.prepare(cfg)
    cfg = demo_with_best()
    cfg["pretrain"]["llama-tiny"]["sweep_best"] = "s"
    with pytest.raises(UserError, match=r"pretrain\.llama-tiny\.sweep_best: set by the config"):
        bdconfig.prepare(cfg)
    cfg = demo_with_best()  # a distilled best run is a table column, not a baseline
    cfg["sweeps"]["s"] = {"base": "student-tiny-kd-topk", "space": {"alpha": {"low": 0.1, "high": 0.9}}}
    with pytest.raises(UserError, match=r"sweep s searches distill run student-tiny-kd-topk; "
                                        r"a baseline is a pretrain run"):
        bdconfig.prepare(cfg)
    cfg["distill"]["student-tiny-kd-ensemble"]["baseline"] = "student-tiny-nodistill"
    ok = bdconfig.prepare(copy.deepcopy(cfg))
    assert ok["distill"]["s-best"]["sweep_best"] == "s" and "s-best" not in ok["pretrain"]
    cfg["sweeps"]["s"]["space"] = {"k": {"low": 4, "high": 16}}
    with pytest.raises(UserError, match=r"space sets its teacher cache"):
        bdconfig.prepare(cfg)


def best_json(cfg: dict, params: dict) -> dict:
    """best.json as rule sweep_results writes it (babydistill.sweep.results.best_of)."""
    spec = bdconfig.sweep_spec(cfg, "s")
    return {"sweep": "s", "base": spec["base"], "section": spec["section"], "trial": 1,
            "objective": "eval_loss", "value": 3.2, "params": params, "finished": 2,
            "run_keys": sweeps.as_run_keys(spec["stage"], spec["objective_kind"], params)}


def test_best_trial_keys_are_set_on_each_seeds_spec():
    cfg = bdconfig.prepare(demo_with_best())
    params = {"lr": 4.0e-3, "lr_scheduler_type": "cosine", "one_minus_adam_beta2": 0.02}
    best = best_json(cfg, params)
    for seed in (1, 2):
        stage = bdconfig.pretrain_spec(cfg, f"s-best@{seed}")
        spec = sweeps.apply_best(stage, best)
        assert spec["train"]["lr"] == 4.0e-3 and spec["train"]["schedule"] == "cosine"
        assert spec["train"]["betas"] == [stage["train"]["betas"][0], pytest.approx(0.98)]
        assert spec["train"]["seed"] == seed and spec["name"] == f"s-best@{seed}"
        # only the trial's keys change, and the result is a job spec
        assert {k: v for k, v in spec["train"].items() if k not in ("lr", "schedule", "betas")} \
            == {k: v for k, v in stage["train"].items() if k not in ("lr", "schedule", "betas")}
        bdconfig.specs.PretrainSpec.from_json(spec, where="test")
    with pytest.raises(UserError, match=r"the best trial of sweep s, but the spec is run "
                                        r"student-tiny-nodistill@1's"):
        sweeps.apply_best(bdconfig.pretrain_spec(cfg, "student-tiny-nodistill@1"), best)
    with pytest.raises(UserError, match=r"not a sweep's best\.json"):
        sweeps.apply_best(stage, {"sweep": "s"})


def test_pretrain_stage_trains_the_best_trial_from_the_snippet(corpus, tmp_path):
    """--sweep-best: the stage trains --spec with the best trial's keys and records both."""
    from babydistill.train.pretrain import run_stage

    cfg = bdconfig.prepare(demo_with_best())
    stage = bdconfig.pretrain_spec(cfg, "s-best@2")
    stage.update(model=MODEL, seq_length=16, eval_chunks=8)
    stage["train"].update({**TRAIN, "epochs": 1, "seed": 2})
    best = tmp_path / "best.json"
    best.write_text(json.dumps(best_json(cfg, {"lr": 6.0e-3, "lr_scheduler_type": "cosine"})))
    out = tmp_path / "model"
    argv = ["--spec", json.dumps(stage), "--train", str(corpus / "train"), "--dev",
            str(corpus / "dev"), "--tokenizer", str(corpus / "tok"), "--out", str(out),
            "--checkpoint-dir", str(tmp_path / "ckpt")]
    with pytest.raises(UserError, match=r"--sweep-best .*nope\.json: file not found"):
        run_stage([*argv, "--sweep-best", str(tmp_path / "nope.json")])
    run_stage([*argv, "--sweep-best", str(best)])
    prov = json.loads((out / "provenance.json").read_text())
    trained = json.loads((out / "train_summary.json").read_text())
    assert prov["spec"]["train"]["lr"] == 6.0e-3 and prov["spec"]["train"]["schedule"] == "cosine"
    assert prov["spec"]["train"]["seed"] == 2
    assert any(str(best) in str(i) for i in prov["inputs"]), prov["inputs"]
    assert trained["name"] == "s-best@2"


def test_dry_run_trains_the_best_trial_per_seed_and_tables_it(tmp_path):
    """sweep:s:best in the DAG: after the sweep's results, one sweep_best job per seed of
    the base run, reading best.json; their evaluations; the tables job names the run."""
    from test_workflow import dry_run_jobs, snakemake

    cfg = tmp_path / "best.yaml"
    cfg.write_text(json.dumps(demo_with_best()))
    r = snakemake(REPO, "-n", "-p", "--cores", "2", "--configfile", str(cfg), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = dry_run_jobs(r.stdout)
    best = [j for j in jobs if j["rule"] == "sweep_best"]
    assert sorted(j["wildcards"] for j in best) == ["name=s-best@1", "name=s-best@2"]
    for j in best:
        assert "results/demo/sweeps/s/best.json" in j["input"], j
        assert j["resources"]["gpu"] == "1" and j.get("log") and j.get("benchmark")
    assert not any(j["rule"] == "pretrain" and "s-best" in j["wildcards"] for j in jobs)
    assert "--sweep-best results/demo/sweeps/s/best.json" in r.stdout
    evals = [j for j in jobs if j["rule"] == "eval_blimp" and "s-best" in j["wildcards"]]
    assert len(evals) == 2
    (tables_job,) = [j for j in jobs if j["rule"] == "tables"]
    assert "results/demo/models/s-best@1" in tables_job["input"]
    assert '"sweep_best":{"s-best":{"base":"student-tiny-nodistill","sweep":"s"}}' in r.stdout


def test_dry_run_retrains_a_distilled_best_trial_as_its_base_distills(tmp_path):
    """A sweep of a cached and of a live-teacher KD run: each best run is trained by
    distill.student from the base's teacher cache, or its live teachers."""
    from test_workflow import dry_run_jobs, snakemake

    cfg = copy.deepcopy(DEMO)
    alpha = {"alpha": {"low": 0.1, "high": 0.9}}
    cfg["sweeps"] = {"kd": {"base": "student-tiny-kd-topk", "space": alpha, "trials": 2},
                     "live": {"base": "student-tiny-kd-ensemble", "space": alpha, "trials": 2}}
    cfg["tables"]["paper"]["t"] = {"kind": "zero_shot", "reference": "sweep:kd:best",
                                   "models": ["sweep:kd:best", "sweep:live:best"]}
    (tmp_path / "kd.yaml").write_text(json.dumps(cfg))
    r = snakemake(REPO, "-n", "-p", "--cores", "2", "--configfile", str(tmp_path / "kd.yaml"),
                  cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = {j["wildcards"]: j for j in dry_run_jobs(r.stdout) if j["rule"] == "sweep_best"}
    assert set(jobs) == {"name=kd-best", "name=live-best"}
    commands = {m[1]: m[0] for m in re.finditer(r"babydistill\.distill\.student .*?"
                                                 r'"name":"(\w+-best)"', r.stdout)}
    cache = "--cache results/demo/teacher_cache/llama-tiny+gpt2-tiny.k256.T2"
    assert cache in commands["kd-best"] and "--teacher" not in commands["kd-best"]
    assert "--teacher results/demo/models/llama-tiny" in commands["live-best"]
    assert cache not in commands["live-best"]
    assert "results/demo/sweeps/kd/best.json" in jobs["name=kd-best"]["input"]


def test_a_trial_cache_keeps_the_base_runs_precision_and_start_token(tmp_path, monkeypatch):
    """A trial with its own k builds its own cache with the base run's cache precision and start
    token (a student refuses a cache of another), in a folder named apart from an fp32 one."""
    from types import SimpleNamespace

    from babydistill.distill import teacher_cache
    from babydistill.sweep import worker

    calls = []
    monkeypatch.setattr(teacher_cache, "main", lambda argv: calls.append(argv))
    base = {"cache": {"k": 64}, "temperature": 2.0}
    args = SimpleNamespace(cache="base-cache", teacher=["t1", "t2"], train="tok/train")
    trial = {"cache": {"k": 32, "precision": "bf16"}, "temperature": 2.0, "seq_length": 128,
             "start_token": "chunk"}
    out = worker._trial_cache({"stage": base}, trial, args, tmp_path)
    assert out == str(tmp_path / "caches" / "k32.T2.chunk.bf16")
    [argv] = calls
    assert argv[argv.index("--precision") + 1] == "bf16"
    assert argv[argv.index("--start-token") + 1] == "chunk"
    plain = worker._trial_cache({"stage": base}, {**trial, "cache": {"k": 32}, "start_token": "none"},
                                args, tmp_path)
    assert plain == str(tmp_path / "caches" / "k32.T2") and "--precision" not in calls[1]
    # the trial that keeps k and T reads the base run's cache
    assert worker._trial_cache({"stage": base}, {**trial, "cache": {"k": 64}}, args, tmp_path) == "base-cache"
