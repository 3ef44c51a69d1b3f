"""The kept lm-eval task YAMLs (results/<run>/lm_eval_tasks/<suite>/) and their recipe: the
``lm_eval`` CLI, run as RECIPE.md says from the workflow's directory, offline, gives the
same accuracy as our eval JSON."""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import subprocess
import sys

import pytest
import yaml

from babydistill import eval_blimp, lm_eval_tasks
from test_scorer import make_known_suite, tiny_llama  # noqa: F401  (fixture)

needs_accelerate = pytest.mark.skipif(
    __import__("importlib").util.find_spec("accelerate") is None,
    reason="lm-eval's hf model needs the accelerate package")


def make_run(workdir, model_dir):
    """A workflow-like layout: results/r/models/tiny and a suite whose outcomes depend on the
    model (seeded word-order pairs) beside the known-outcome paradigms."""
    suite = workdir / "results" / "r" / "data" / "suites" / "mini"
    make_known_suite(suite)
    rng = random.Random(3)
    words = "the cat dog sat ran on a mat big red child said".split()
    with open(suite / "word_order.jsonl", "w", encoding="utf-8") as f:
        for _ in range(30):
            s = rng.sample(words, 5)
            f.write(json.dumps({"sentence_good": " ".join(s).capitalize() + ".",
                                "sentence_bad": " ".join(reversed(s)).capitalize() + "."}) + "\n")
    models = workdir / "results" / "r" / "models"
    shutil.copytree(model_dir, models / "tiny")
    return suite, models / "tiny"


def test_kept_tasks_have_relative_paths_and_a_recipe(tiny_llama, tmp_path, monkeypatch):
    suite, _ = make_run(tmp_path, tiny_llama)
    monkeypatch.chdir(tmp_path)
    out = lm_eval_tasks.main(["--suite-dir", "results/r/data/suites/mini", "--suite", "mini",
                              "--out", "results/r/lm_eval_tasks/mini"])
    files = sorted(p.name for p in out.iterdir())
    assert files == ["RECIPE.md", "_babydistill_mini.yaml", "babydistill_mini__para_a.yaml",
                     "babydistill_mini__para_b.yaml", "babydistill_mini__qa_congruence_easy.yaml",
                     "babydistill_mini__word_order.yaml"]
    cfg = yaml.safe_load((out / "babydistill_mini__word_order.yaml").read_text())
    path = cfg["dataset_kwargs"]["data_files"]["train"]
    assert path == "results/r/data/suites/mini/word_order.jsonl" and "cache_dir" not in cfg["dataset_kwargs"]
    recipe = (out / "RECIPE.md").read_text()
    assert ("lm_eval --model hf --model_args pretrained=results/<run>/models/<model> --include_path "
            "results/r/lm_eval_tasks/mini --tasks babydistill_mini") in recipe


@pytest.mark.slow  # three lm-eval/torch processes: about 2 minutes on 2 busy cores
@needs_accelerate
def test_lm_eval_cli_recipe_reproduces_our_accuracy(tiny_llama, tmp_path):
    suite, model = make_run(tmp_path, tiny_llama)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf_home"), "OMP_NUM_THREADS": "1"}
    py = [sys.executable, "-m"]
    subprocess.run(py + ["babydistill.lm_eval_tasks", "--suite-dir", "results/r/data/suites/mini",
                         "--suite", "mini", "--out", "results/r/lm_eval_tasks/mini"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    # Ours, through the workflow's path: the kept task YAMLs (lm-eval backend) and the fast scorer.
    ours = {}
    for backend in ("lmeval", "fast"):
        res = subprocess.run(py + ["babydistill.eval_blimp", "--model", "results/r/models/tiny",
                                   "--suite-dir", "results/r/data/suites/mini", "--suite", "mini",
                                   "--out", f"{backend}.json", "--pairs-out", f"{backend}.tsv",
                                   "--backend", backend, "--tasks-dir", "results/r/lm_eval_tasks/mini",
                                   "--work-dir", f"work_{backend}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        ours[backend] = json.loads((tmp_path / f"{backend}.json").read_text())["accuracy"]
    # The recipe, word for word (with the model filled in), through the lm_eval CLI.
    recipe = (tmp_path / "results/r/lm_eval_tasks/mini/RECIPE.md").read_text()
    cmd = next(line.strip() for line in recipe.splitlines() if line.strip().startswith("lm_eval "))
    cmd = cmd.replace("results/<run>/models/<model>", "results/r/models/tiny").split()
    exe = shutil.which("lm_eval", path=os.path.dirname(sys.executable)) or shutil.which("lm_eval")
    cmd = ([exe] if exe else [sys.executable, "-m", "lm_eval"]) + cmd[1:] + ["--output_path", "cli_out"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(open(glob.glob(str(tmp_path / "cli_out" / "**" / "results_*.json"), recursive=True)[0]).read())
    cli_acc = out["results"]["babydistill_mini"]["acc,none"]
    assert 0.3 < cli_acc < 1.0  # not all-or-nothing: the model's choices matter
    assert cli_acc == pytest.approx(ours["lmeval"], abs=1e-9)
    assert cli_acc == pytest.approx(ours["fast"], abs=1e-9)
