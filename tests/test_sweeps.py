"""Hyperparameter sweeps (config sweeps:, babydistill.sweep): the space's checks, a tiny study
run through the real training stage, determinism, a killed worker's retried trial, results."""

from __future__ import annotations

import copy
import json
import os
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
from babydistill.data.tokenize_split import tokenize_files
from babydistill.data.tokenizer import save_tokenizer, train_tokenizer

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
