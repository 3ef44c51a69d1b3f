"""The fast batched scorer: same log-likelihoods as a one-sentence-at-a-time reference,
independent of batching, side-effect free, and correct bookkeeping of paradigms/categories.

The tiny model + tokenizer helpers here are reused by test_eval_blimp.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from babydistill.eval import blimp as eval_blimp
from babydistill.common import UserError
from babydistill.eval.scorer import Pair, blimp_accuracy, encode_choice, load_suite, score_pairs, summarize

torch.set_num_threads(1)

# Sentences the tiny BPE is trained on; the real suites are still scored with it (byte-level).
TRAIN_TEXT = [
    "Who should Derek hug after shocking Richard?", "The cats are sleeping on the mat.",
    "What did you get?\nI got a chair.", "David: Should you quit?\nSarah: No, I shouldn't.",
    "Every dog that barks has eaten the bones.", "She doesn't have a dog, so she has no mammal.",
] * 20


def make_tiny_model(path: Path, arch: str = "llama", seed: int = 0, **cfg_kw) -> Path:
    """A random tiny causal LM + byte-level BPE tokenizer (pad 0, <s> 1, </s> 2), saved to ``path``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # The project's recipe (NFKC, ByteLevel with add_prefix_space), at toy size.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TRAIN_TEXT, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(seed)
    ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256, **ids,
                          **cfg_kw)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = GPT2Config(vocab_size=len(fast), n_embd=32, n_layer=2, n_head=2, n_positions=256, **ids, **cfg_kw)
        model = GPT2LMHeadModel(cfg)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def slice_suite(dst: Path, src: Path, names: list[str], n: int) -> Path:
    """A suite dir holding the first ``n`` records of some real paradigm files."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        lines = [ln for ln in (src / f"{name}.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()]
        (dst / f"{name}.jsonl").write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return dst


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny_gpt2"), arch="gpt2", seed=1)


@pytest.fixture(scope="session")
def blimp_slice(shared_subdir, tmp_path_factory) -> Path:
    return slice_suite(tmp_path_factory.mktemp("blimp_slice"), shared_subdir("blimp"),
                       ["adjunct_island", "anaphor_gender_agreement", "wh_vs_that_with_gap"], 40)


def _pairs(suite_dir):
    return [p for par in load_suite(suite_dir) for p in par.pairs]


@pytest.mark.parametrize("model_fixture", ["tiny_llama", "tiny_gpt2"])
def test_fast_matches_reference_on_real_blimp(model_fixture, blimp_slice, request):
    model_dir = request.getfixturevalue(model_fixture)
    pairs = _pairs(blimp_slice)
    model, tok = eval_blimp.load_model(model_dir)
    good, bad = score_pairs(model, tok, pairs, batch_size=16)
    ref_good, ref_bad = eval_blimp.independent_loglik(model_dir, pairs)
    assert max(abs(a - b) for a, b in zip(good + bad, ref_good + ref_bad)) < 1e-4
    assert [g >= b for g, b in zip(good, bad)] == [g >= b for g, b in zip(ref_good, ref_bad)]


def test_fast_matches_reference_on_multiline_supplement(tiny_llama, shared_subdir, tmp_path):
    src = shared_subdir("babylm_eval_2024/supplement_filtered")
    suite = slice_suite(tmp_path / "supp", src, sorted(p.stem for p in src.glob("*.jsonl")), 12)
    pairs = _pairs(suite)
    assert any("\n" in p.good for p in pairs)  # the multi-line dialogues are in the slice
    model, tok = eval_blimp.load_model(tiny_llama)
    good, bad = score_pairs(model, tok, pairs, batch_size=8)
    ref_good, ref_bad = eval_blimp.independent_loglik(tiny_llama, pairs)
    assert max(abs(a - b) for a, b in zip(good + bad, ref_good + ref_bad)) < 1e-4


def test_batch_size_does_not_change_scores(tiny_llama, blimp_slice):
    pairs = _pairs(blimp_slice)[:30]
    model, tok = eval_blimp.load_model(tiny_llama)
    one = score_pairs(model, tok, pairs, batch_size=1)
    for bs in (7, 64):
        other = score_pairs(model, tok, pairs, batch_size=bs)
        assert max(abs(a - b) for a, b in zip(one[0] + one[1], other[0] + other[1])) < 1e-4


def test_scoring_is_side_effect_free(tmp_path, blimp_slice):
    # Heavy dropout: scores would be random in train mode; the scorer must use eval mode
    # and hand the model back in train mode, with no gradients left behind.
    model_dir = make_tiny_model(tmp_path / "m", attention_dropout=0.5)
    model, tok = eval_blimp.load_model(model_dir)
    model.train()
    a = blimp_accuracy(model, tok, blimp_slice, batch_size=8, limit=10)
    b = blimp_accuracy(model, tok, blimp_slice, batch_size=8, limit=10)
    assert model.training
    assert a == b
    assert all(p.grad is None for p in model.parameters())
    assert a["n_pairs"] == 30 and set(a["paradigms"]) == {"adjunct_island", "anaphor_gender_agreement",
                                                          "wh_vs_that_with_gap"}


def test_encoding_uses_bos_then_space_sentence(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    (ctx, cont), = encode_choice(tok, ["The cats are sleeping."])
    assert ctx == [tok.bos_token_id]
    assert tok.decode(cont) == " The cats are sleeping."
    tok.bos_token = None  # no BOS -> lm-eval falls back to EOS
    (ctx, _), = encode_choice(tok, ["The cats."])
    assert ctx == [tok.eos_token_id]



def test_token_ids_match_the_tokenizer_call_with_and_without_truncation(tiny_llama):
    """The Rust fast path gives the ids ``tokenizer(...)`` gives; with truncation set on the
    backend it steps aside (a direct call would truncate where the tokenizer call does not)."""
    from transformers import AutoTokenizer

    from babydistill.eval.scorer import _token_ids

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    texts = [" " + t for t in TRAIN_TEXT[:6]] + [" naïve ﬁne émigré 123"]
    want = tok(texts, add_special_tokens=False)["input_ids"]
    assert _token_ids(tok, texts) == want
    tok.backend_tokenizer.enable_truncation(3)
    assert [e.ids for e in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)] != want
    assert _token_ids(tok, texts) == want


def test_check_context_returns_the_encodings_scoring_uses(tiny_llama, blimp_slice):
    """One encoding per suite: check_context's are encode_suite's, and scoring with them
    gives the scores of encoding afresh."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from babydistill.eval.scorer import check_context, encode_suite, score_suite

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    paradigms = load_suite(blimp_slice, limit=5)
    encoded = check_context(tok, paradigms, 256)
    assert encoded == encode_suite(tok, paradigms)
    assert len(encoded) == 2 * sum(len(p.pairs) for p in paradigms)
    assert score_suite(model, tok, paradigms, 8, encoded=encoded) == score_suite(model, tok, paradigms, 8)

