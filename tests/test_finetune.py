"""Tests for babydistill.eval.finetune: task inputs on real glue_filtered lines, labels, metrics,
the Trainer run (learns a trivial task, stops early, data through datasets, quiet log files),
the skip path, errors, and real CoLA/RTE slices end to end with a tiny random model
(offline)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest
import torch

from babydistill.eval import finetune as ft
from babydistill.common import UserError

torch.set_num_threads(1)

WORDS = ("the a cat dog bird sees likes runs big small red blue happy sad old young "
         "man woman child ball house tree zebra").split()


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A byte-level BPE tokenizer trained here and tiny random LLaMA / GPT-2 causal LMs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                              PreTrainedTokenizerFast)

    root = tmp_path_factory.mktemp("models")
    rng = random.Random(0)
    text = [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(300)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(text, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    torch.manual_seed(0)
    out = {}
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=1, eos_token_id=2))
    gpt2 = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128,
        pad_token_id=0, bos_token_id=1, eos_token_id=2))
    for name, model in (("llama", llama), ("gpt2", gpt2)):
        d = root / name
        model.save_pretrained(d)
        tok.save_pretrained(d)
        out[name] = d
    return out


SPEC = {"lr": 3e-3, "batch_size": 16, "epochs": 3, "patience": 100, "eval_every": 10, "seed": 12}


def _synthetic(tmp_path, n_train=320, n_valid=80):
    """label = 1 iff the sentence contains 'zebra' (balanced)."""
    rng = random.Random(1)
    plain = [w for w in WORDS if w != "zebra"]

    def rec(i):
        words = [rng.choice(plain) for _ in range(6)]
        if i % 2:
            words[rng.randrange(6)] = "zebra"
        return {"sentence": " ".join(words), "label": i % 2, "idx": i}

    d = tmp_path / "data"
    d.mkdir()
    _write_jsonl(d / "cola.train.jsonl", [rec(i) for i in range(n_train)])
    _write_jsonl(d / "cola.valid.jsonl", [rec(i) for i in range(n_valid)])
    return d


# --- task inputs on real lines ------------------------------------------------------------


def _first(path):
    with open(path) as f:
        return json.loads(f.readline())


@pytest.mark.parametrize("task,split", [
    ("cola", "train"), ("sst2", "valid"), ("mrpc", "train"), ("rte", "valid"),
    ("mnli", "valid"), ("mnli-mm", "valid"), ("qnli", "valid"), ("qqp", "valid"),
    ("boolq", "valid"), ("multirc", "valid"), ("wsc", "train")])
def test_inputs_on_real_lines(shared_subdir, task, split):
    glue = shared_subdir("babylm_eval_2024/glue_filtered")
    t = ft.resolve_task(task)
    path = ft.find_split(t, glue, split)
    if path is None:
        pytest.skip(f"{task}.{split} not in {glue}")
    rec = _first(path)
    (a, b), = ft.build_examples(t, [rec], path)[0]
    expected = {
        "cola": (rec.get("sentence"), None), "sst2": (rec.get("sentence"), None),
        "mrpc": (rec.get("sentence1"), rec.get("sentence2")),
        "rte": (rec.get("sentence1"), rec.get("sentence2")),
        "mnli": (rec.get("premise"), rec.get("hypothesis")),
        "mnli-mm": (rec.get("premise"), rec.get("hypothesis")),
        "qnli": (rec.get("question"), rec.get("sentence")),
        "qqp": (rec.get("question1"), rec.get("question2")),
        "boolq": (rec.get("question"), rec.get("passage")),
        "multirc": (f"Question: {rec.get('question')} Answer: {rec.get('answer')}", rec.get("paragraph")),
        "wsc": (f'Does "{rec.get("span2_text")}" refer to "{rec.get("span1_text")}" in this passage?',
                rec.get("text")),
    }[task]
    assert (a, b) == expected and a
    assert t.num_labels == (3 if task.startswith("mnli") else 2)


def test_all_real_valid_files_parse(shared_subdir):
    glue = shared_subdir("babylm_eval_2024/glue_filtered")
    for name in ft.GLUE_TASKS:
        t = ft.resolve_task(name)
        path = ft.find_split(t, glue, "valid")
        if path is None:
            continue
        texts, labels, _ = ft.build_examples(t, ft.read_jsonl(path), path)
        assert len(texts) == len(labels) > 0
        assert set(labels) == set(range(t.num_labels)), name  # every class present, none extra


def test_task_names_and_files(tmp_path):
    assert ft.resolve_task("SST-2").name == "sst2"
    assert ft.resolve_task("MNLI-mm").train_name == "mnli"
    assert ft.resolve_task("msgs_main_verb_control").metric == "mcc"
    assert ft.resolve_task("cola").metric == "mcc" and ft.resolve_task("qqp").metric == "f1"
    with pytest.raises(UserError, match="unknown task"):
        ft.resolve_task("squad")
    # MSGS files in the 2023 pipeline's naming are found too
    (tmp_path / "lexical_content_the_control.train.jsonl").write_text("")
    t = ft.resolve_task("msgs_lexical_content_the")
    assert ft.find_split(t, tmp_path, "train").name == "lexical_content_the_control.train.jsonl"


def test_labels_string_mapping_and_out_of_range(tmp_path):
    t = ft.resolve_task("msgs_x")
    recs = [{"sentence": "s", "label": "True"}, {"sentence": "s", "label": "False"}]
    _, labels, m = ft.build_examples(t, recs, "f")
    assert labels == [1, 0] and m == {"False": 0, "True": 1}
    with pytest.raises(UserError, match="label 2"):
        ft.build_examples(ft.resolve_task("rte"), [{"sentence1": "a", "sentence2": "b", "label": 2}], "f")
    with pytest.raises(UserError, match=r"missing key\(s\) \['sentence2'\]"):
        ft.build_examples(ft.resolve_task("rte"), [{"sentence1": "a", "label": 0}], "f")


def test_mixed_string_and_integer_labels_name_file_and_line(tmp_path):
    t = ft.resolve_task("cola")
    path = tmp_path / "cola.train.jsonl"
    recs = [{"sentence": "s", "label": y} for y in (0, 1, 1, "acceptable", 0)]
    _write_jsonl(path, [recs[0]])
    with path.open("a") as f:  # a blank line: the reported line is the file's, not the record's
        f.write("\n" + "".join(json.dumps(r) + "\n" for r in recs[1:]))
    numbered = ft.read_jsonl(path, with_lines=True)
    lines, records = zip(*numbered)
    with pytest.raises(UserError) as e:
        ft.build_examples(t, records, path, lines=lines)
    msg = str(e.value)
    assert msg.startswith(f"{path}:5: label 'acceptable' is a string") and "\n" not in msg
    with pytest.raises(UserError, match="record 4: label 'acceptable' is a string"):
        ft.build_examples(t, records, path)  # without line numbers: the record's number
    with pytest.raises(UserError, match=r":2: label 1 is a integer.*other labels are strings"):
        ft.build_examples(t, [{"sentence": "s", "label": v} for v in ("a", 1, "b")], "f",
                          lines=[1, 2, 3])
    with pytest.raises(UserError, match="must be an integer class id or a string"):
        ft.build_examples(t, [{"sentence": "s", "label": 0.5}], "f")


def test_encode_pairs_truncates(shared_subdir, tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    t = ft.resolve_task("boolq")
    path = shared_subdir("babylm_eval_2024/glue_filtered") / "boolq.valid.jsonl"
    texts, _, _ = ft.build_examples(t, ft.read_jsonl(path)[:20], path)
    ids = ft.encode(tok, texts, 128)["input_ids"]
    q = tok(texts[0][0])["input_ids"]
    assert all(len(x) <= 128 for x in ids) and max(len(x) for x in ids) == 128  # passages are long
    assert ids[0][: len(q)] == q  # the question survives, the passage is cut (longest first)
    short = ft.encode(tok, [("a cat", "the dog")], 128)
    assert short["input_ids"][0] == tok("a cat")["input_ids"] + tok("the dog")["input_ids"]
    assert short["attention_mask"][0] == [1] * len(short["input_ids"][0])


def test_splits_come_through_datasets(tiny_models, tmp_path):
    import datasets
    from transformers import AutoTokenizer

    data = _synthetic(tmp_path, n_train=40, n_valid=12)
    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    t = ft.resolve_task("cola")
    train, valid, truncated = ft.load_splits(t, data / "cola.train.jsonl", data / "cola.valid.jsonl",
                                             tok, 128, tmp_path / "cache", max_train=30,
                                             max_valid=None, seed=12)
    assert isinstance(train, datasets.Dataset) and (len(train), len(valid)) == (30, 12)
    assert truncated == {"train": 0, "validation": 0}  # 6-word sentences fit 128 tokens
    assert set(train.column_names) == {"input_ids", "attention_mask", "labels"}
    recs = ft.read_jsonl(data / "cola.train.jsonl")
    keep = ft.subsample(40, 30, 12)
    assert train["labels"] == [recs[i]["label"] for i in keep]
    assert train[0]["input_ids"] == tok(recs[keep[0]]["sentence"])["input_ids"]
    assert any((tmp_path / "cache").rglob("*.arrow"))  # the per-job cache, not ~/.cache


# --- metrics ------------------------------------------------------------------------------


def test_metrics_hand_computed():
    y = [1, 1, 1, 0, 0, 0, 1, 0]
    p = [1, 1, 0, 0, 1, 0, 1, 0]  # TP=3 FN=1 FP=1 TN=3
    assert ft.accuracy(p, y) == pytest.approx(6 / 8)
    assert ft.f1_binary(p, y) == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert ft.mcc(p, y) == pytest.approx((3 * 3 - 1 * 1) / (4 * 4))  # sqrt(4*4*4*4)
    # TP=2 FN=2 FP=1 TN=0: (2*0 - 1*2) / sqrt((2+1)(2+2)(0+1)(0+2))
    assert ft.mcc([1, 1, 0, 0, 1], [1, 1, 1, 1, 0]) == pytest.approx(-2 / 24 ** 0.5)
    assert ft.mcc([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    assert ft.mcc([1, 1, 1], [0, 1, 1]) == 0.0  # constant prediction: undefined -> 0
    assert ft.f1_binary([0, 0], [1, 0]) == 0.0
    # three classes (MNLI-style): the multiclass MCC, from the confusion matrix by hand
    y3, p3 = [0, 1, 2, 0, 1, 2], [0, 2, 2, 0, 1, 1]  # C = [[2,0,0],[0,1,1],[0,1,1]]
    cov_yp = 4 * 6 - (2 * 2 + 2 * 2 + 2 * 2)  # correct * n - sum(pred_k * true_k)
    assert ft.mcc(p3, y3) == pytest.approx(cov_yp / (6 * 6 - 12))


# --- the training loop --------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_learns_trivial_task(tiny_models, tmp_path, arch):
    data = _synthetic(tmp_path)
    r = ft.finetune(tiny_models[arch], "cola", data, SPEC, device="cpu")
    assert r["metric"] == "mcc" and r["n_train"] == 320 and r["n_valid"] == 80
    assert r["score"] > 0.6, r["history"]  # chance is MCC 0
    assert r["score"] == max(h["score"] for h in r["history"])
    assert [h["step"] for h in r["history"]][:3] == [10, 20, 30]
    first, last = r["history"][0]["loss"], r["history"][-1]["loss"]
    assert last < first


def test_early_stopping_after_patience(tiny_models, tmp_path):
    data = _synthetic(tmp_path)
    # an lr this small cannot change any prediction, so no evaluation improves on the first
    spec = {**SPEC, "lr": 1e-12, "patience": 3, "eval_every": 2, "epochs": 5}
    r = ft.finetune(tiny_models["llama"], "cola", data, spec, max_train=64, device="cpu")
    assert r["stopped_early"] is True
    assert len(r["history"]) == 1 + 3 and r["steps"] == 8  # of 5 * 4 = 20 possible
    assert len({h["score"] for h in r["history"]}) == 1


def test_max_train_is_deterministic_subsample(tiny_models, tmp_path):
    data = _synthetic(tmp_path)
    spec = {**SPEC, "epochs": 1, "eval_every": 100}
    a = ft.finetune(tiny_models["llama"], "cola", data, spec, max_train=24, device="cpu")
    b = ft.finetune(tiny_models["llama"], "cola", data, spec, max_train=24, device="cpu")
    assert a["n_train"] == 24 and a["steps"] == 2  # ceil(24 / 16)
    c = ft.finetune(tiny_models["llama"], "cola", data, spec, max_train=24, max_valid=30, device="cpu")
    assert c["n_valid"] == 30
    assert a["history"] == b["history"]  # same subset, same seed: same run
    assert ft.subsample(10, 4, 1) == ft.subsample(10, 4, 1) != ft.subsample(10, 4, 2)


# --- CLI: skip path and errors ------------------------------------------------------------


def _cli(tmp_path, model, task, data, *extra, spec=None):
    out = tmp_path / "out" / f"{task}.json"
    argv = ["--model", str(model), "--task", task, "--data-dir", str(data),
            "--spec", json.dumps(spec or SPEC), "--out", str(out), "--device", "cpu", "--threads", "1",
            *extra]
    ft.main(argv)
    return json.loads(out.read_text())


def test_skip_when_no_train_file(tiny_models, tmp_path, capsys):
    d = tmp_path / "data"
    d.mkdir()
    _write_jsonl(d / "boolq.valid.jsonl", [{"question": "q", "passage": "p", "label": 1}])
    r = _cli(tmp_path, tiny_models["llama"], "boolq", d)
    assert r["skipped"] is True and r["task"] == "boolq" and "no train file" in r["reason"]
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"skip: boolq: no train file in {d}"


@pytest.mark.parametrize("case,match", [
    ("task", "unknown task"), ("valid", "validation file not found"),
    ("json", r"cola.train.jsonl:2: not valid JSON"), ("spec", r"--spec: '\w+' is a required property"),
    ("label", r"cola.valid.jsonl:3: label 'acceptable' is a string"),
])
def test_errors_are_one_line(tiny_models, tmp_path, capsys, case, match):
    d = _synthetic(tmp_path, n_train=4, n_valid=4)
    task, spec = "cola", SPEC
    if case == "task":
        task = "nope"
    elif case == "valid":
        (d / "cola.valid.jsonl").unlink()
    elif case == "json":
        lines = (d / "cola.train.jsonl").read_text().splitlines()
        lines[1] = lines[1][:-3]
        (d / "cola.train.jsonl").write_text("\n".join(lines) + "\n")
    elif case == "spec":
        spec = {"lr": 1e-3}
    elif case == "label":
        lines = (d / "cola.valid.jsonl").read_text().splitlines()
        lines[2] = json.dumps({"sentence": "a cat runs", "label": "acceptable"})
        (d / "cola.valid.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as e:
        _cli(tmp_path, tiny_models["llama"], task, d, spec=spec)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(match, err[0])


def test_log_file_is_small_and_nothing_left_behind(tiny_models, tmp_path):
    """A run of many steps with stdout and stderr going to a file (as under the rule's
    ``> {log} 2>&1``): a few plain lines, no per-step redraws, no Trainer dicts; the job's
    temporary folder (datasets cache, Trainer output) is gone afterwards."""
    data = _synthetic(tmp_path, n_train=320, n_valid=16)
    out = tmp_path / "out" / "cola.json"
    spec = {**SPEC, "batch_size": 4, "epochs": 2, "eval_every": 4, "patience": 1000}
    log = tmp_path / "finetune.log"
    with log.open("w") as f:
        subprocess.run([sys.executable, "-m", "babydistill.eval.finetune", "--model",
                        str(tiny_models["llama"]), "--task", "cola", "--data-dir", str(data),
                        "--spec", json.dumps(spec), "--out", str(out), "--device", "cpu",
                        "--threads", "1"], stdout=f, stderr=subprocess.STDOUT, check=True,
                       timeout=900, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    r = json.loads(out.read_text())
    assert r["steps"] == 160 and len(r["history"]) == 40
    text = log.read_text()
    assert "\r" not in text and "{'loss'" not in text and "eval_mcc" not in text, text
    assert len(text.splitlines()) <= 8 and len(text) < 2000, text  # a bar line per 30 s at most
    assert "best mcc" in text.splitlines()[-1]
    assert sorted(p.name for p in out.parent.iterdir()) == ["cola.json"]


# --- real data, end to end ----------------------------------------------------------------


@pytest.mark.parametrize("task", ["cola", "rte"])
def test_real_slice_end_to_end(shared_subdir, tiny_models, tmp_path, task):
    glue = shared_subdir("babylm_eval_2024/glue_filtered")
    spec = {"lr": 1e-3, "batch_size": 8, "epochs": 1, "patience": 10, "eval_every": 2, "seed": 12}
    r = _cli(tmp_path, tiny_models["llama"], task, glue, "--max-train", "16", spec=spec)
    n_valid = len(ft.read_jsonl(glue / f"{task}.valid.jsonl"))
    assert r["task"] == task and r["n_train"] == 16 and r["n_valid"] == n_valid and r["steps"] == 2
    assert r["metric"] == ("mcc" if task == "cola" else "acc")
    assert len(r["history"]) == 1 and r["score"] == r["history"][0]["score"]
    lo = -1.0 if task == "cola" else 0.0
    assert lo <= r["score"] <= 1.0 and r["history"][0]["loss"] > 0
    assert r["hyperparameters"]["max_length"] == 128


# --- issue 27.4/27.7: bad GLUE data is refused, not trained on and reported ------------------

def _rewrite(path, edit):
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in edit(recs)))


@pytest.mark.parametrize("case,match", [
    ("empty_labels", r"cola.train.jsonl:1: label is empty"),
    ("one_class", r"cola.train.jsonl: every training example is class 1; a classifier needs at least two"),
    ("empty_sentences", r"cola.train.jsonl:1: input 1 of task cola is empty"),
    ("null_sentence", r"cola.train.jsonl:3: input 1 of task cola is NoneType, not text"),
    ("int_sentence", r"cola.valid.jsonl:2: input 1 of task cola is int, not text"),
    ("non_utf8", r"cola.valid.jsonl:2: not UTF-8"),
])
def test_bad_glue_data_is_one_line(tiny_models, tmp_path, capsys, case, match):
    d = _synthetic(tmp_path, n_train=8, n_valid=4)
    train, valid = d / "cola.train.jsonl", d / "cola.valid.jsonl"
    if case == "empty_labels":
        _rewrite(train, lambda rs: [{**r, "label": ""} for r in rs])
    elif case == "one_class":
        _rewrite(train, lambda rs: [{**r, "label": 1} for r in rs])
    elif case == "empty_sentences":
        _rewrite(train, lambda rs: [{**r, "sentence": ""} for r in rs])
    elif case == "null_sentence":
        _rewrite(train, lambda rs: [{**r, "sentence": None} if i == 2 else r for i, r in enumerate(rs)])
    elif case == "int_sentence":
        _rewrite(valid, lambda rs: [{**r, "sentence": 7} if i == 1 else r for i, r in enumerate(rs)])
    elif case == "non_utf8":
        lines = valid.read_bytes().splitlines(keepends=True)
        lines[1] = lines[1].replace(b'"sentence": "', b'"sentence": "caf\xe9 ')
        valid.write_bytes(b"".join(lines))
    with pytest.raises(SystemExit) as e:
        _cli(tmp_path, tiny_models["llama"], "cola", d)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and re.search(match, err[-1]), err
    assert not (tmp_path / "out" / "cola.json").exists()


@pytest.mark.parametrize("kind,match", [
    ("vocab", r"/m/config\.json: vocab_size \d+, but the weights' embedding has \d+ rows"),
    ("tokenizer", r"/m: the tokenizer has \d+ tokens but the model's embedding only \d+ rows"),
    ("pickle", r"/m/pytorch_model\.bin: it holds objects that only unpickling code could build"),
])
def test_model_folder_that_cannot_be_finetuned_is_one_line(tiny_models, tmp_path, capsys, kind,
                                                           match):
    """Issue 27 #7 for finetuning: the same checks as eval_blimp, before the classifier is
    built (a RuntimeError, an IndexError or an UnpicklingError traceback before)."""
    import shutil

    d = shutil.copytree(tiny_models["llama"], tmp_path / "m")
    if kind == "vocab":
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, "vocab_size": cfg["vocab_size"] + 8}))
    elif kind == "tokenizer":
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        tok.add_tokens([f"zzq{i}" for i in range(600)])
        tok.save(str(d / "tokenizer.json"))
    else:
        (d / "model.safetensors").unlink()
        torch.save({"w": _Evil(tmp_path / "PWNED")}, d / "pytorch_model.bin")
    data = _synthetic(tmp_path, n_train=8, n_valid=4)
    with pytest.raises(SystemExit) as e:
        _cli(tmp_path, d, "cola", data)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith("error: ") and re.search(match, err[-1]), err
    assert "Traceback" not in "\n".join(err) and not (tmp_path / "PWNED").exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------------------------------
# Truncation to the model's context, and recipe babylm-2025


@pytest.fixture(scope="module")
def gpt2_32(tiny_models, tmp_path_factory):
    """A tiny GPT-2 with 32 positions (the project's GPT-2s have 128; the 2025 recipe asks 512)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2,
                                       n_positions=32, pad_token_id=0, bos_token_id=1,
                                       eos_token_id=2))
    d = tmp_path_factory.mktemp("gpt2_32") / "gpt2-32"
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_encode_counts_truncation_and_cuts_as_the_tokenizer(tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    texts = [("the cat", "a dog"), ("the big red " * 20, "dog runs"), ("a", "small old tree " * 9)]
    enc = ft.encode(tok, texts, 16)
    lengths = [len(ids) for ids in tok([a for a, _ in texts], [b for _, b in texts])["input_ids"]]
    assert enc["truncated"] == [n > 16 for n in lengths] == [False, True, True]
    cut = tok([a for a, _ in texts], [b for _, b in texts], truncation=True, max_length=16)
    assert enc["input_ids"] == cut["input_ids"]  # the same ids as truncating every input
    assert enc["attention_mask"] == cut["attention_mask"]


def test_context_length_is_the_smaller_of_recipe_and_model():
    from transformers import GPT2Config, LlamaConfig

    assert ft.context_length(GPT2Config(n_positions=32), 512) == 32
    assert ft.context_length(GPT2Config(n_positions=1024), 512) == 512
    assert ft.context_length(LlamaConfig(max_position_embeddings=256), 128) == 128


def _long_pairs(tmp_path, n_train=64, n_valid=16, n_long=5):
    """rte files: label = 1 iff sentence1 starts with 'zebra'; the first n_long of each split
    have a sentence2 of ~60 words, far past 32 positions."""
    rng = random.Random(2)
    plain = [w for w in WORDS if w != "zebra"]

    def rec(i):
        words = [rng.choice(plain) for _ in range(5)]
        if i % 2:
            words[0] = "zebra"
        other = " ".join(rng.choice(plain) for _ in range(60 if i < n_long else 3))
        return {"sentence1": " ".join(words), "sentence2": other, "label": i % 2}

    d = tmp_path / "glue"
    d.mkdir()
    _write_jsonl(d / "rte.train.jsonl", [rec(i) for i in range(n_train)])
    _write_jsonl(d / "rte.valid.jsonl", [rec(i) for i in range(n_valid)])
    return d


def _over(tok, path, limit):
    recs = ft.read_jsonl(path)
    ids = tok([r["sentence1"] for r in recs], [r["sentence2"] for r in recs])["input_ids"]
    return sum(len(x) > limit for x in ids)


@pytest.mark.parametrize("recipe", ["babylm-2023", "babylm-2025"])
def test_long_inputs_on_a_32_position_gpt2_are_truncated_and_counted(gpt2_32, tmp_path, recipe):
    from transformers import AutoTokenizer

    data = _long_pairs(tmp_path)
    tok = AutoTokenizer.from_pretrained(gpt2_32)
    if recipe == "babylm-2025":
        spec = {**ft.finetune_recipes.babylm_2025_spec("rte"), "epochs": 2, "batch_size": 16}
    else:
        spec = {**SPEC, "epochs": 1}
    r = ft.finetune(gpt2_32, "rte", data, spec, device="cpu")
    expected = {"train": _over(tok, data / "rte.train.jsonl", 32),
                "validation": _over(tok, data / "rte.valid.jsonl", 32)}
    assert expected == {"train": 5, "validation": 5}
    assert r["recipe"] == recipe
    assert r["truncation"] == {"recipe_max_length": 512 if recipe == "babylm-2025" else 128,
                               "max_length": 32, "model_positions": 32, "truncated": expected}
    assert r["hyperparameters"]["max_length"] == 32 and 0.0 <= r["score"] <= 1.0


def test_recipe_2025_runs_every_epoch_and_keeps_the_best(gpt2_32, tmp_path):
    """The first-token head learns a first-word task; every epoch is evaluated (no early
    stopping), the score is the best epoch's, with accuracy, F1 and MCC there."""
    data = _long_pairs(tmp_path, n_train=128, n_valid=32, n_long=0)
    spec = {**ft.finetune_recipes.babylm_2025_spec("rte"), "lr": 3e-3, "epochs": 6, "batch_size": 16}
    r = ft.finetune(gpt2_32, "rte", data, spec, device="cpu")
    assert [h["epoch"] for h in r["history"]] == list(range(1, 7))
    assert r["steps"] == 6 * (128 // 16) and not r["stopped_early"]
    best = max(r["history"], key=lambda h: h["score"])
    assert (r["score"], r["best_epoch"]) == (best["score"], best["epoch"])
    assert set(r["metrics"]) == {"acc", "f1", "mcc"} and r["score"] >= 0.9
    hp = r["hyperparameters"]
    assert (hp["pooling"], hp["schedule"], hp["weight_decay"], hp["grad_clip"]) == ("first", "cosine", 0.01, None)


def test_recipe_2025_pools_the_first_token(gpt2_32, tmp_path):
    """A causal model's first position sees only the first token: when every input starts
    the same way, the classifier's predictions are one class whatever the rest says."""
    rng = random.Random(3)
    d = tmp_path / "glue"
    d.mkdir()
    for split, n in (("train", 64), ("valid", 32)):
        recs = [{"sentence1": "the " + " ".join(rng.choice(WORDS[:-1]) for _ in range(4)) +
                 (" zebra" if i % 2 else " cat"), "sentence2": "a dog", "label": i % 2}
                for i in range(n)]
        _write_jsonl(d / f"rte.{split}.jsonl", recs)
    spec = {**ft.finetune_recipes.babylm_2025_spec("rte"), "lr": 3e-3, "epochs": 2, "batch_size": 16}
    r = ft.finetune(gpt2_32, "rte", d, spec, device="cpu")
    assert all(h["metrics"]["acc"] == 0.5 and h["metrics"]["mcc"] == 0.0 for h in r["history"])


def test_cosine_schedule_with_warmup():
    from babydistill.eval.finetune_2025 import cosine_with_warmup

    f = cosine_with_warmup(100)  # 6 warm-up steps, then cosine down to 0.1
    assert [f(0), f(3), f(6)] == [0.0, 0.5, 1.0]
    assert f(53) == pytest.approx(0.55) and f(100) == pytest.approx(0.1)


@pytest.mark.parametrize("spec, task, match", [
    ({**SPEC, "recipe": "babylm-2024"}, "rte", r"recipe 'babylm-2024' is unknown; use one of babylm-2023, babylm-2025"),
    ({"recipe": "babylm-2025", "lr": 3e-5, "batch_size": 32, "epochs": 10, "seed": 42, "patience": 3},
     "rte", "unknown key patience"),
    ({"recipe": "babylm-2025", "lr": 3e-5, "batch_size": 32, "epochs": 10, "seed": 42}, "cola",
     "--task cola: not in recipe babylm-2025"),
])
def test_recipe_spec_errors_are_one_line(tmp_path, spec, task, match):
    with pytest.raises(UserError, match=match) as e:
        ft.finetune(tmp_path, task, tmp_path, spec)
    assert "\n" not in str(e.value)


def test_cli_recipe_2025_alone_gives_the_official_values():
    spec = ft.cli_spec(None, "babylm-2025", "wsc")
    assert ft.validate_spec(spec) == {"recipe": "babylm-2025", "lr": 3e-5, "batch_size": 32,
                                      "epochs": 30, "seed": 42, "max_train": None}
    assert ft.cli_spec('{"epochs": 2}', "babylm-2025", "MNLI")["max_train"] == 10_000
    assert ft.cli_spec('{"epochs": 2}', "babylm-2025", "boolq")["batch_size"] == 16
    with pytest.raises(UserError, match="--recipe babylm-2026: unknown"):
        ft.cli_spec(None, "babylm-2026", "wsc")


def test_cli_recipe_2025_writes_the_truncation_record(gpt2_32, tmp_path):
    data = _long_pairs(tmp_path, n_train=32, n_valid=8, n_long=3)
    out = tmp_path / "res" / "rte.json"
    ft.main(["--model", str(gpt2_32), "--task", "rte", "--data-dir", str(data), "--recipe",
             "babylm-2025", "--spec", '{"epochs": 1, "batch_size": 16}', "--out", str(out),
             "--device", "cpu"])
    r = json.loads(out.read_text())
    assert (r["recipe"], r["hyperparameters"]["lr"], r["hyperparameters"]["seed"]) == ("babylm-2025", 3e-5, 42)
    assert r["truncation"]["truncated"] == {"train": 3, "validation": 3}
    assert r["truncation"]["max_length"] == 32 and r["steps"] == 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["rte.json"]  # no temporary left


# --- encoders (arch: roberta): both recipes on a saved RobertaForMaskedLM folder ------------

ROBERTA_34 = {"arch": "roberta", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 34}


@pytest.fixture(scope="session")
def encoder(tiny_models, tmp_path_factory):
    """A tiny RobertaForMaskedLM folder as the training stages write one: the project's preset
    builder (pad 0, so 34 - 0 - 1 = 33 tokens fit) and the tokenizer copied in, which gains
    ``<mask>`` there."""
    from transformers import AutoTokenizer

    from babydistill.data.tokenizer import copy_for_model
    from babydistill.models.build import build_model

    root = tmp_path_factory.mktemp("encoder")
    AutoTokenizer.from_pretrained(tiny_models["llama"]).save_pretrained(root / "tok")
    torch.manual_seed(0)
    d = root / "roberta-34"
    build_model(ROBERTA_34, 400).save_pretrained(d)
    copy_for_model(root / "tok", d)
    return d


@pytest.fixture(scope="session")
def roberta_style(tmp_path_factory):
    """A tiny RoBERTa whose tokenizer puts ``<s>`` first and ``</s>`` between and after texts
    (roberta-base's style; pad 1: 66 - 1 - 1 = 64 tokens)."""
    from test_pll import make_tiny_mlm

    return make_tiny_mlm(tmp_path_factory.mktemp("roberta_style") / "roberta-style")


def _last_word_task(d, n_train=96, n_valid=32):
    """rte files whose label is sentence1's last word (zebra or cat); every input starts alike."""
    rng = random.Random(3)
    d.mkdir()
    for split, n in (("train", n_train), ("valid", n_valid)):
        recs = [{"sentence1": "the " + " ".join(rng.choice(WORDS[:-1]) for _ in range(4)) +
                 (" zebra" if i % 2 else " cat"), "sentence2": "a dog", "label": i % 2}
                for i in range(n)]
        _write_jsonl(d / f"rte.{split}.jsonl", recs)
    return d


def test_encoder_context_is_positions_less_the_padding_offset(encoder, roberta_style, tiny_models):
    from transformers import AutoConfig, RobertaConfig

    assert ft.context_length(AutoConfig.from_pretrained(encoder), 128) == 33
    assert ft.context_length(AutoConfig.from_pretrained(roberta_style), 512) == 64
    assert ft.context_length(RobertaConfig(max_position_embeddings=514, pad_token_id=1), 512) == 512
    assert ft.is_encoder(encoder) and not ft.is_encoder(tiny_models["llama"])


@pytest.mark.parametrize("recipe", ["babylm-2023", "babylm-2025"])
def test_encoder_learns_from_the_first_position_under_both_recipes(encoder, tmp_path, recipe):
    """The first position of an encoder attends to the whole input: the last-word task the
    causal first-token head cannot learn (test_recipe_2025_pools_the_first_token) is learnt."""
    data = _last_word_task(tmp_path / "glue")
    if recipe == "babylm-2025":
        spec = {**ft.finetune_recipes.babylm_2025_spec("rte"), "lr": 3e-3, "epochs": 8, "batch_size": 16}
    else:
        spec = {**SPEC, "lr": 1e-3, "epochs": 8, "eval_every": 6}
    r = ft.finetune(encoder, "rte", data, spec, device="cpu")
    assert r["recipe"] == recipe and r["hyperparameters"]["pooling"] == "first"
    assert r["score"] >= 0.9, r["history"]  # chance is 0.5
    assert r["truncation"]["model_positions"] == 33


@pytest.mark.parametrize("recipe", ["babylm-2023", "babylm-2025"])
def test_encoder_inputs_are_cut_to_its_context(encoder, tmp_path, recipe):
    """60-word pairs on 34 positions: cut to 33 tokens (34 would index past RoBERTa's
    position table, whose ids start at pad + 1), counted, and the run scores."""
    from transformers import AutoTokenizer

    data = _long_pairs(tmp_path)
    tok = AutoTokenizer.from_pretrained(encoder)
    if recipe == "babylm-2025":
        spec = {**ft.finetune_recipes.babylm_2025_spec("rte"), "epochs": 1, "batch_size": 16}
    else:
        spec = {**SPEC, "epochs": 1}
    r = ft.finetune(encoder, "rte", data, spec, device="cpu")
    expected = {"train": _over(tok, data / "rte.train.jsonl", 33),
                "validation": _over(tok, data / "rte.valid.jsonl", 33)}
    assert expected == {"train": 5, "validation": 5}
    assert r["truncation"] == {"recipe_max_length": 512 if recipe == "babylm-2025" else 128,
                               "max_length": 33, "model_positions": 33, "truncated": expected}
    assert 0.0 <= r["score"] <= 1.0


def test_encoder_heads_pool_the_first_token(roberta_style):
    """babylm-2023: RoBERTa's own head (RobertaClassificationHead) reads position 0, ``<s>``
    with this tokenizer; right padding changes nothing. babylm-2025: the MLP head on the base
    RobertaModel's position 0."""
    tok, model = ft.load_model(roberta_style, 3)
    model.eval()
    assert type(model).__name__ == "RobertaForSequenceClassification"
    assert model.config.pad_token_id == 1  # the config's, which RoBERTa's positions count from
    batch = tok(["the cats are sleeping", "a dog"], ["on the mat", "barks"], padding=True,
                return_tensors="pt")
    assert batch["input_ids"][:, 0].tolist() == [tok.cls_token_id] * 2 == [tok.bos_token_id] * 2
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.roberta(**batch).last_hidden_state
        assert torch.allclose(logits, model.classifier(hidden[:, :1]), atol=1e-6)
        alone = model(**tok(["a dog"], ["barks"], return_tensors="pt")).logits
    assert torch.allclose(logits[1], alone[0], atol=1e-5)
    tok, first = ft.load_model(roberta_style, 2, first_token_head=True)
    first.eval()
    assert type(first.backbone).__name__ == "RobertaModel"
    with torch.no_grad():
        hidden = first.backbone(**batch).last_hidden_state
        assert torch.allclose(first(batch["input_ids"], batch["attention_mask"]),
                              first.head(hidden[:, 0]), atol=1e-6)
