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

from babydistill.eval import blimp as eval_blimp

from babydistill.eval import lm_eval_tasks
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
    subprocess.run(py + ["babydistill.eval.lm_eval_tasks", "--suite-dir", "results/r/data/suites/mini",
                         "--suite", "mini", "--out", "results/r/lm_eval_tasks/mini"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    # Ours, through the workflow's path: the kept task YAMLs (lm-eval backend) and the fast scorer.
    ours = {}
    for backend in ("lmeval", "fast"):
        res = subprocess.run(py + ["babydistill.eval.blimp", "--model", "results/r/models/tiny",
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


def make_ewok_suite(d):
    """Two EWoK domains in the ewok_filtered layout the BabyLM 2024 pipeline writes
    (ewok/dl_and_filter.py: ewok-core-1.0 records, each followed by its context/target swap)."""
    d.mkdir(parents=True, exist_ok=True)
    items = {
        "physical-relations": [("The box is on the table.", "The box is under the table.",
                                "The table is under the box.", "The table is on the box.")],
        "social-interactions": [("Ana gave Ben a ball.", "Ben gave Ana a ball.",
                                 "Now Ben has the ball.", "Now Ana has the ball."),
                                ("The child was sad.", "The child was happy.",
                                 "The child cried.", "The child laughed.")],
    }
    for domain, rows in items.items():
        with open(d / f"{domain}.jsonl", "w", encoding="utf-8") as f:
            for i, (c1, c2, t1, t2) in enumerate(rows):
                rec = {"Domain": domain, "ConceptA": "x", "ConceptB": "y", "Context1": c1, "Context2": c2,
                       "Target1": t1, "Target2": t2, "ContextDiff": "", "TargetDiff": "", "ContextType": "",
                       "TargetType": "", "MetaTemplateID": i, "TemplateID": i}
                f.write(json.dumps(rec) + "\n")
                f.write(json.dumps({**rec, "Context1": c2, "Context2": c1, "Target1": t2, "Target2": t1}) + "\n")
    return d


def test_ewok_tasks_score_targets_after_the_context(tmp_path):
    from babydistill.eval.scorer import load_suite

    paradigms = load_suite(make_ewok_suite(tmp_path / "ewok_filtered"))
    assert [(p.name, p.kind, p.category, len(p.pairs)) for p in paradigms] == [
        ("physical-relations", "ewok", "physical-relations", 2), ("social-interactions", "ewok", "social-interactions", 4)]
    assert paradigms[0].pairs[1].context == "The box is under the table."
    lm_eval_tasks.write_tasks("ewok_filtered", paradigms, tmp_path / "tasks")
    cfg = yaml.safe_load((tmp_path / "tasks" / "babydistill_ewok_filtered__physical_relations.yaml").read_text())
    # the 2024 pipeline's template: context Context1, choices Target1/Target2, answer 0
    assert (cfg["doc_to_text"], cfg["doc_to_choice"], cfg["doc_to_target"]) == (
        "{{Context1}}", "{{[Target1, Target2]}}", 0)


@needs_accelerate
def test_ewok_lmeval_equals_fast_and_a_hand_reference(tiny_llama, tmp_path):
    import torch

    from babydistill.eval.scorer import load_suite, score_suite

    paradigms = load_suite(make_ewok_suite(tmp_path / "ewok_filtered"))
    good, bad = eval_blimp.run_lmeval(tiny_llama, "ewok_filtered", paradigms, tmp_path / "work", batch_size=8)
    model, tok = eval_blimp.load_model(tiny_llama)
    _, rows = score_suite(model, tok, paradigms, batch_size=3)
    assert max(abs(r[2] - g) + abs(r[3] - b) for r, g, b in zip(rows, good, bad)) < 1e-4
    # by hand: log p(" " + target | context), the context's own tokens first (no BOS)
    pair = paradigms[1].pairs[0]
    ctx = tok.encode(pair.context, add_special_tokens=False)
    whole = tok.encode(pair.context + " " + pair.good, add_special_tokens=False)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0, :-1].float(), -1)
    ref = sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))
    assert good[2] == pytest.approx(ref, abs=1e-4)
