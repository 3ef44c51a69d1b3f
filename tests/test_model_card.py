"""Model cards: a HF card (YAML header + body) in a tiny model dir, rewritten with eval results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from babydistill.report import model_card

from babydistill.config import provenance
from babydistill.models.build import build_model

SPEC = {"name": "tiny-kd", "objective": "kd", "teachers": ["t-a", "t-b"], "kl_direction": "reverse",
        "alpha": 0.5, "temperature": 2.0, "seq_length": 16, "eval_chunks": 4,
        "student": {"arch": "llama", "hidden_size": 16, "num_layers": 1, "num_heads": 2,
                    "intermediate_size": 32, "max_position_embeddings": 32}}


@pytest.fixture
def run(tmp_path) -> Path:
    """results/r/models/tiny-kd with weights, summary, metrics.csv and provenance.json."""
    d = tmp_path / "results" / "r" / "models" / "tiny-kd"
    build_model(SPEC["student"], 40).save_pretrained(d)
    (d / "train_summary.json").write_text(json.dumps(
        {"steps": 12, "epochs": 2.0, "tokens": 3072, "best_eval_loss": 3.21, "best_step": 10,
         "parameters": {"model": 1234}}))
    (d / "metrics.csv").write_text("step,train_loss,eval_loss\n5,4.0,\n10,3.5,3.21\n")
    (d / "provenance.json").write_text(json.dumps(provenance.record(d, SPEC, [])))
    return d


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_card_before_and_after_evaluation(run):
    card = model_card.main(["--model-dir", str(run)])
    header, body = split_card(card.read_text())
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "text-generation"
    assert "model-index" not in header
    assert "Choosy Babies" in body and "reverse KL" in body  # the paper, from kl_direction
    assert "Not evaluated yet" in body
    assert '"temperature": 2.0' in body  # the config spec
    assert "| best_eval_loss | 3.21 |" in body and "eval_loss=3.21" in body
    spec_sha = json.loads((run / "provenance.json").read_text())["spec_sha256"]
    assert spec_sha in body

    # Evaluation results appear (eval dir found from the run layout), header and body alike.
    ev = run.parents[1] / "eval"
    (ev / "blimp" / "blimp").mkdir(parents=True)
    (ev / "blimp" / "blimp" / "tiny-kd.json").write_text(json.dumps(
        {"model": "tiny-kd", "suite": "blimp", "backend": "lmeval", "accuracy": 0.61234, "n_pairs": 200}))
    (ev / "blimp" / "blimp" / "other.json").write_text(json.dumps({"suite": "blimp", "accuracy": 0.9}))
    (ev / "finetune" / "cola").mkdir(parents=True)
    (ev / "finetune" / "cola" / "tiny-kd.json").write_text(json.dumps(
        {"task": "cola", "metric": "mcc", "score": 0.125}))
    model_card.write_card(run)
    header, body = split_card((run / "README.md").read_text())
    results = header["model-index"][0]["results"]
    assert header["model-index"][0]["name"] == "tiny-kd"
    assert [(r["dataset"]["name"], r["metrics"][0]["value"]) for r in results] == [("blimp", 61.23), ("cola", 12.5)]
    assert "| blimp | 61.23 | 200 | lmeval |" in body and "| cola | mcc | 12.50 |" in body
    assert "90" not in body.split("## Evaluation")[1].split("## Provenance")[0]  # not another model's
    assert "Not evaluated yet" not in body
    assert not [p for p in run.iterdir() if p.name.startswith(".README")]  # atomic: no leftovers


def test_pretrained_model_and_missing_dir(run, tmp_path, capsys):
    prov = json.loads((run / "provenance.json").read_text())
    prov["spec"] = {"name": "teacher", "model": SPEC["student"], "seq_length": 16}
    (run / "provenance.json").write_text(json.dumps(prov))
    body = split_card(model_card.write_card(run).read_text())[1]
    assert "trained from scratch" in body and "Baby Llama" in body
    with pytest.raises(SystemExit):
        model_card.main(["--model-dir", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope" in err


def test_card_update_keeps_the_model_folders_timestamps(tmp_path):
    """Snakemake compares timestamps: a card written after evaluation must not make the
    model look newer than its evaluation outputs (that would rerun them all)."""
    import os
    from babydistill.report.model_card import write_card
    d = tmp_path / "results" / "run" / "models" / "m"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    os.utime(d / "config.json", (1_000_000, 1_000_000))
    os.utime(d, (1_000_000, 1_000_000))
    write_card(d)
    newest = max(p.stat().st_mtime for p in [d, *d.iterdir()])
    assert (d / "README.md").is_file() and newest == 1_000_000


def test_evaluation_stages_refresh_the_card_of_a_run_model_only(run, tmp_path):
    """eval_blimp and finetune rewrite the card of results/<run>/models/<name> after writing
    their result under results/<run>/eval (no chained model_card command in the rules)."""
    import os

    out = run.parents[1] / "eval" / "blimp" / "s" / "tiny-kd.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps({"suite": "s", "backend": "lmeval", "accuracy": 0.5, "n_pairs": 2}))
    os.utime(run, (1_000_000, 1_000_000))
    assert model_card.refresh_after_eval(str(run), str(out)) == run / "README.md"
    header, body = split_card((run / "README.md").read_text())
    assert header["model-index"][0]["results"][0]["dataset"]["name"] == "s"
    assert run.stat().st_mtime == 1_000_000  # the model folder keeps its timestamps
    # a model outside a run's layout (or a result written elsewhere) is left alone
    other = tmp_path / "elsewhere.json"
    other.write_text("{}")
    (run / "README.md").unlink()
    assert model_card.refresh_after_eval(str(run), str(other)) is None
    assert model_card.refresh_after_eval("some/hub-id", str(out)) is None
    assert not (run / "README.md").exists()