def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def make_known_suite(d: Path) -> tuple[Path, dict]:
    """Two BLiMP-style paradigms (one category) + one supplement-style file, with outcomes
    that hold for ANY causal LM: appending words only adds negative log-probs, so the
    shorter sentence wins; identical sentences tie, and ties count as correct."""
    d.mkdir(parents=True, exist_ok=True)
    s = ["The cats are sleeping.", "Who should Derek hug?", "Every dog barks.", "She has a dog."]
    longer = [x + " and the dog ate the bones" for x in s]
    _write(d / "para_a.jsonl", [  # 3 of 4 correct (one tie)
        {"sentence_good": s[0], "sentence_bad": longer[0], "linguistics_term": "agreement", "pairID": "10"},
        {"sentence_good": s[1], "sentence_bad": longer[1], "linguistics_term": "agreement", "pairID": "11"},
        {"sentence_good": s[2], "sentence_bad": s[2], "linguistics_term": "agreement", "pairID": "12"},
        {"sentence_good": longer[3], "sentence_bad": s[3], "linguistics_term": "agreement", "pairID": "13"},
    ])
    _write(d / "para_b.jsonl", [  # 1 of 2 correct
        {"sentence_good": longer[0], "sentence_bad": s[0], "field": "x", "linguistics_term": "agreement"},
        {"sentence_good": s[1], "sentence_bad": longer[1], "field": "x", "linguistics_term": "agreement"},
    ])
    _write(d / "qa_congruence_easy.jsonl", [  # no term/field: category from the file name; 2 of 2
        {"sentence_good": "What did you get?\nI got a chair.", "sentence_bad": "What did you get?\nI got a chair today."},
        {"sentence_good": "A: Who?\nB: Sarah.", "sentence_bad": "A: Who?\nB: Sarah and David."},
    ])
    expected = {
        "paradigms": {"para_a": 0.75, "para_b": 0.5, "qa_congruence_easy": 1.0},
        "categories": {"agreement": (0.75 + 0.5) / 2, "qa_congruence": 1.0},
        "accuracy": (0.75 + 0.5 + 1.0) / 3,
        "accuracy_micro": 6 / 8,
        "correct": {("para_a", "10"): 1, ("para_a", "11"): 1, ("para_a", "12"): 1, ("para_a", "13"): 0,
                    ("para_b", "0"): 0, ("para_b", "1"): 1,
                    ("qa_congruence_easy", "0"): 1, ("qa_congruence_easy", "1"): 1},
    }
    return d, expected


