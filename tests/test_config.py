"""Config validation: both shipped configs pass, and each kind of mistake is one clear line."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from babydistill import config as bdconfig
from babydistill.common import UserError


@pytest.fixture(scope="module")
def demo(repo_root):
    return yaml.safe_load((repo_root / "workflow" / "demo.yaml").read_text())


@pytest.fixture(scope="module")
def paper(repo_root):
    return yaml.safe_load((repo_root / "config.yaml").read_text())


def test_shipped_configs_are_valid(demo, paper):
    bdconfig.validate(copy.deepcopy(demo))
    bdconfig.validate(copy.deepcopy(paper))


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["training"].update(lrr=1.0), "training: unknown key lrr"),
        (lambda c: c["pretrain"]["gpt2-tiny"].update(lrx=3), "pretrain.gpt2-tiny: unknown key lrx"),
        (lambda c: c["training"].update(epochs="two"), "training.epochs: 'two' is not valid"),
        (lambda c: c["distill"]["student-tiny-reverse-single"].update(kl_direction="sideways"),
         "distill.student-tiny-reverse-single.kl_direction: 'sideways' is not valid"),
        (lambda c: c["distill"]["student-tiny-reverse-single"].update(teachers=["nope"]),
         "'nope' is not a pretrain run"),
        (lambda c: c["pretrain"]["llama-tiny"].update(model="llama-huge"),
         "pretrain.llama-tiny.model: unknown preset 'llama-huge'"),
        (lambda c: c["corpus"].update(layout="2025"), "corpus.layout: '2025' is not valid"),
        (lambda c: c.pop("tokenizer"), "'tokenizer' is a required property"),
        (lambda c: c["ensembles"].update({"llama-tiny": ["llama-tiny", "gpt2-tiny"]}),
         "name already used in pretrain"),
        (lambda c: c["distill"]["student-tiny-reverse-single"].update(cache={"k": 8}),
         "cached teacher targets need fixed chunks"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(demo, mutate, expected):
    cfg = copy.deepcopy(demo)
    mutate(cfg)
    with pytest.raises(UserError) as e:
        bdconfig.validate(cfg, source="demo.yaml")
    msg = str(e.value)
    assert expected in msg
    assert "\n" not in msg and msg.startswith("demo.yaml: ")


def test_overrides_merge_onto_config_yaml(paper):
    cfg = {"training": {"lr": 1e-3}, "clean": {"mode": "improved"}}
    bdconfig.prepare(cfg)
    assert cfg["run"] == paper["run"]
    assert cfg["training"]["lr"] == 1e-3
    assert cfg["training"]["epochs"] == paper["training"]["epochs"]  # untouched keys kept
    assert cfg["clean"]["mode"] == "improved"


def test_full_config_does_not_inherit_paper_runs(demo, paper):
    cfg = bdconfig.prepare(copy.deepcopy(demo))
    assert set(cfg["pretrain"]) == set(demo["pretrain"])
    assert not set(cfg["pretrain"]) & set(paper["pretrain"])


def test_pretrain_spec_merges_defaults_preset_and_overrides(paper):
    spec = bdconfig.pretrain_spec(paper, "gpt2-705M")
    assert spec["model"] == paper["models"]["gpt2-705M"]
    assert spec["train"]["lr"] == 2.5e-4  # the run's own value
    assert spec["train"]["batch_size"] == 256
    assert spec["train"]["grad_clip"] == paper["training"]["grad_clip"]  # default
    assert "model" not in spec["train"]
    assert spec["seq_length"] == 128


def test_distill_spec_baby_llama(paper):
    spec = bdconfig.distill_spec(paper, "baby-llama-58M")
    assert spec["objective"] == "kd"
    assert spec["student"] == paper["models"]["llama-58M"]
    assert spec["teachers"] == ["llama-360M", "gpt2-705M"]
    assert (spec["alpha"], spec["temperature"]) == (0.5, 2.0)
    assert spec["kl_direction"] == "forward" and spec["kl_reduction"] == "batchmean"
    assert spec["train"]["lr"] == 3.0e-4 and spec["train"]["weight_decay"] == 0.1  # the paper's lr
    assert "alpha" not in spec["train"] and "teachers" not in spec["train"]


def test_distill_spec_wml_carries_reference_preset(paper):
    spec = bdconfig.distill_spec(paper, "wml-58M-2peers")
    assert spec["objective"] == "wml"
    assert spec["reference"] == paper["models"]["llama-58M"]
    assert spec["num_peers"] == 2 and spec["outer_loop"] is True


@pytest.mark.parametrize("preset, expected", [("llama-58M", 58e6), ("llama-360M", 360e6),
                                              ("gpt2-705M", 705e6), ("smollama-345M", 345e6)])
def test_approx_params_matches_the_papers(paper, preset, expected):
    n = bdconfig.approx_params(paper["models"][preset], paper["tokenizer"]["vocab_size"])
    assert abs(n - expected) / expected < 0.01


def test_job_resources_scale_with_model_size(paper):
    small = bdconfig.job_resources(paper, "pretrain", "llama-58M-nodistill")
    large = bdconfig.job_resources(paper, "pretrain", "gpt2-705M")
    assert large["mem_mb"] > small["mem_mb"] and large["runtime"] > small["runtime"]
    kd = bdconfig.job_resources(paper, "distill", "baby-llama-58M")
    assert kd["mem_mb"] > small["mem_mb"]  # the teachers sit in memory too


def test_cli_reports_one_line(tmp_path, demo):
    bad = copy.deepcopy(demo)
    bad["data"]["seq_length"] = "long"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    r = subprocess.run([sys.executable, "-m", "babydistill.config", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {f}: data.seq_length: 'long' is not valid "
                                             "(not of type 'integer')"]


def test_seeds_expand_into_instances_with_matching_teachers(demo):
    cfg = copy.deepcopy(demo)
    cfg["pretrain"]["llama-tiny"]["seeds"] = [1, 2]
    cfg["pretrain"]["student-tiny-nodistill"]["seeds"] = [1, 2]
    cfg["distill"]["student-tiny-kd-ensemble"]["seeds"] = [2, 3]
    bdconfig.validate(cfg)
    names = bdconfig.model_names(cfg)
    assert "llama-tiny@1" in names and "llama-tiny@2" in names and "llama-tiny" not in names
    assert "student-tiny-kd-ensemble@3" in names
    spec = bdconfig.distill_spec(cfg, "student-tiny-kd-ensemble@2")
    assert spec["train"]["seed"] == 2
    assert spec["teachers"] == ["llama-tiny@2", "gpt2-tiny"]  # same seed where the teacher has it
    assert bdconfig.teachers_of(cfg, "student-tiny-kd-ensemble@3") == ["llama-tiny@1", "gpt2-tiny"]
    assert bdconfig.baseline_of(cfg, "student-tiny-kd-ensemble@2") == "student-tiny-nodistill@2"
    assert bdconfig.pretrain_spec(cfg, "llama-tiny@1")["train"]["seed"] == 1
    assert bdconfig.ensemble_members(cfg, "tiny-ensemble") == ["llama-tiny@1", "gpt2-tiny"]


def test_curriculum_runs_and_their_twins(paper, demo):
    assert bdconfig.baseline_of(paper, "llama-58M-curriculum") == "llama-58M-nodistill"
    assert bdconfig.baseline_of(demo, "student-tiny-curriculum") == "student-tiny-nodistill"
    assert bdconfig.baseline_of(paper, "llama-360M") is None
    spec = bdconfig.pretrain_spec(paper, "llama-58M-curriculum")
    assert spec["train"]["curriculum"]["epochs_per_bucket"] == 3
    assert len(spec["train"]["curriculum"]["buckets"]) == 5
    assert "baseline" not in spec["train"]
    # Every source in exactly one bucket: the full corpus is reached.
    listed = [s for b in spec["train"]["curriculum"]["buckets"] for s in b]
    assert sorted(listed) == sorted(paper["corpus"]["sources"])


@pytest.mark.parametrize("change, message", [
    (lambda c: c["pretrain"]["llama-58M-curriculum"]["curriculum"]["buckets"].append(["qed"]),
     "more than one bucket"),
    (lambda c: c["pretrain"]["llama-58M-curriculum"]["curriculum"]["buckets"][0].append("childes"),
     "childes not in corpus.sources"),
    (lambda c: c["pretrain"]["llama-58M-curriculum"].update(epochs=12),
     "never reach the last curriculum bucket"),
    (lambda c: c["pretrain"]["llama-58M-curriculum"].update(baseline="nope"),
     "is not a pretrain run"),
])
def test_bad_curriculum_configs_name_the_key(paper, change, message):
    bad = copy.deepcopy(paper)
    change(bad)
    with pytest.raises(UserError, match=message):
        bdconfig.validate(bad, "config.yaml")
