"""Tests for babydistill.data.tokenizer: the Baby Llama byte-level BPE and its saved folder."""

from __future__ import annotations

import json
import random
import unicodedata
from pathlib import Path

import pytest

from babydistill.data import tokenizer as T
WORDS = ("the a cat dog sat ran on under mat big small red blue happy child mother "
         "said looked at went to house garden ball played with and then café naïve").split()


def make_corpus(folder: Path, n_files: int = 3, lines: int = 150, seed: int = 0) -> list[Path]:
    """A few small deterministic text files (train-like), with a blank line and a
    compatibility character (the 'ﬁ' ligature NFKC turns into 'fi')."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        text = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(lines)]
        text[5] = ""  # a paragraph break
        text[7] = "the ﬁsh swam"
        p = folder / f"src{i}.train"
        p.write_text("\n".join(text) + "\n", encoding="utf-8")
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def tok_dir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    T.main(["--vocab-size", "330", "--min-frequency", "2", "--out", str(out), *map(str, corpus)])
    return out


def test_special_token_ids_and_autotokenizer_round_trip(tok_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    # Includes characters never seen in training: the byte alphabet still covers them.
    for text in ["the cat sat on the mat", "Zebra ø 🙂 said: 'hello'!"]:
        ids = tok(text)["input_ids"]
        assert ids and all(i >= 3 for i in ids)  # no special tokens added to plain text
        assert tok.decode(ids).strip() == text
    fast = T.load_tokenizer(tok_dir)
    assert fast("the cat")["input_ids"] == tok("the cat")["input_ids"]
    assert len(fast) == 330


def test_recipe_nfkc_prefix_space_and_newline(tok_dir):
    tok = T.load_backend(tok_dir)
    assert tok.encode("ﬁsh").ids == tok.encode("fish").ids  # NFKC
    # add_prefix_space: a line-initial word is tokenized like the same word mid-sentence.
    assert tok.encode("cat").ids == tok.encode("the cat").ids[-1:]
    assert tok.encode("cat").tokens == ["Ġcat"]
    assert tok.token_to_id("Ċ") is not None  # the newline byte is in the vocabulary


def test_trained_on_given_files_only(corpus, tok_dir, tmp_path):
    # A word frequent only in a dev file never becomes a token of the train tokenizer.
    dev = tmp_path / "src0.dev"
    dev.write_text("zebrafication zebrafication\n" * 200, encoding="utf-8")
    assert "Ġzebrafication" not in T.load_backend(tok_dir).get_vocab()
    with_dev = T.train_tokenizer([*corpus, dev], vocab_size=400, min_frequency=2)
    assert "Ġzebrafication" in with_dev.get_vocab()
    info = json.loads((tok_dir / "training.json").read_text())
    assert [f["name"] for f in info["files"]] == sorted(p.name for p in corpus)
    assert info["vocab_size"] == 330 and info["min_frequency"] == 2


def test_input_order_does_not_matter(corpus):
    a = T.train_tokenizer(corpus, vocab_size=350, min_frequency=2)
    b = T.train_tokenizer(list(reversed(corpus)), vocab_size=350, min_frequency=2)
    assert a.to_str() == b.to_str()


def test_min_frequency_limits_merges(corpus):
    # With a high min_frequency fewer pairs qualify, so the vocabulary stops short.
    low = T.train_tokenizer(corpus, vocab_size=2000, min_frequency=2).get_vocab_size()
    high = T.train_tokenizer(corpus, vocab_size=2000, min_frequency=200).get_vocab_size()
    assert high < low <= 2000


@pytest.mark.parametrize("args, needle", [
    (["--vocab-size", "100"], "vocab_size"),
    (["--min-frequency", "0"], "min_frequency"),
])
def test_bad_settings_are_one_line_errors(corpus, tmp_path, capsys, args, needle):
    with pytest.raises(SystemExit) as e:
        T.main([*args, "--out", str(tmp_path / "t"), str(corpus[0])])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err
    assert not (tmp_path / "t").exists()


def test_missing_input_and_missing_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        T.main(["--out", str(tmp_path / "t"), str(tmp_path / "nope.train")])
    assert e.value.code == 2 and "nope.train" in capsys.readouterr().err
    with pytest.raises(T.UserError, match="tokenizer.json"):
        T.load_tokenizer(tmp_path)


def test_output_dir_replaced_atomically(corpus, tmp_path):
    out = tmp_path / "tok"
    T.main(["--vocab-size", "300", "--out", str(out), *map(str, corpus)])
    T.main(["--vocab-size", "320", "--out", str(out), *map(str, corpus)])
    assert T.load_backend(out).get_vocab_size() == 320
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # no temporaries left behind


def test_nfkc_matches_python(tok_dir):
    # The decoded text is the NFKC form of the input (what the model actually sees).
    tok = T.load_backend(tok_dir)
    text = "the ﬁsh ｃａｔ ①"
    assert tok.decode(tok.encode(text).ids).strip() == unicodedata.normalize("NFKC", text)


def test_saved_config_loads_in_any_transformers_and_fits_the_model(tok_dir, tmp_path):
    """The config names a class transformers 4.x knows (not 5.x's TokenizersBackend), keeps the
    first word's prefix space, and a model dir's copy carries the model's context as its limit."""
    from transformers import AutoTokenizer

    cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and cfg["add_prefix_space"] is True
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 64}))
    T.copy_for_model(tok_dir, model_dir)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    assert tok.model_max_length == 64
    assert tok.convert_ids_to_tokens(tok("the cat")["input_ids"])[0] == "Ġthe"
    # a RoBERTa's limit is its positions less the padding offset (ids start at pad + 1)
    roberta = tmp_path / "roberta"
    roberta.mkdir()
    (roberta / "config.json").write_text(json.dumps({
        "model_type": "roberta", "architectures": ["RobertaForMaskedLM"],
        "max_position_embeddings": 66, "pad_token_id": 0}))
    T.copy_for_model(tok_dir, roberta)
    enc = AutoTokenizer.from_pretrained(str(roberta))
    assert enc.model_max_length == 65 and enc.mask_token == "<mask>"
    # A folder saved before (TokenizersBackend, no prefix-space key) is rewritten on copy.
    old = tmp_path / "old"
    old.mkdir()
    (old / "tokenizer.json").write_bytes((tok_dir / "tokenizer.json").read_bytes())
    (old / "tokenizer_config.json").write_text(json.dumps(
        {"backend": "tokenizers", "tokenizer_class": "TokenizersBackend", "model_max_length": 10**30}))
    T.copy_for_model(old, model_dir)
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and cfg["model_max_length"] == 64
    assert "backend" not in cfg


