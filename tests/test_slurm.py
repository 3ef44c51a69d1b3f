"""The SLURM profile against a real one-node SLURM (installed and started by tests/slurm_cluster.py).

One module-scoped scenario, several checks on it:
  1. a local run of the mini workflow (the reference, uninterrupted);
  2. a SLURM run with ``--retries 0`` in which the pretrain job is ``scancel``led mid-training
     (preemption): Snakemake stops with that job failed;
  3. the same SLURM command again (the profile's ``rerun-incomplete``): pretrain resumes from
     its checkpoint and everything finishes.
Skips cleanly when not root or SLURM cannot be installed; in CI (root, apt) it really runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from slurm_cluster import (FAST, cluster, scontrol_job, snakemake, snakemake_cmd,  # noqa: F401
                           squeue_jobs, stamps)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CONFIG = ["--config", "sleep=1", "steps=8"]
GPU_RULES = {"pretrain": 1, "eval_blimp": 1, "distill": 2}
CPU_RULES = {"clean_source", "tokenize_split", "tables"}


@pytest.fixture(scope="module")
def scenario(cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("slurm_scenario")
    env = dict(os.environ, BABYDISTILL_PARTITION=cluster["partition"])
    env.pop("BABYDISTILL_GPU_PARTITION", None)
    env.pop("BABYDISTILL_ACCOUNT", None)
    times = {}

    t = time.time()
    local = base / "local"
    r = snakemake(local, "local", "--cores", "4", "--resources", "gpu=2", *CONFIG,
                  "step_sleep=0.1", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    times["local"] = time.time() - t

    # Run 1: pretrain/a is cancelled (preempted) once it has checkpointed two steps.
    t = time.time()
    slurm = base / "slurm"
    slurm.mkdir()
    ckpt = slurm / "checkpoints" / "pretrain" / "a.json"
    with open(base / "run1.log", "w") as log:
        proc = subprocess.Popen(snakemake_cmd(slurm, "slurm", *FAST, "--retries", "0", *CONFIG,
                                              "step_sleep=1"), stdout=log, stderr=subprocess.STDOUT,
                                env=env, text=True)
        try:
            deadline = time.time() + 240
            while time.time() < deadline and proc.poll() is None:
                if ckpt.exists() and json.loads(ckpt.read_text())["step"] >= 2:
                    break
                time.sleep(0.3)
            assert proc.poll() is None, "snakemake ended before pretrain/a reached step 2"
            cancelled = squeue_jobs(slurm)["rule_pretrain_wildcards_a"]
            subprocess.run(["scancel", cancelled], check=True)
            step_at_cancel = json.loads(ckpt.read_text())["step"]
            rc1 = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    run1_stamps = stamps(slurm)
    times["slurm_run1"] = time.time() - t

    # Run 2: the plain profile command again finishes the work, resuming the checkpoint.
    t = time.time()
    r2 = snakemake(slurm, "slurm", *FAST, *CONFIG, "step_sleep=1", env=env, timeout=600)
    (base / "run2.log").write_text(r2.stdout + r2.stderr)
    assert r2.returncode == 0, (r2.stdout + r2.stderr)[-3000:]
    times["slurm_run2"] = time.time() - t
    print(f"\nslurm scenario timings (s): {times}; cluster setup: {cluster['setup_s']}")
    return {"local": local, "slurm": slurm, "rc1": rc1, "cancelled": cancelled,
            "step_at_cancel": step_at_cancel, "run1_stamps": run1_stamps,
            "run1_log": (base / "run1.log").read_text(), "run2_log": r2.stdout + r2.stderr,
            "times": times}


def test_preempted_job_fails_the_first_run(scenario):
    assert scenario["rc1"] != 0
    assert scontrol_job(scenario["cancelled"])["JobState"] == "CANCELLED"
    assert not scenario["run1_stamps"].get("pretrain/a")  # it never finished
    assert scenario["run1_stamps"]["pretrain/b"]["resumed_from"] == 0
    assert 2 <= scenario["step_at_cancel"] < 8


def test_rerun_resumes_from_checkpoint_and_matches_local_run(scenario):
    st = stamps(scenario["slurm"])
    assert st["pretrain/a"]["resumed_from"] >= scenario["step_at_cancel"]
    assert st["pretrain/b"]["resumed_from"] == 0  # finished in run 1, not redone
    local, slurm = scenario["local"] / "results", scenario["slurm"] / "results"
    files = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert len(files) == 11  # 4 clean, tok, 2 pretrain, 2 eval, distill, tables
    assert sorted(p.relative_to(slurm) for p in slurm.rglob("*") if p.is_file()) == files
    for f in files:
        assert (slurm / f).read_bytes() == (local / f).read_bytes(), f


def test_every_job_ran_as_a_slurm_job_with_the_right_gpus(scenario):
    st = stamps(scenario["slurm"])
    st["distill/multi"] = st.pop("distill/ranks/rank0")  # distill's ranks stamp for it
    del st["distill/ranks/rank1"]
    # 4 clean_source, tokenize_split, 2 pretrain, 2 eval_blimp, distill, tables
    assert len(st) == 11
    assert len({s["slurm_job_id"] for s in st.values()}) == 11  # one SLURM job each
    for key, s in st.items():
        rule, _, wc = key.partition("/")
        job = scontrol_job(s["slurm_job_id"])
        assert job["WorkDir"] == str(scenario["slurm"])
        assert job["JobState"] == "COMPLETED"
        assert job["Partition"] == "babytest"  # from $BABYDISTILL_PARTITION via the profile
        assert job["Comment"].startswith(f"rule_{rule}"), (key, job["Comment"])
        if rule in GPU_RULES:
            assert job.get("TresPerJob") == f"gres:gpu:{GPU_RULES[rule]}", key
            # SLURM hands the job exactly its granted (fake) GPUs, e.g. "1" or "0,1"
            devices = s["cuda_visible_devices"].split(",")
            assert len(set(devices)) == GPU_RULES[rule] and set(devices) <= {"0", "1"}
        else:
            assert rule in CPU_RULES
            assert "TresPerJob" not in job or "gpu" not in job["TresPerJob"], key
            assert s["cuda_visible_devices"] is None


def test_sbatch_lines_ask_gpus_only_for_gpu_rules(scenario):
    calls = re.findall(r"sbatch call: (.*)", scenario["run1_log"] + scenario["run2_log"])
    by_rule = {}
    for c in calls:
        rule = re.search(r"--comment '?rule_([a-z_]+?)(?:_wildcards_\S*?)?'? ", c).group(1)
        by_rule.setdefault(rule, []).append(c)
    assert set(by_rule) == set(GPU_RULES) | CPU_RULES
    for rule, cs in by_rule.items():
        for c in cs:
            assert "-p babytest" in c
            if rule in GPU_RULES:
                assert f"--gpus={GPU_RULES[rule]}" in c
            else:
                assert "--gpus" not in c and "--gres" not in c


def test_multi_gpu_rule_runs_torchrun_with_one_rank_per_gpu(scenario):
    slurm = scenario["slurm"]
    out = json.loads((slurm / "results" / "distill" / "multi.json").read_text())
    assert out == {"world_size": 2, "rank_sum": 3}
    ranks = [json.loads((slurm / "logs" / "distill" / "ranks" / f"rank{r}.json").read_text())
             for r in (0, 1)]
    assert len({r["slurm_job_id"] for r in ranks}) == 1  # both ranks inside one SLURM job
    assert all(r["cuda_visible_devices"] == "0,1" for r in ranks)
    assert sorted(r["local_rank"] for r in ranks) == [0, 1]