def read_tsv(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, ln.split("\t"))) for ln in lines[1:]]


def check_known_outputs(out: dict, rows: list[dict], expected: dict) -> None:
    """The JSON agrees with the expected outcomes AND with its own per-pair TSV."""
    assert {(r["paradigm"], r["pair_id"]): int(r["correct"]) for r in rows} == expected["correct"]
    for r in rows:
        assert int(r["correct"]) == int(float(r["ll_good"]) >= float(r["ll_bad"])) or \
            abs(float(r["ll_good"]) - float(r["ll_bad"])) < 1e-5
    assert out["n_pairs"] == len(rows) == 8
    assert {k: v["acc"] for k, v in out["paradigms"].items()} == pytest.approx(expected["paradigms"])
    assert out["paradigms"]["qa_congruence_easy"]["category"] == "qa_congruence"
    assert out["categories"] == pytest.approx(expected["categories"])
    assert out["accuracy"] == pytest.approx(expected["accuracy"])
    assert out["accuracy_micro"] == pytest.approx(expected["accuracy_micro"])
    for name, v in out["paradigms"].items():  # per-paradigm acc recomputed from the TSV
        mine = [int(r["correct"]) for r in rows if r["paradigm"] == name]
        assert v["n"] == len(mine) and v["acc"] == pytest.approx(sum(mine) / len(mine))


def test_fast_cli_known_suite(tiny_gpt2, tmp_path):
    suite, expected = make_known_suite(tmp_path / "suite")
    out = eval_blimp.main(["--model", str(tiny_gpt2), "--suite-dir", str(suite), "--suite", "known",
                           "--out", str(tmp_path / "r.json"), "--pairs-out", str(tmp_path / "p.tsv"),
                           "--backend", "fast", "--batch-size", "3"])
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert saved["backend"] == "fast" and saved["suite"] == "known"
    check_known_outputs(saved, read_tsv(tmp_path / "p.tsv"), expected)


def test_summarize_rejects_score_count_mismatch(tmp_path):
    suite, _ = make_known_suite(tmp_path / "suite")
    with pytest.raises(ValueError):
        summarize(load_suite(suite), [0.0] * 7, [0.0] * 7)


