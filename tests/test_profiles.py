"""The execution profiles: the local profile's GPU limit really serialises GPU jobs while CPU
jobs run beside them, and the SLURM profile parses and maps resources as documented
(checked without a cluster; the real cluster run is tests/test_slurm.py)."""

from __future__ import annotations

import itertools

import pytest
import yaml

from slurm_cluster import PROFILES, snakemake, stamps

GPU_RULES = {"pretrain", "distill", "teacher_cache", "eval_blimp", "finetune"}
CPU_RULES = {"download_corpus", "clean_source", "train_tokenizer", "tokenize_split", "tables"}


def _overlaps(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def _intervals(workdir):
    st = stamps(workdir)
    gpu = [v for k, v in st.items() if k.split("/")[0] in GPU_RULES]
    cpu = [v for k, v in st.items() if k.split("/")[0] in CPU_RULES]
    return gpu, cpu


def _run_gpu_jobs(workdir, *resources):
    r = snakemake(workdir, "local", "gpu_jobs", "--cores", "3", *resources,
                  "--config", "sleep=1.5", "steps=4", "step_sleep=0.3", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    gpu, cpu = _intervals(workdir)
    assert len(gpu) == 4 and len(cpu) == 4  # pretrain a,b + eval_blimp a,b; 4 clean_source
    return gpu, cpu


def test_local_profile_serialises_gpu_jobs_but_not_cpu_jobs(tmp_path):
    gpu, cpu = _run_gpu_jobs(tmp_path / "gpu1")  # the profile's own gpu=1
    for a, b in itertools.combinations(gpu, 2):
        assert not _overlaps(a, b), f"GPU jobs {a['name']} and {b['name']} ran at the same time"
    assert any(_overlaps(c, g) for c in cpu for g in gpu), "no CPU job ran beside a GPU job"
    assert all(s["cuda_visible_devices"] is None for s in gpu + cpu)  # local runs set nothing


def test_without_the_gpu_limit_gpu_jobs_do_overlap(tmp_path):
    # The control for the test above: the same DAG with two GPUs lets two GPU jobs share time,
    # so the serialisation seen there comes from the profile's limit, not from the DAG.
    gpu, _ = _run_gpu_jobs(tmp_path / "gpu2", "--resources", "gpu=2")
    assert any(_overlaps(a, b) for a, b in itertools.combinations(gpu, 2))


def test_local_profile_settings():
    cfg = yaml.safe_load((PROFILES / "local" / "config.yaml").read_text())
    assert cfg["cores"] == 8 and cfg["resources"] == {"gpu": 1}
    assert cfg["rerun-incomplete"] is True and cfg["keep-going"] is False


def test_slurm_profile_never_hard_codes_site_settings_and_pins_cpu_rules_to_no_gpu():
    cfg = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    assert cfg["executor"] == "slurm"
    for key in ("slurm_partition", "slurm_account"):
        assert "environ" in str(cfg["default-resources"][key])  # read from the user's shell
    for rule in CPU_RULES:
        assert cfg["set-resources"][rule]["gpu"] == 0
    for rule in GPU_RULES:
        assert "gpu" not in cfg["set-resources"][rule]  # the rule's own count (training.gpus) wins
        assert "BABYDISTILL_GPU_PARTITION" in cfg["set-resources"][rule]["slurm_partition"]


@pytest.mark.parametrize(
    "env, want",
    [({}, ""), ({"BABYDISTILL_PARTITION": "cpuq"}, "cpuq"),
     ({"BABYDISTILL_PARTITION": "cpuq", "BABYDISTILL_GPU_PARTITION": "gpuq"}, "gpuq")],
)
def test_slurm_profile_partition_expressions(monkeypatch, env, want):
    # Evaluated by Snakemake's own evaluator for command-line/profile resource strings.
    from snakemake.resources import Resource

    cfg = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    for k in ("BABYDISTILL_PARTITION", "BABYDISTILL_GPU_PARTITION", "BABYDISTILL_ACCOUNT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    def evaluate(expr):
        return Resource.cli_evaluator("slurm_partition", expr, wildcards={}, input=[], attempt=1,
                                      async_run=None)

    assert evaluate(cfg["set-resources"]["pretrain"]["slurm_partition"]) == want
    assert evaluate(cfg["default-resources"]["slurm_partition"]) == env.get("BABYDISTILL_PARTITION", "")


def test_slurm_profile_asks_for_sigterm_before_the_time_limit_for_training():
    """Issue 27 #3: the training rules' sbatch line carries --signal=TERM@120 (SIGTERM to
    the job's steps 120 s before the limit; the trainer checkpoints and exits 143); the
    executor plugin accepts it in slurm_extra (it refuses the options it manages)."""
    import re

    from snakemake.resources import Resource
    from snakemake_executor_plugin_slurm.validation import get_forbidden_slurm_options

    cfg = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    for rule in ("pretrain", "distill"):
        extra = Resource.cli_evaluator("slurm_extra", cfg["set-resources"][rule]["slurm_extra"],
                                       wildcards={}, input=[], attempt=1, async_run=None)
        assert extra == "--signal=TERM@120"
        assert not [name for pattern, name in get_forbidden_slurm_options().items()
                    if re.search(pattern, extra)]
