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


def write_results(run: Path) -> tuple[list[Path], list[Path]]:
    """The model's eval JSON files under results/<run>/eval, and another model's beside them."""
    ev = run.parents[1] / "eval"
    (ev / "blimp" / "blimp").mkdir(parents=True)
    (ev / "blimp" / "blimp" / "tiny-kd.json").write_text(json.dumps(
        {"model": "tiny-kd", "suite": "blimp", "backend": "lmeval", "accuracy": 0.61234, "n_pairs": 200}))
    (ev / "blimp" / "blimp" / "other.json").write_text(json.dumps({"suite": "blimp", "accuracy": 0.9}))
    (ev / "finetune" / "cola").mkdir(parents=True)
    (ev / "finetune" / "cola" / "tiny-kd.json").write_text(json.dumps(
        {"task": "cola", "metric": "mcc", "score": 0.125}))
    return [ev / "blimp" / "blimp" / "tiny-kd.json"], [ev / "finetune" / "cola" / "tiny-kd.json"]


def test_card_without_and_with_evaluation(run, tmp_path):
    out = tmp_path / "cards" / "tiny-kd" / "README.md"
    card = model_card.main(["--model-dir", str(run), "--out", str(out)])
    assert card == out and not (run / "README.md").exists()  # the model folder is left alone
    header, body = split_card(card.read_text())
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "text-generation"
    assert "model-index" not in header
    assert "Choosy Babies" in body and "reverse KL" in body  # the paper, from kl_direction
    assert "Not evaluated" in body
    assert '"temperature": 2.0' in body  # the config spec
    assert "| best_eval_loss | 3.21 |" in body and "eval_loss=3.21" in body
    spec_sha = json.loads((run / "provenance.json").read_text())["spec_sha256"]
    assert spec_sha in body

    # The results given (and only those) appear, header and body alike.
    blimp, finetune = write_results(run)
    model_card.main(["--model-dir", str(run), "--blimp", *map(str, blimp),
                     "--finetune", *map(str, finetune), "--out", str(out)])
    header, body = split_card(out.read_text())
    results = header["model-index"][0]["results"]
    assert header["model-index"][0]["name"] == "tiny-kd"
    assert [(r["dataset"]["name"], r["metrics"][0]["value"]) for r in results] == [("blimp", 61.23), ("cola", 12.5)]
    assert "| blimp | 61.23 | 200 | lmeval |" in body and "| cola | mcc | 12.50 |" in body
    assert "90" not in body.split("## Evaluation")[1].split("## Provenance")[0]  # not another model's
    assert "Not evaluated" not in body
    assert not [p for p in out.parent.iterdir() if p.name != "README.md"]  # atomic: no leftovers
    assert not (run / "README.md").exists()


def test_results_in_the_order_of_their_suites(run, tmp_path):
    """Suites and tasks appear sorted by name, whatever the order of the arguments."""
    ev = run.parents[1] / "eval" / "blimp"
    paths = []
    for suite in ("zeta", "alpha"):
        (ev / suite).mkdir(parents=True)
        paths.append(ev / suite / "tiny-kd.json")
        paths[-1].write_text(json.dumps({"suite": suite, "backend": "fast", "accuracy": 0.5, "n_pairs": 2}))
    body = split_card(model_card.render(run, paths))[1]
    assert body.index("| alpha |") < body.index("| zeta |")


def test_pretrained_model_missing_dir_and_missing_result(run, tmp_path, capsys):
    prov = json.loads((run / "provenance.json").read_text())
    prov["spec"] = {"name": "teacher", "model": SPEC["student"], "seq_length": 16}
    (run / "provenance.json").write_text(json.dumps(prov))
    out = tmp_path / "README.md"
    body = split_card(model_card.write_card(run, out).read_text())[1]
    assert "trained from scratch" in body and "Baby Llama" in body
    with pytest.raises(SystemExit):
        model_card.main(["--model-dir", str(tmp_path / "nope"), "--out", str(out)])
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope" in err
    # a declared result that is not there is an error, not a card without it
    with pytest.raises(SystemExit):
        model_card.main(["--model-dir", str(run), "--blimp", str(tmp_path / "gone.json"), "--out", str(out)])
    assert "gone.json" in capsys.readouterr().err


