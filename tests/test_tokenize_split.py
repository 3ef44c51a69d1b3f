"""Tests for babydistill.data.tokenize_split: the flat token array and its metadata."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from babydistill.data import tokenize_split as TS
from babydistill.data.tokenizer import load_backend, train_tokenizer, save_tokenizer
from test_tokenizer import make_corpus


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    corpus = make_corpus(root / "train", n_files=3, lines=120)
    tok_dir = root / "tok"
    save_tokenizer(train_tokenizer(corpus, vocab_size=320, min_frequency=2), tok_dir)
    return corpus, tok_dir, root


def expected_text(path: Path) -> str:
    """What decoding one file's tokens gives: NFKC text, a prefix space on every line
    that does not start with one (add_prefix_space), newlines kept."""
    lines = TS.split_lines(unicodedata.normalize("NFKC", path.read_text(encoding="utf-8")))
    return "".join(line if line.startswith(" ") else " " + line for line in lines)


def load(prefix: Path) -> tuple[np.ndarray, dict]:
    meta = json.loads(Path(f"{prefix}.json").read_text())
    return np.fromfile(f"{prefix}.bin", dtype=meta["dtype"]), meta


@pytest.mark.parametrize("vocab, dtype", [(2000, np.uint16), (16000, np.uint16), (65535, np.uint16),
                                          (65536, np.uint32), (128256, np.uint32)])
def test_token_dtype(vocab, dtype):
    d = TS.token_dtype(vocab)
    assert d == np.dtype(dtype) and d.byteorder in "<="
    assert np.iinfo(d).max >= vocab - 1  # every id fits


def test_token_dtype_rejects_nonsense():
    with pytest.raises(ValueError):
        TS.token_dtype(0)


def test_split_lines_keeps_newlines_only_on_lf():
    assert TS.split_lines("a\n\nb\u2028c\nd") == ["a\n", "\n", "b\u2028c\n", "d"]
    assert TS.split_lines("") == []


def test_counts_match_array_and_files_decode(setup, tmp_path):
    corpus, tok_dir, _ = setup
    prefix = tmp_path / "train"
    TS.main(["--tokenizer", str(tok_dir), "--out", str(prefix), *map(str, corpus)])
    ids, meta = load(prefix)
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 320
    assert meta["n_tokens"] == len(ids) == sum(f["tokens"] for f in meta["files"])
    assert (meta["pad_id"], meta["bos_id"], meta["eos_id"]) == (0, 1, 2)
    tok = load_backend(tok_dir)
    start = 0
    for f, path in zip(meta["files"], sorted(corpus)):
        text = path.read_text(encoding="utf-8")
        assert f["name"] == path.name
        assert f["lines"] == text.count("\n")
        assert f["words"] == len(text.split())
        part = ids[start:start + f["tokens"]]
        assert part[-1] == meta["eos_id"] and meta["eos_id"] not in part[:-1]
        assert tok.decode(part[:-1].tolist()) == expected_text(path)
        start += f["tokens"]
    assert ids.max() < meta["vocab_size"]


def test_file_order_independent(setup, tmp_path):
    corpus, tok_dir, _ = setup
    a, b = tmp_path / "a", tmp_path / "b"
    TS.tokenize_files(tok_dir, corpus, a, progress=False)
    TS.tokenize_files(tok_dir, [corpus[2], corpus[0], corpus[1]], b, progress=False)
    assert Path(f"{a}.bin").read_bytes() == Path(f"{b}.bin").read_bytes()
    assert Path(f"{a}.json").read_text() == Path(f"{b}.json").read_text()


def test_batching_does_not_change_tokens(setup, tmp_path):
    corpus, tok_dir, _ = setup
    TS.tokenize_files(tok_dir, corpus, tmp_path / "big", progress=False)
    TS.tokenize_files(tok_dir, corpus, tmp_path / "small", batch_lines=7, progress=False)
    assert (tmp_path / "big.bin").read_bytes() == (tmp_path / "small.bin").read_bytes()


def test_max_tokens_keeps_the_start_of_every_file(setup, tmp_path):
    """data.max_train_tokens (smoke runs): the start of every file in proportion to its size,
    per-file counts that sum to what was kept (a curriculum reads them), the full counts
    recorded."""
    corpus, tok_dir, _ = setup
    TS.tokenize_files(tok_dir, corpus, tmp_path / "full", progress=False)
    full, full_meta = load(tmp_path / "full")
    n = len(full) // 3 + 1
    TS.main(["--tokenizer", str(tok_dir), "--out", str(tmp_path / "cut"), "--max-tokens", str(n),
             *map(str, corpus)])
    cut, meta = load(tmp_path / "cut")
    assert len(cut) == meta["n_tokens"] == n == sum(f["tokens"] for f in meta["files"])
    assert meta["truncated_from"] == full_meta["n_tokens"] and "truncated_from" not in full_meta
    start_full, start_cut = 0, 0
    for f, f_full in zip(meta["files"], full_meta["files"]):
        assert f["tokens_full"] == f_full["tokens"] and f["words"] == f_full["words"]
        assert abs(f["tokens"] - f_full["tokens"] * n / full_meta["n_tokens"]) < 1
        assert f["tokens"] > 0  # every file (source) is still there
        assert np.array_equal(cut[start_cut:start_cut + f["tokens"]],
                              full[start_full:start_full + f["tokens"]])
        start_full += f_full["tokens"]
        start_cut += f["tokens"]
    # the chunks' sources, as a curriculum sees them, include every file
    from babydistill.data.chunks import TrainChunks
    chunks = TrainChunks(tmp_path / "cut", 16, random_offset=False, seed=0)
    assert len(set(chunks.chunk_sources(meta["files"]))) == len(corpus)
    # a limit above the total changes nothing
    TS.tokenize_files(tok_dir, corpus, tmp_path / "same", progress=False, max_tokens=len(full) + 5)
    assert (tmp_path / "same.bin").read_bytes() == (tmp_path / "full.bin").read_bytes()


def test_bad_input_leaves_no_complete_looking_output(setup, tmp_path, capsys):
    corpus, tok_dir, _ = setup
    prefix = tmp_path / "split"
    TS.tokenize_files(tok_dir, corpus, prefix, progress=False)
    bad = tmp_path / "zz.train"
    bad.write_bytes(b"fine line\n\xff\xfe broken\n")
    with pytest.raises(SystemExit) as e:
        TS.main(["--tokenizer", str(tok_dir), "--out", str(prefix), *map(str, corpus), str(bad)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "zz.train" in err and "UTF-8" in err and "\n" not in err
    assert not (tmp_path / "split.json").exists()  # .json absent == incomplete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.bin", "zz.train"]  # no temporaries


def test_missing_tokenizer_is_one_line(tmp_path, capsys, setup):
    corpus, _, _ = setup
    with pytest.raises(SystemExit) as e:
        TS.main(["--tokenizer", str(tmp_path / "none"), "--out", str(tmp_path / "x"), str(corpus[0])])
    assert e.value.code == 2 and "tokenizer.json" in capsys.readouterr().err


def test_real_partial_corpus_file(shared_subdir, tmp_path):
    """One real file: counts agree with the text and the tokens decode back to it."""
    src = shared_subdir("babylm_2023_partial") / "babylm_10M" / "switchboard.train"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    tok_dir = tmp_path / "tok"
    save_tokenizer(train_tokenizer([src], vocab_size=4000, min_frequency=2), tok_dir)
    meta = TS.tokenize_files(tok_dir, [src], tmp_path / "sw", progress=False)
    ids, saved = load(tmp_path / "sw")
    text = src.read_text(encoding="utf-8")
    (f,) = saved["files"]
    assert f["lines"] == text.count("\n") and f["words"] == len(text.split())
    assert saved["n_tokens"] == len(ids) == f["tokens"]
    assert 1.0 < f["tokens"] / f["words"] < 2.0  # a sane BPE compression on English
    assert load_backend(tok_dir).decode(ids[:-1].tolist()) == expected_text(src)
    assert meta["seconds"] > 0
