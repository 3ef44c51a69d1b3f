"""Stage 1c: BabyLlama-2's selection split -- each cleaned train file cut in two by lines.

JLTastet/BabyLlama-2 (``notebooks/split_dataset.ipynb`` @8c6685d, ``split_file``) splits
every cleaned ``train_10M`` file by lines: the first ``round((1 - f) * lines)`` lines
train (``train_9.5M``), the rest are the selection set (``select_0.5M``, the eval loss
that picks checkpoints); the official dev split then serves as the test set. With
``f = 0.05`` that is ~9.5M and ~0.5M words. Here the same cut, with each part ending in a
newline (the notebook's ``'\\n'.join`` drops the last one; the tokenizer sees the same
lines either way).

CLI: ``python -m babydistill.data.select_split --fraction 0.05 INPUT TRAIN_OUT SELECT_OUT``
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from babydistill.common import UserError, atomic_path, cli, require_file, setup_logging

log = logging.getLogger("babydistill.data.select_split")


def split_lines(text: str, fraction: float) -> tuple[list[str], list[str]]:
    """(train lines, selection lines): the last ``round(fraction * n)`` lines go to selection."""
    if not 0 <= fraction < 1:
        raise UserError(f"corpus.select_fraction: {fraction} must be in [0, 1)")
    lines = text.splitlines()
    n_train = round((1 - fraction) * len(lines))
    return lines[:n_train], lines[n_train:]


def _write(path: str | Path, lines: list[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


def split_file(input_path: str | Path, train_out: str | Path, select_out: str | Path,
               fraction: float) -> dict:
    """Write the two parts of INPUT; return their line and word counts."""
    text = require_file(input_path, "cleaned train file").read_text(encoding="utf-8")
    train, select = split_lines(text, fraction)
    _write(train_out, train)
    _write(select_out, select)
    counts = {"train_lines": len(train), "select_lines": len(select),
              "train_words": sum(len(line.split()) for line in train),
              "select_words": sum(len(line.split()) for line in select)}
    log.info("%s: %d lines / %d words train, %d lines / %d words selection", input_path,
             counts["train_lines"], counts["train_words"], counts["select_lines"],
             counts["select_words"])
    return counts


@cli
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m babydistill.data.select_split",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--fraction", type=float, required=True,
                    help="share of each file's lines (its end) that goes to the selection set")
    ap.add_argument("--log", help="also log to this file")
    ap.add_argument("input")
    ap.add_argument("train_out")
    ap.add_argument("select_out")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    return split_file(args.input, args.train_out, args.select_out, args.fraction)


if __name__ == "__main__":
    main()
