"""The real demo DAG (shrunk: tests/fixtures/demo_small.yaml) through a real one-node SLURM.

One module-scoped scenario, several checks on it:
  1. the reference: the ``demo_small`` fixture's uninterrupted local run;
  2. SLURM run 1 (``--profile workflow/profiles/slurm --retries 0``): the first pretrain job
     to write ``checkpoints/<model>/last.pt`` is sent SIGTERM (``scancel --signal=TERM``, what
     SLURM sends before a preemption or the time limit): the trainer checkpoints at its next
     step and exits 143, the job FAILED; the others go on (``keep-going``) and Snakemake
     ends failed;
  3. SLURM run 2, the same command again (``rerun-incomplete``): the preempted model resumes
     from the step it reached and the DAG finishes.
Then: every job was one sbatch job (COMPLETED; the preempted one FAILED first), GPU rules asked
for a GPU and CPU rules did not, and the tables and evaluation accuracies equal the local run's.
Skips like tests/test_slurm.py when SLURM cannot run here.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from babydistill.train.checkpoint import load_file as load_checkpoint

from e2e import RUN, compare_tables, env as e2e_env, snakemake_cmd
from slurm_cluster import FAST, PROFILES, cluster, scontrol_job, scontrol_jobs, squeue_jobs  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

GPU_RULES = {"pretrain", "distill", "teacher_cache", "eval_blimp", "eval_blimp_paper", "finetune",
             "sweep_worker", "eval_revisions"}
CPU_RULES = {"demo_world", "download_corpus", "download_suite", "download_glue", "clean_source",
             "clean_stats", "train_tokenizer", "tokenize_split", "ensemble", "tables",
             "wml_peer", "lm_eval_tasks", "model_card", "sweep_results", "learning_curves"}
RESUMED = re.compile(r"resumed from step (\d+) of (\S+)")
PREEMPTED = re.compile(r"^error: SIGTERM at step (\d+) of \d+: checkpointed to (\S+); ", re.M)


def _slurm_cmd(workdir: Path) -> list[str]:
    return snakemake_cmd(workdir, "--profile", str(PROFILES / "slurm"), *FAST, "--retries", "0")


def _first_checkpoint(results: Path) -> Path | None:
    found = sorted(results.glob("checkpoints/*/last.pt"), key=lambda p: p.stat().st_mtime)
    return found[0] if found else None


@pytest.fixture(scope="module")
def scenario(cluster, demo_small, tmp_path_factory):
    base = tmp_path_factory.mktemp("slurm_demo")
    slurm = base / "slurm"
    slurm.mkdir()
    results = slurm / "results" / RUN
    env = dict(e2e_env(), BABYDISTILL_PARTITION=cluster["partition"], HF_HUB_OFFLINE="1")
    env.pop("BABYDISTILL_GPU_PARTITION", None)
    env.pop("BABYDISTILL_ACCOUNT", None)
    times = {}

    # Run 1: the first pretrain job to checkpoint gets SIGTERM, as before a preemption.
    t = time.time()
    with open(base / "run1.log", "w") as log:
        proc = subprocess.Popen(_slurm_cmd(slurm), stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=slurm, text=True)
        try:
            deadline = time.time() + 420
            while time.time() < deadline and proc.poll() is None:
                ckpt = _first_checkpoint(results)
                if ckpt:
                    break
                time.sleep(0.3)
            assert proc.poll() is None and ckpt, "snakemake ended before any pretrain checkpoint"
            model = ckpt.parent.name
            cancelled = squeue_jobs(slurm)[f"rule_pretrain_wildcards_{model}"]
            subprocess.run(["scancel", "--signal=TERM", cancelled], check=True)
            rc1 = proc.wait(timeout=1800)  # the rest of the DAG (~70 jobs) through sbatch
            step_at_cancel = load_checkpoint(ckpt)["position"]["step"]  # the step it reached
        finally:
            if proc.poll() is None:
                proc.kill()
    times["slurm_run1"] = time.time() - t
    run1_log = (base / "run1.log").read_text()
    run1_train_log = (slurm / "results" / "logs" / RUN / "pretrain" / f"{model}.log")
    run1_train_log = run1_train_log.read_text() if run1_train_log.exists() else ""

    # Run 2: the same command finishes the DAG, resuming the cancelled model's checkpoint.
    t = time.time()
    r2 = subprocess.run(_slurm_cmd(slurm), capture_output=True, text=True, env=env, cwd=slurm,
                        timeout=1800)
    (base / "run2.log").write_text(r2.stdout + r2.stderr)
    assert r2.returncode == 0, (r2.stdout + r2.stderr)[-4000:]
    times["slurm_run2"] = time.time() - t
    print(f"\nslurm demo timings (s): {times}; cancelled pretrain/{model} (job {cancelled}) "
          f"at checkpoint step {step_at_cancel}; cluster setup: {cluster['setup_s']}")
    return {"local": demo_small / "results" / RUN, "slurm": slurm, "results": results,
            "model": model, "cancelled": cancelled, "step_at_cancel": step_at_cancel, "rc1": rc1,
            "run1_log": run1_log, "run1_train_log": run1_train_log,
            "run2_log": r2.stdout + r2.stderr, "times": times}


def _jobs(scenario) -> list[dict[str, str]]:
    return scontrol_jobs(scenario["slurm"])


def _rule(job: dict[str, str]) -> str:
    m = re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", job["Comment"])
    assert m, job["Comment"]
    return m.group(1)


def test_preempted_pretrain_resumes_from_its_checkpoint(scenario):
    assert scenario["rc1"] != 0  # run 1 lost a job (--retries 0)
    assert scontrol_job(scenario["cancelled"])["JobState"] == "FAILED"  # the trainer's exit 143
    assert scenario["step_at_cancel"] > 0
    run1 = scenario["run1_train_log"]
    assert "resumed from" not in run1 and "no checkpoint: starting at step 0" in run1
    preempted = PREEMPTED.findall(run1)  # its one line: checkpointed at the step it reached
    assert len(preempted) == 1 and "Traceback" not in run1, run1[-2000:]
    assert int(preempted[0][0]) == scenario["step_at_cancel"]
    assert Path(preempted[0][1]).parent.name == scenario["model"]
    log = (scenario["slurm"] / "results" / "logs" / RUN / "pretrain" / f"{scenario['model']}.log").read_text()
    resumed = RESUMED.findall(log)
    assert len(resumed) == 1, log[-2000:]
    step, path = resumed[0]
    assert Path(path).parent.name == scenario["model"] and Path(path).name == "last.pt"
    assert int(step) == scenario["step_at_cancel"]  # from the step SIGTERM reached
    # Only the cancelled job was redone in run 2: every other pretrain log says no resume.
    for other in (scenario["results"].parent / "logs" / RUN / "pretrain").glob("*.log"):
        if other.stem != scenario["model"]:
            assert "resumed from" not in other.read_text(), other


def test_every_job_went_through_sbatch_with_the_right_gpus(scenario):
    jobs = _jobs(scenario)
    by_comment: dict[str, list[dict]] = {}
    for j in jobs:
        by_comment.setdefault(j["Comment"], []).append(j)
    cancelled_comment = f"rule_pretrain_wildcards_{scenario['model']}"
    # Snakemake's own count of jobs: "Job stats" ends with "total N" (rule all runs locally).
    total = int(re.findall(r"^total\s+(\d+)", scenario["run1_log"], re.M)[0])
    assert len(by_comment) == total - 1
    assert len(jobs) == total  # one record per job, plus the cancelled attempt
    for comment, js in by_comment.items():
        states = sorted(j["JobState"] for j in js)
        if comment == cancelled_comment:
            assert states == ["COMPLETED", "FAILED"], comment
        else:
            assert states == ["COMPLETED"], (comment, states)
    rules = {_rule(j) for j in jobs}
    assert rules == GPU_RULES | CPU_RULES  # the demo uses every rule
    for j in jobs:
        assert j["Partition"] == "babytest"  # $BABYDISTILL_PARTITION through the profile
        if _rule(j) in GPU_RULES:
            assert j.get("TresPerJob") == "gres:gpu:1", j["Comment"]  # demo: training.gpus 1
        else:
            assert "gpu" not in j.get("TresPerJob", ""), j["Comment"]


def _metrics(obj, path=()):
    """(key path, value) for every score leaf (accuracy, score, loss, f1, mcc) of an eval JSON."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _metrics(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _metrics(v, path + (i,))
    elif isinstance(obj, (int, float)) and path and re.search(r"acc|score|loss|f1|mcc", str(path[-1])):
        yield path, obj


