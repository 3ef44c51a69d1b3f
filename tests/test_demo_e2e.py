"""The whole demo DAG end to end (shrunk: tests/fixtures/demo_small.yaml), on CPU, offline."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
import yaml

from e2e import REPO, RUN, run_snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(demo_small):
    return demo_small / "results" / RUN


@pytest.fixture(scope="module")
def demo_config():
    return yaml.safe_load((REPO / "workflow" / "demo.yaml").read_text())


def model_names(cfg):
    peers = [f"{name}-peer{i}" for name, run in cfg["distill"].items() if run["objective"] == "wml"
             for i in range(1, run["num_peers"] + 1)]
    return [*cfg["pretrain"], *cfg["distill"], *peers, *cfg["ensembles"]]


def test_summary_table_matches_the_eval_outputs(results, demo_config):
    summary = pd.read_csv(results / "tables" / "summary.csv", index_col=0)
    assert list(summary.index) == model_names(demo_config)
    for model in summary.index:
        scored = json.loads((results / "eval" / "blimp" / "demo" / f"{model}.json").read_text())
        assert scored["model"] == model and scored["n_pairs"] == 12 * 50
        macro = sum(p["acc"] for p in scored["paradigms"].values()) / len(scored["paradigms"])
        assert summary.loc[model, "demo"] == pytest.approx(100 * macro, abs=0.05)
        pairs = pd.read_csv(results / "eval" / "blimp" / "demo" / f"{model}.pairs.tsv", sep="\t")
        assert len(pairs) == 600 and ((pairs.ll_good >= pairs.ll_bad) == pairs.correct.astype(bool)).all()
    # the bootstrap column compares each distilled student with its baseline
    compare = [c for c in summary.columns if c.startswith("demo: vs ")]
    assert compare and summary.loc["student-tiny-kd-ensemble", compare[0]].split()[-1] in ("holds", "n.s.")


def test_models_load_as_saved_and_carry_provenance(results, demo_config):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    for model in model_names(demo_config):
        d = results / "models" / model
        tok = AutoTokenizer.from_pretrained(d)
        assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
        lm = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=model in demo_config["ensembles"])
        ids = tok("the dog sees the cats .", return_tensors="pt").input_ids
        assert lm(ids).logits.shape[-1] >= len(tok)
        prov = json.loads((d / "provenance.json").read_text())
        assert prov["model"] == model and prov["code"]["commit"] == (head or "unknown")


def test_every_model_dir_has_a_card_with_its_scores(results, demo_config):
    """A HF model card for every model dir, written by rule model_card with its scores (apart
    from the model folder); the tokenizer's limit is the model's context; the run keeps its
    lm-eval tasks and recipe."""
    for model in model_names(demo_config):
        d = results / "models" / model
        assert not (d / "README.md").exists()
        text = (results / "model_cards" / model / "README.md").read_text()
        header = yaml.safe_load(text.split("---\n")[1])
        scored = json.loads((results / "eval" / "blimp" / "demo" / f"{model}.json").read_text())
        values = {r["dataset"]["name"]: r["metrics"][0]["value"] for r in header["model-index"][0]["results"]}
        assert values["demo"] == round(100 * scored["accuracy"], 2), model
        if model not in demo_config["ensembles"]:
            assert "cola" in values and "## Config spec" in text
        tok_cfg = json.loads((d / "tokenizer_config.json").read_text())
        cfg = json.loads((d / "config.json").read_text())
        assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
        offset = cfg["pad_token_id"] + 1 if cfg.get("model_type") == "roberta" else 0  # RoBERTa's positions
        assert tok_cfg["model_max_length"] == (cfg.get("max_position_embeddings") or cfg.get("n_positions")) - offset
    tasks = results / "lm_eval_tasks" / "demo"
    assert (tasks / "RECIPE.md").is_file() and (tasks / "_babydistill_demo.yaml").is_file()


def test_training_learned_and_left_its_records(results, demo_config):
    for model in [*demo_config["pretrain"], *demo_config["distill"]]:
        metrics = pd.read_csv(results / "models" / model / "metrics.csv")
        assert metrics["loss"].dropna().iloc[-1] < metrics["loss"].dropna().iloc[0], model
    teacher = pd.read_csv(results / "models" / "llama-tiny" / "metrics.csv")["eval_loss"].dropna()
    assert len(teacher) == 2 and teacher.iloc[-1] < teacher.iloc[0]  # two epochs, eval loss falls
    peers = sorted(p.name for p in (results / "models" / "student-tiny-wml-4peers" / "peers").iterdir())
    assert peers == ["1", "2", "3", "4"]
    weights = pd.read_csv(results / "models" / "student-tiny-wml-4peers" / "wml_weights.csv")
    assert len(weights) > 1 and weights[["w1", "w2", "w3", "w4"]].sum(axis=1).round(9).eq(1).all()
    # one cache per (teachers, k, temperature), shared by the variants and seeds that use it
    (cache,) = [p for p in (results / "teacher_cache").iterdir() if not p.name.startswith(".")]
    assert cache.name == "llama-tiny+gpt2-tiny.k256.T2"
    header = json.loads((cache / "header.json").read_text())
    assert header["k"] == demo_config["distill"]["student-tiny-kd-topk"]["cache"]["k"]


def test_logs_and_benchmarks_for_every_job(demo_small, demo_config):
    logs = demo_small / "results" / "logs" / RUN
    bench = demo_small / "results" / "benchmarks" / RUN
    for model in demo_config["pretrain"]:
        assert "wrote" in (logs / "pretrain" / f"{model}.log").read_text()
        assert (bench / "pretrain" / f"{model}.tsv").read_text().startswith("s\t")
    for model in demo_config["distill"]:
        assert (logs / "distill" / f"{model}.log").stat().st_size > 0


def test_finished_dag_is_up_to_date(demo_small):
    r = run_snakemake(demo_small, "-n", "--cores", "2")
    assert "Nothing to be done" in r.stdout + r.stderr


def test_report_is_self_contained(demo_small):
    report = demo_small / "report.html"
    run_snakemake(demo_small, "--report", str(report))
    html = report.read_text()
    assert len(html) > 100_000  # tables and figures are embedded
    # tables are HTML (shown inline), the papers' tables and their figures among them
    assert "summary.html" in html and "training_curves.png" in html
    assert "baby-llama-table1.html" in html and "baby-llama-table1.png" in html