def test_load_suite_errors_and_ids(tmp_path):
    with pytest.raises(UserError, match="suite directory not found"):
        load_suite(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no <paradigm>.jsonl"):
        load_suite(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "p.jsonl").write_text('{"sentence_good": "a"}\n')
    with pytest.raises(UserError, match=r"p.jsonl:1: record 0"):
        load_suite(bad)
    ok = tmp_path / "ok"
    ok.mkdir()
    _write(ok / "p.jsonl", [{"sentence_good": "a", "sentence_bad": "b", "pair_id": 7},
                            {"sentence_good": "c", "sentence_bad": "d"}])
    (par,) = load_suite(ok)
    assert [p.pair_id for p in par.pairs] == ["7", "1"] and par.pairs[1] == Pair("1", "c", "d")
    assert len(load_suite(ok, limit=1)[0].pairs) == 1


def test_wrapped_models_are_scored_as_the_plain_module(tiny_llama, blimp_slice):
    # The training loop may hand over a DDP/DataParallel or torch.compile wrapper.
    model, tok = eval_blimp.load_model(tiny_llama)
    pairs = _pairs(blimp_slice)[:10]
    plain = score_pairs(model, tok, pairs, batch_size=4)
    wrapped = torch.nn.DataParallel(model)
    wrapped.train()
    assert score_pairs(wrapped, tok, pairs, batch_size=4) == plain
    assert model.training  # the inner module's mode is restored too


# --- issue 27.4/27.7: bad evaluation data is refused, never scored as a right answer --------

GOOD = {"sentence_good": "the dog runs .", "sentence_bad": "the dog run ."}


@pytest.mark.parametrize("records, expected", [
    ([GOOD, {"sentence_good": "", "sentence_bad": ""}], "p.jsonl:2: sentence_good is empty"),
    ([{"sentence_good": "   ", "sentence_bad": "x"}], "p.jsonl:1: sentence_good is empty"),
    ([{"sentence_good": "a b", "sentence_bad": ""}], "p.jsonl:1: sentence_bad is empty"),
    ([{"sentence_good": None, "sentence_bad": "x"}], "p.jsonl:1: sentence_good is NoneType, not text"),
    ([{"sentence_good": 3, "sentence_bad": "x"}], "p.jsonl:1: sentence_good is int, not text"),
    ([{**GOOD, "pairID": "7"}, {**GOOD, "pairID": "7"}],
     "p.jsonl:2: pair id '7' already used at line 1"),
])
def test_bad_pairs_are_one_line_naming_file_and_line(tmp_path, records, expected):
    d = tmp_path / "suite"
    d.mkdir()
    (d / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(UserError) as e:
        load_suite(d)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_a_non_utf8_suite_file_is_one_line(tmp_path):
    d = tmp_path / "suite"
    d.mkdir()
    (d / "p.jsonl").write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"sentence_good": "caf\xe9"}\n')
    with pytest.raises(UserError, match=r"p.jsonl:2: not UTF-8"):
        load_suite(d)


def test_blank_lines_do_not_shift_the_line_numbers(tmp_path):
    d = tmp_path / "suite"
    d.mkdir()
    (d / "p.jsonl").write_text(json.dumps(GOOD) + "\n\n\n" + json.dumps({**GOOD, "sentence_bad": ""}) + "\n")
    with pytest.raises(UserError, match=r"p.jsonl:4: sentence_bad is empty"):
        load_suite(d)


def test_bf16_scoring_runs_under_autocast_and_stays_close_to_fp32(tiny_llama, blimp_slice, tmp_path):
    pairs = _pairs(blimp_slice)
    model, tok = eval_blimp.load_model(tiny_llama)
    good, bad = score_pairs(model, tok, pairs, batch_size=16)
    low_good, low_bad = score_pairs(model, tok, pairs, batch_size=16, precision="bf16")
    diffs = [abs(a - b) for a, b in zip(good + bad, low_good + low_bad)]
    # bf16 rounds the forward (so the scores move) but sums in fp32/fp64 (so not far)
    assert max(diffs) > 0 and max(diffs) < 0.05 * max(abs(a) for a in good + bad)
    assert next(model.parameters()).dtype == torch.float32  # autocast casts nothing in place
    suite, _ = make_known_suite(tmp_path / "suite")
    args = ["--model", str(tiny_llama), "--suite-dir", str(suite), "--suite", "known",
            "--out", str(tmp_path / "r.json"), "--pairs-out", str(tmp_path / "p.tsv")]
    out = eval_blimp.main(args + ["--backend", "fast", "--precision", "bf16"])
    assert out["precision"] == "bf16"
    assert eval_blimp.main(args + ["--backend", "fast"])["precision"] == "fp32"


def test_bf16_is_refused_for_lmeval_and_unknown_precisions_in_one_line(tiny_llama, blimp_slice, tmp_path):
    with pytest.raises(UserError, match="--precision bf16 --backend lmeval"):
        eval_blimp.evaluate(tiny_llama, blimp_slice, "blimp", backend="lmeval", precision="bf16")
    model, tok = eval_blimp.load_model(tiny_llama)
    with pytest.raises(UserError, match="--precision fp16: use fp32 or bf16"):
        score_pairs(model, tok, _pairs(blimp_slice)[:2], precision="fp16")