def test_results_equal_the_local_run(scenario):
    local, slurm = scenario["local"], scenario["results"]
    # A second DAG run from scratch (another executor, one job preempted and resumed): every
    # table file (CSV, Markdown, LaTeX, HTML, the paper tables, provenance) byte for byte. This
    # is also the project's determinism check (tests/test_tables.py runs its own without SLURM).
    files, different = compare_tables(local / "tables", slurm / "tables")
    assert {"summary.csv", "zero_shot.csv", "finetune.csv"} <= files
    assert any(f.startswith("paper/") for f in files)
    assert not different, f"tables differ from the local run's: {different}"
    # The stage outputs eval/{blimp,finetune}/<suite or task>/<model>.json (not lm-eval's
    # scratch cache under eval/blimp/work, whose names are hashes).
    evals = sorted(p.relative_to(local) for p in (local / "eval").glob("*/*/*.json"))
    assert evals and sorted(p.relative_to(slurm) for p in (slurm / "eval").glob("*/*/*.json")) == evals
    for rel in evals:
        # repr: exact for floats, and NaN (e.g. MCC of a constant predictor) equals NaN
        a = {k: repr(v) for k, v in _metrics(json.loads((local / rel).read_text()))}
        b = {k: repr(v) for k, v in _metrics(json.loads((slurm / rel).read_text()))}
        assert a and a == b, rel
    # The resumed model's weights equal the uninterrupted run's, byte for byte.
    name = scenario["model"]
    for f in sorted((local / "models" / name).glob("*.safetensors")):
        assert (slurm / "models" / name / f.name).read_bytes() == f.read_bytes(), f.name
