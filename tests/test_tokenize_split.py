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


def _one_long_line(corpus, repeat: int) -> str:
    """All the corpus's text as one line (punctuation, digits, double spaces and all)."""
    text = " ".join(Path(f).read_text(encoding="utf-8").replace("\n", "  ") for f in corpus)
    return (text + " ") * repeat


def test_long_lines_in_pieces_give_the_whole_lines_ids(setup, tmp_path):
    """A line longer than the piece size is encoded in pieces cut at word starts: the ids
    are those of encoding the line whole (issue 27.10)."""
    corpus, tok_dir, _ = setup
    long = _one_long_line(corpus, 3) + "tail-without-newline"
    f = tmp_path / "one_line.txt"
    f.write_text(long + "\n" + "a short line\n" + long, encoding="utf-8")
    pieces = TS.line_pieces(long + "\n", 500)
    assert len(pieces) > 10 and "".join(pieces) == long + "\n"
    assert all(p.startswith(" ") for p in pieces[1:])  # cut before a word's space
    TS.tokenize_files(tok_dir, [f], tmp_path / "whole", progress=False, piece_chars=10**9)
    TS.tokenize_files(tok_dir, [f], tmp_path / "pieces", progress=False, piece_chars=500)
    a, meta_a = load(tmp_path / "whole")
    b, meta_b = load(tmp_path / "pieces")
    assert np.array_equal(a, b) and meta_a == meta_b


def test_a_huge_single_line_stays_in_bounded_memory(setup, tmp_path):
    """A one-line file: 20 MB of it encoded whole peaked at 2.8 GB RSS (~140x the input: the
    Encoding objects and the line's word list); in pieces at ~220 MB (measured alone). Both
    are measured here, side by side in fresh processes, so the machine's state cancels out.
    The peak is the child's own VmHWM: getrusage's ru_maxrss keeps the forking parent's
    high-water mark across exec (CI saw pytest's 1846 MB for both runs)."""
    import subprocess
    import sys

    corpus, tok_dir, _ = setup
    text = _one_long_line(corpus, 1)
    f = tmp_path / "huge.txt"
    f.write_text(text * (10_000_000 // len(text) + 1), encoding="utf-8")  # 10 MB, one line

    def peak_mb(piece_chars: int) -> float:
        code = ("import sys; from babydistill.data import tokenize_split as TS; "
                "TS.BATCH_CHARS = max(TS.BATCH_CHARS, int(sys.argv[4])); "
                "TS.tokenize_files(sys.argv[1], [sys.argv[2]], sys.argv[3], progress=False, "
                "piece_chars=int(sys.argv[4])); "
                "print(next(int(l.split()[1]) for l in open('/proc/self/status') "
                "if l.startswith('VmHWM:')) / 1024)")
        res = subprocess.run([sys.executable, "-c", code, str(tok_dir), str(f),
                              str(tmp_path / f"out{piece_chars}"), str(piece_chars)],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        return float(res.stdout.strip().splitlines()[-1])

    pieces, whole = peak_mb(TS.PIECE_CHARS), peak_mb(10**9)
    # measured alone: ~1/10 of the whole line's peak; half leaves room for the interpreter
    assert pieces < 0.5 * whole, f"pieces {pieces:.0f} MB vs whole line {whole:.0f} MB"
    a, _ = load(tmp_path / f"out{TS.PIECE_CHARS}")
    b, _ = load(tmp_path / "out1000000000")
    assert np.array_equal(a, b)


def test_a_killed_writers_temporary_is_removed_by_the_next_run(setup, tmp_path):
    """A killed tokenize_split left its hidden .<out>.<host>.<pid>.*.tmp folder forever; the
    next write of that output removes a dead process's, never a live one's."""
    from babydistill import common

    corpus, tok_dir, _ = setup
    out = tmp_path / "split"
    dead = tmp_path / f".split.bin.{common._HOST}.999999999.abc.tmp"
    live = tmp_path / f".split.bin.{common._HOST}.{__import__('os').getpid()}.abc.tmp"
    other_host = tmp_path / ".split.bin.another-node.999999999.abc.tmp"
    for d in (dead, live, other_host):
        d.mkdir()
        (d / "split.bin").write_bytes(b"half")
    TS.tokenize_files(tok_dir, corpus, out, progress=False)
    assert not dead.exists() and live.exists() and other_host.exists()


def test_a_full_disk_is_one_line_and_leaves_nothing_complete_looking(setup, small_fs):
    """A real 2 MiB filesystem: the token file outgrows it; the stage ends in one line (the
    path, the free space), exit 2, no PREFIX.json (issue 27.5)."""
    import subprocess
    import sys

    corpus, tok_dir, root = setup
    big = root / "big.txt"
    big.write_text("".join(Path(f).read_text(encoding="utf-8") for f in corpus) * 200, encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "babydistill.data.tokenize_split", "--tokenizer", str(tok_dir),
                          "--out", str(small_fs / "train"), str(big)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "no space left on the device" in last, res.stderr
    assert "Traceback" not in res.stderr
    assert not (small_fs / "train.json").exists() and not (small_fs / "train.bin").exists()
