"""Stage 2b: tokenize one split once into a flat token array on disk (PREFIX.bin + PREFIX.json).

Owns the on-disk token format every training and eval stage reads (see babydistill.data.chunks):

* ``PREFIX.bin``: the token ids of the whole split, raw little-endian, uint16 when the
  vocabulary has at most 65535 tokens, else uint32; ``np.memmap``-able.
* ``PREFIX.json``: ``{"dtype", "n_tokens", "vocab_size", "eos_id", "bos_id", "pad_id",
  "files": [{"name", "lines", "words", "tokens"}], "tokenizer_sha256", "join"}``.
  It is written last, so ``PREFIX.json`` present means the pair is complete.

How the text is joined (kept simple on purpose):

* Files go in sorted order (by file name), so the array is the same on every machine.
* Each line of a file is encoded on its own, with its trailing newline kept: the model
  still sees the line breaks (utterance / sentence / paragraph boundaries), as in the
  Baby Llama recipe that encoded whole files, and with ``add_prefix_space`` the first
  word of a line gets the same token as it would mid-sentence (and as in BLiMP
  sentences). Encoding lines separately is also what lets ``encode_batch`` run in
  parallel. Blank lines are kept too (they mark paragraph breaks in ``improved`` mode).
* One ``</s>`` after each file: the sources are unrelated documents, and the marker
  costs one token per file.
* A line longer than :data:`PIECE_CHARS` characters is encoded in pieces cut before a space
  that starts a word (:func:`line_pieces`): the ByteLevel pre-tokenizer splits there anyway,
  so the ids are the ones of the whole line, and memory stays bounded (one 50 MB line
  encoded whole peaked at 6.8 GB RSS).

CLI::

    python -m babydistill.data.tokenize_split --tokenizer DIR --out PREFIX INPUT...
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from babydistill.common import UserError, atomic_path, cli, file_sha256, setup_logging, write_json
from babydistill.data.tokenizer import BOS, EOS, PAD, load_backend, sorted_inputs

log = logging.getLogger("babydistill.data.tokenize_split")

JOIN = "each line encoded with its newline; </s> after each file; files sorted by name"
BATCH_LINES = 16384  # lines per encode_batch call: big enough to keep all cores busy
PIECE_CHARS = 1 << 16  # longer lines are encoded in pieces of about this many characters
BATCH_CHARS = 1 << 18  # and at most ~256k characters go to one encode_batch call (memory)


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65535), else uint32; always little-endian."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")


def split_lines(text: str) -> list[str]:
    """Split on "\\n" only (not the other Unicode line breaks), keeping each newline."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:  # last line without a trailing newline
        lines.append(parts[-1])
    return lines


def line_pieces(line: str, piece_chars: int = PIECE_CHARS) -> list[str]:
    """``line`` cut into pieces of about ``piece_chars`` characters whose ids, encoded one by
    one, are those of the whole line: each cut falls just before a space that follows a
    non-space and precedes a letter or digit, where the ByteLevel pre-tokenizer (and NFKC)
    split anyway, and a piece that starts with a space gets no added prefix space. A stretch
    with no such space within 4 pieces' length is cut hard (the tokens there may differ:
    such text is no language)."""
    if len(line) <= piece_chars:
        return [line]
    pieces, start = [], 0
    while len(line) - start > piece_chars:
        cut = start + piece_chars
        limit = min(len(line) - 1, start + 4 * piece_chars)
        while cut < limit and not (line[cut] == " " and not line[cut - 1].isspace()
                                   and line[cut + 1].isalnum()):
            cut += 1
        if cut >= limit:
            log.warning("a line has no word boundary in %d characters: cut inside a word",
                        4 * piece_chars)
            cut = start + piece_chars
        pieces.append(line[start:cut])
        start = cut
    pieces.append(line[start:])
    return pieces


def _batches(pieces: list[str], max_items: int, max_chars: int):
    """``pieces`` in order, in groups of at most ``max_items`` items and about ``max_chars``
    characters (a group always holds at least one piece)."""
    group, chars = [], 0
    for p in pieces:
        if group and (len(group) >= max_items or chars + len(p) > max_chars):
            yield group
            group, chars = [], 0
        group.append(p)
        chars += len(p)
    if group:
        yield group


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); clean the split first") from None


def paths_for(prefix: str | os.PathLike) -> tuple[Path, Path]:
    """PREFIX -> (PREFIX.bin, PREFIX.json)."""
    prefix = str(prefix)
    return Path(prefix + ".bin"), Path(prefix + ".json")


