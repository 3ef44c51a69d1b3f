"""Benchmark of the data stages on the real partial BabyLM corpus.

Times, on the train split of ``CORPUS`` (default /work/shared/data/babylm_2023_partial,
read-only; everything written goes to a temporary folder):

1. cleaning (``babydistill.data.clean``), words/second, in both modes;
2. tokenizer training (byte-level BPE, vocab 16000 by default), wall time;
3. tokenizing the cleaned train split into PREFIX.bin, words/second;
4. serving training batches (``TrainChunks.batches``), batches/second.

Usage::

    python benchmarks/data_stages.py [CORPUS] [--vocab-size 16000] [--repeat 3] [--json OUT]

Prints a small table; each time is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from timing import best_of

from babydistill.common import UserError, cli
from babydistill.data.chunks import TokenArray, TrainChunks
from babydistill.data.tokenize_split import tokenize_files
from babydistill.data.tokenizer import save_tokenizer, train_tokenizer

DEFAULT_CORPUS = "/work/shared/data/babylm_2023_partial"



def cleaner():
    """A function clean(source, mode, src, dst), or None when babydistill.data.clean is missing.

    Uses the module's ``clean_file`` when it has one; otherwise times its CLI."""
    if importlib.util.find_spec("babydistill.data.clean") is None:
        return None
    import babydistill.data.clean as clean_mod

    if hasattr(clean_mod, "clean_file"):
        return lambda source, mode, src, dst: clean_mod.clean_file(source, mode, src, dst)

    def via_cli(source, mode, src, dst):
        subprocess.run([sys.executable, "-m", "babydistill.data.clean", "--source", source,
                        "--mode", mode, str(src), str(dst)], check=True)
    return via_cli


def words_in(files) -> int:
    return sum(len(Path(f).read_text(encoding="utf-8").split()) for f in files)


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", nargs="?", default=DEFAULT_CORPUS)
    ap.add_argument("--train-split", default="babylm_10M")
    ap.add_argument("--vocab-size", type=int, default=16000)
    ap.add_argument("--seq-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    train_dir = Path(args.corpus) / args.train_split
    raw = sorted(train_dir.glob("*.train")) if train_dir.is_dir() else []
    if not raw:
        raise UserError(f"{train_dir}: no *.train files; pass the corpus folder "
                        f"(the one holding {args.train_split}/)")
    raw_words = words_in(raw)
    rows = []  # (stage, seconds, rate, unit)
    work = Path(tempfile.mkdtemp(prefix="babydistill-bench-"))
    try:
        clean = cleaner()
        cleaned = raw
        if clean is None:
            print("note: src/babydistill/data/clean.py is not there yet; cleaning is not timed and "
                  "the raw files are tokenized", file=sys.stderr)
        else:
            for mode in ("reference", "improved"):
                out = [work / mode / p.name for p in raw]
                secs, _ = best_of(args.repeat, lambda: [clean(p.stem, mode, p, o) for p, o in zip(raw, out)])
                rows.append((f"clean ({mode})", secs, raw_words / secs, "words/s"))
            cleaned = [work / "reference" / p.name for p in raw]
        words = words_in(cleaned)

        secs, tok = best_of(args.repeat, lambda: train_tokenizer(cleaned, args.vocab_size, 2))
        rows.append((f"train tokenizer (vocab {args.vocab_size})", secs, words / secs, "words/s"))
        save_tokenizer(tok, work / "tok")

        secs, meta = best_of(args.repeat, lambda: tokenize_files(work / "tok", cleaned, work / "train",
                                                                 progress=False))
        rows.append(("tokenize train split", secs, words / secs, "words/s"))

        torch.set_num_threads(1)
        ds = TrainChunks(TokenArray(work / "train"), args.seq_length, random_offset=True, seed=0)
        n = ds.num_batches(args.batch_size)
        secs, _ = best_of(args.repeat, lambda: sum(1 for _ in ds.batches(0, args.batch_size)))
        rows.append((f"serve batches ({args.batch_size}x{args.seq_length})", secs, n / secs, "batches/s"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"corpus: {train_dir} ({len(raw)} files, {raw_words:,} words raw, {words:,} cleaned, "
          f"{meta['n_tokens']:,} tokens, {meta['n_tokens'] / words:.3f} tokens/word, "
          f"{len(ds):,} chunks)")
    print(f"{'stage':<34} {'seconds':>9} {'rate':>14}")
    for stage, secs, rate, unit in rows:
        print(f"{stage:<34} {secs:>9.3f} {rate:>11,.0f} {unit}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "corpus": str(train_dir), "raw_words": raw_words, "cleaned_words": words,
            "n_tokens": meta["n_tokens"],
            "rows": [{"stage": s, "seconds": t, "rate": r, "unit": u} for s, t, r, u in rows],
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