def test_model_folder_tokenizer_stores_merges_as_strings_with_the_same_ids(tmp_path):
    """tokenizers 0.19 (transformers 4.40-4.44) reads only "a b" merges; ours wrote pairs."""
    corpus = make_corpus(tmp_path / "c", n_files=2, lines=60)
    tok_dir = T.save_tokenizer(T.train_tokenizer(corpus, 300, 2), tmp_path / "tok")
    pairs = json.loads((tok_dir / "tokenizer.json").read_text())["model"]["merges"]
    assert isinstance(pairs[0], list)  # what tokenizers >= 0.20 writes
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 64}))
    T.copy_for_model(tok_dir, model)
    merges = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))["model"]["merges"]
    assert merges == [f"{a} {b}" for a, b in pairs]
    text = [" ".join(p.read_text().split()[:40]) for p in corpus] + ["naïve café — ok?"]
    assert [e.ids for e in T.load_backend(model).encode_batch(text)] == \
        [e.ids for e in T.load_backend(tok_dir).encode_batch(text)]
    before = (model / "tokenizer.json").read_bytes()
    T.portable_merges(model / "tokenizer.json")  # already strings: left as it is
    assert (model / "tokenizer.json").read_bytes() == before


def _digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_mask_token_only_in_a_masked_models_folder_and_every_other_id_unchanged(tok_dir, tmp_path):
    """Issue 23: a masked LM's folder gains <mask> at id = the tokenizer's size; a causal
    model's folder and the tokenizer stage's own files stay as they were."""
    from transformers import AutoTokenizer

    stage_before = _digests(tok_dir)
    causal, masked = tmp_path / "causal", tmp_path / "masked"
    for d, arch in ((causal, "LlamaForCausalLM"), (masked, "RobertaForMaskedLM")):
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"architectures": [arch],
                                                   "max_position_embeddings": 66}))
        T.copy_for_model(tok_dir, d)
    assert _digests(tok_dir) == stage_before
    assert T.MASK not in (causal / "tokenizer.json").read_text(encoding="utf-8")
    assert AutoTokenizer.from_pretrained(str(causal)).mask_token is None
    tok = AutoTokenizer.from_pretrained(str(masked))
    assert (tok.mask_token, tok.mask_token_id, len(tok)) == ("<mask>", 330, 331)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    merges = json.loads((masked / "tokenizer.json").read_text(encoding="utf-8"))["model"]["merges"]
    assert isinstance(merges[0], str)  # still the portable form after the mask was added
    text = ["the cat sat on the mat", "Zebra ø 🙂 said: 'hello'!", "naïve café"]
    assert [e.ids for e in T.load_backend(masked).encode_batch(text)] == \
        [e.ids for e in T.load_backend(causal).encode_batch(text)]
    # like roberta-base's <mask>, it takes the space in front of it
    ids = tok("the cat <mask> on the mat")["input_ids"]
    assert ids == tok("the cat")["input_ids"] + [330] + tok(" on the mat")["input_ids"]
    before = _digests(masked)
    assert T.add_mask_token(masked) == 330  # already there: nothing changes
    assert _digests(masked) == before