def tokenize_files(tokenizer_dir: str | os.PathLike, files: Iterable[str | os.PathLike],
                   out_prefix: str | os.PathLike, batch_lines: int = BATCH_LINES,
                   progress: bool = True, max_tokens: int | None = None,
                   piece_chars: int = PIECE_CHARS) -> dict:
    """Tokenize ``files`` (sorted by name) into PREFIX.bin / PREFIX.json; return the metadata.

    ``max_tokens`` keeps N tokens (config ``data.max_train_tokens``: a smoke run at full
    model size over a few hundred chunks): the start of every file, in proportion to its
    size, so that every source stays in the split (a curriculum's buckets name them). The
    per-file ``tokens`` describe what was kept (``tokens_full``: before the cut) and
    ``truncated_from`` the whole split's count.
    """
    tok = load_backend(tokenizer_dir)
    paths = sorted_inputs(files)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    dtype = token_dtype(vocab_size)
    eos_id = tok.token_to_id(EOS)
    if eos_id is None:
        raise UserError(f"{tokenizer_dir}: tokenizer has no {EOS} token; re-train it")

    # encode_batch_fast skips the offsets we do not need (tokenizers >= 0.21).
    encode_batch = getattr(tok, "encode_batch_fast", tok.encode_batch)

    bin_path, json_path = paths_for(out_prefix)
    # A stale .json must not vouch for the new .bin while it is being written.
    json_path.unlink(missing_ok=True)

    files_meta = []
    n_tokens = 0
    t0 = time.perf_counter()
    with atomic_path(bin_path) as tmp, open(tmp, "wb") as out:
        for path in paths:
            meta = _encode_file(path, encode_batch, out, dtype, eos_id, batch_lines,
                                piece_chars, progress)
            files_meta.append(meta)
            f_tokens = meta["tokens"]
            n_tokens += f_tokens
        out.flush()
        truncated = max_tokens is not None and n_tokens > max_tokens
        if truncated:
            _keep_file_starts(tmp, dtype, files_meta, max_tokens)
    seconds = time.perf_counter() - t0

    meta = {
        "dtype": dtype.name,
        "n_tokens": max_tokens if truncated else n_tokens,
        "vocab_size": vocab_size,
        "eos_id": eos_id,
        "bos_id": tok.token_to_id(BOS),
        "pad_id": tok.token_to_id(PAD),
        "join": JOIN,
        "tokenizer_sha256": file_sha256(Path(tokenizer_dir) / "tokenizer.json"),
        "files": files_meta,
    }
    if truncated:
        meta["truncated_from"] = n_tokens
    write_json(json_path, meta)  # last: .json present == complete
    return {**meta, "seconds": seconds}  # timing is returned, not stored: outputs stay deterministic


def _encode_file(path: Path, encode_batch, out, dtype: np.dtype, eos_id: int, batch_lines: int,
                 piece_chars: int, progress: bool) -> dict:
    """Append one file's ids and its ``</s>`` to ``out``; return its metadata row."""
    lines = split_lines(read_text(path))
    f_tokens = f_words = 0
    # a context: a failed write closes the bar before the error line is printed
    with tqdm(total=len(lines), desc=path.name, unit="line", disable=not progress,
              leave=False) as bar:
        for start in range(0, len(lines), batch_lines):
            batch = lines[start:start + batch_lines]
            pieces = [p for line in batch for p in line_pieces(line, piece_chars)]
            # words per piece: a long line's word list alone took ~10x its size in memory
            # (a cut falls between words, so the counts add up to the line's)
            f_words += sum(len(p.split()) for p in pieces)
            for group in _batches(pieces, batch_lines, BATCH_CHARS):
                encs = encode_batch(group, add_special_tokens=False)
                count = sum(len(e.ids) for e in encs)
                ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs),
                                  dtype=dtype, count=count)
                out.write(ids.tobytes())
                f_tokens += count
            bar.update(len(batch))
    out.write(np.array([eos_id], dtype=dtype).tobytes())
    return {"name": path.name, "lines": len(lines), "words": f_words, "tokens": f_tokens + 1}


def _keep_file_starts(path: Path, dtype: np.dtype, files_meta: list[dict], keep: int) -> None:
    """Cut the token file at ``path`` to ``keep`` tokens: the first tokens of every file, each
    file's share in proportion to its count (largest remainders get the leftover tokens);
    ``files_meta`` is updated in place."""
    counts = np.array([f["tokens"] for f in files_meta], dtype=np.int64)
    exact = counts * keep / counts.sum()
    share = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - share), kind="stable")[: keep - int(share.sum())]:
        share[i] += 1
    full = np.fromfile(path, dtype=dtype)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    kept = np.concatenate([full[a:a + n] for a, n in zip(starts, share)])
    kept.tofile(path)
    for f, n in zip(files_meta, share):
        f["tokens_full"], f["tokens"] = f["tokens"], int(n)


@cli
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m babydistill.data.tokenize_split",
                                description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", required=True, help="folder written by babydistill.data.tokenizer")
    p.add_argument("--out", required=True, help="output prefix: writes PREFIX.bin and PREFIX.json")
    p.add_argument("--log", default=None, help="also log to this file")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="keep only the first N tokens (smoke runs; default: all)")
    p.add_argument("inputs", nargs="+", help="cleaned text files of one split")
    args = p.parse_args(argv)
    setup_logging(args.log)
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UserError("--max-tokens must be >= 1")
    meta = tokenize_files(args.tokenizer, args.inputs, args.out, max_tokens=args.max_tokens)
    words = sum(f["words"] for f in meta["files"])
    log.info("%s: %d tokens (%s) from %d files, %d words, %.1f s (%.0f words/s)",
             args.out, meta["n_tokens"], meta["dtype"], len(meta["files"]), words,
             meta["seconds"], words / max(meta["seconds"], 1e-9))


if __name__ == "__main__":
    main()