def test_card_shows_the_words_seen_ledger_with_teachers(run, tmp_path):
    teacher = {"words_seen": 50_000, "tokens_seen": 56_000, "epochs": 2.0, "data_words": 25_000,
               "ancillary": {}, "total_words_seen": 50_000}
    summary = json.loads((run / "train_summary.json").read_text())
    summary["ledger"] = {"word_count": "whitespace words", "words_seen": 2_730,
                         "tokens_seen": 3_072, "epochs": 2.0, "data_words": 1_365,
                         "ancillary": {"t-a": teacher}, "total_words_seen": 52_730}
    (run / "train_summary.json").write_text(json.dumps(summary))
    _, body = split_card(model_card.render(run))
    section = body.split("## Words seen", 1)[1].split("\n## ", 1)[0]
    assert "| this model | 2,730 | 3,072 | 2 | 1,365 |" in section
    assert "| t-a | 50,000 | 56,000 | 2 | 25,000 |" in section
    assert "Total words seen, teachers included: 52,730." in section


def test_card_of_a_model_without_a_ledger_has_no_words_section(run):
    assert "## Words seen" not in model_card.render(run)


ROBERTA = {"arch": "roberta", "hidden_size": 16, "num_layers": 1, "num_heads": 2,
           "intermediate_size": 32, "max_position_embeddings": 18}


@pytest.fixture
def encoder_run(tmp_path) -> Path:
    """results/r/models/roberta-x: a RobertaForMaskedLM folder as pretrain writes it (the
    tokenizer copied in gains <mask> at id = its size), with summary and provenance."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from babydistill.data.tokenizer import copy_for_model

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(["the cat sees a dog"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    tok.save_pretrained(tmp_path / "tok")
    d = tmp_path / "results" / "r" / "models" / "roberta-x"
    build_model(ROBERTA, len(tok)).save_pretrained(d)
    copy_for_model(tmp_path / "tok", d)
    spec = {"name": "roberta-x", "model": ROBERTA, "seq_length": 16, "eval_chunks": 4}
    (d / "train_summary.json").write_text(json.dumps({"steps": 3, "parameters": {"model": 99}}))
    (d / "provenance.json").write_text(json.dumps(provenance.record(d, spec, [])))
    return d


def test_encoder_card_says_masked_lm_with_its_loading_masking_and_scoring(encoder_run, run, tmp_path):
    ev = tmp_path / "eval"
    (ev / "blimp").mkdir(parents=True)
    (ev / "blimp" / "roberta-x.json").write_text(json.dumps(
        {"suite": "blimp", "backend": "fast", "convention": "babylm-2024", "accuracy": 0.55, "n_pairs": 20}))
    header, body = split_card(model_card.render(encoder_run, [ev / "blimp" / "roberta-x.json"]))
    assert header["pipeline_tag"] == "fill-mask" and "masked-lm" in header["tags"]
    task = header["model-index"][0]["results"][0]["task"]
    assert task["type"] == "fill-mask" and "babylm-2024" in task["name"]
    assert "A roberta masked LM (RoBERTa) trained from scratch (masked-token cross-entropy)" in body
    assert "causal" not in body.lower()
    assert "AutoModelForMaskedLM.from_pretrained(\"roberta-x\")" in body and "AutoModelForCausalLM" not in body
    mask_id = json.loads((encoder_run / "config.json").read_text())["vocab_size"] - 1
    assert f"`<mask>` (id {mask_id})" in body
    assert "probability 0.15; of the chosen, 80% become `<mask>`, 10% a random token and 10% stay" in body
    assert "context 17 tokens (18 positions less the padding offset)" in body  # pad 0: 18 - 0 - 1
    assert "`babylm-2024`: the 2024 pipeline's (minicons's `conditional_score`): the mean" in body
    assert "| blimp | 55.00 | 20 | fast | babylm-2024 |" in body
    # a causal model's card keeps its words
    causal_header, causal = split_card(model_card.render(run))
    assert causal_header["pipeline_tag"] == "text-generation" and "masked" not in causal
    assert "AutoModelForCausalLM" in causal and "context 32 tokens" in causal


def test_distilled_and_mutual_learning_encoders_are_named_masked():
    enc = {"model_type": "roberta", "architectures": ["RobertaForMaskedLM"]}
    what, paper = model_card.describe({"objective": "wml", "num_peers": 3}, enc)
    assert what.startswith("A roberta masked LM (RoBERTa) student trained by teacher-less weighted")
    assert "When Babies Teach Babies" in paper
    what, _ = model_card.describe({"objective": "kd", "teachers": ["t"], "alpha": 0.5, "temperature": 2.0}, enc)
    assert what.startswith("A roberta masked LM (RoBERTa) student distilled (forward KL")
    what, _ = model_card.describe({"objective": "wml"}, {"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    assert what.startswith("A llama student") and "masked" not in what
