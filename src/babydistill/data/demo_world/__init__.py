"""The demo world: a seeded, self-contained stand-in for the BabyLM data and its evaluations.

Owns everything ``make demo`` needs instead of downloads:

* a small probabilistic grammar of child-directed English over a real lexicon (irregular
  plurals, irregular past forms and participles, agreement, reflexives, questions, relative
  clauses); agreement is always respected, so a model that learns the corpus prefers the
  grammatical member of each minimal pair;
* ``DIR/corpus/{babylm_10M,babylm_dev}/<source>.{train,dev}`` for the ten BabyLM 2023 sources,
  each rendered in that source's raw format and carrying the artefacts the Baby Llama
  ``mrclean.py`` cleaner removes (so the cleaners have real work);
* ``DIR/blimp/<paradigm>.jsonl``: BLiMP-format minimal pairs (same keys as the real paradigm of
  the same UID), made fresh from a separate random stream;
* ``DIR/glue/cola.{train,valid}.jsonl``: a CoLA-style acceptability task (BabyLM glue_filtered
  layout) whose unacceptable items are the same one-word violations;
* ``DIR/SOURCE.md``.

Modules: :mod:`.grammar` (lexicon and agreement grammar), :mod:`.sources` (the raw formats),
:mod:`.suite` (minimal pairs), :mod:`.task` (the CoLA-style task), :mod:`.ngram` (a trigram
check that the suite is learnable); this module builds the whole world.

Same seed -> byte-identical output. ``python -m babydistill.data.demo_world --out DIR``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tqdm import tqdm

from babydistill.common import UserError, atomic_path, cli, setup_logging
from .grammar import ADJS, INTRANS, IRREG_PP, NOUNS, PART_ADJS, TRANS, Grammar
from .ngram import TrigramLM, ngram_blimp_accuracy, tokens
from .sources import DEV_SPLIT, SOURCES, SOURCE_WEIGHTS, TRAIN_SPLIT, write_source
from .suite import PARADIGM_NAMES, PARADIGMS, _norm, make_pairs, write_blimp
from .task import write_cola

log = logging.getLogger("babydistill.data.demo_world")

__all__ = [  # what callers (tests, other stages) use
    "ADJS", "DEV_SPLIT", "Grammar", "INTRANS", "IRREG_PP", "NOUNS", "PARADIGMS", "PARADIGM_NAMES",
    "PART_ADJS", "SOURCES", "TRAIN_SPLIT", "TRANS", "TrigramLM", "build_world", "generate", "main",
    "make_pairs", "ngram_blimp_accuracy", "source_budgets", "tokens",
]


# --------------------------------------------------------------------------------------------
# The whole world
# --------------------------------------------------------------------------------------------


def source_budgets(words: int) -> dict[str, int]:
    total = sum(SOURCE_WEIGHTS.values())
    return {s: max(50, round(words * w / total)) for s, w in SOURCE_WEIGHTS.items()}


def build_world(root: Path, seed: int = 1234, words: int = 300_000, pairs: int = 200,
                cola_train: int = 2000, cola_valid: int = 500) -> dict:
    """Write the whole demo world into the (new) directory ``root``; returns its statistics."""
    seen: set[str] = set()
    stats: dict = {"seed": seed, "words_target": words, "corpus": {}}
    jobs = [(TRAIN_SPLIT, "train", words), (DEV_SPLIT, "dev", words // 10)]
    bar = tqdm(total=len(jobs) * len(SOURCES) + 2, desc="demo world", unit="part")
    for split, ext, target in jobs:
        d = root / "corpus" / split
        d.mkdir(parents=True)
        for source, budget in source_budgets(target).items():
            n = write_source(d / f"{source}.{ext}", source, budget, seed, split, seen)
            stats["corpus"][f"{split}/{source}.{ext}"] = n
            bar.update()
    avoid = {_norm(s) for s in seen}
    stats["blimp"] = write_blimp(root / "blimp", pairs, seed, avoid)
    bar.update()
    stats["cola"] = write_cola(root / "glue", cola_train, cola_valid, seed, avoid)
    bar.update()
    bar.close()
    (root / "SOURCE.md").write_text(source_md(stats), encoding="utf-8")
    return stats


def source_md(stats: dict) -> str:
    c = stats["corpus"]
    train = sum(v for k, v in c.items() if k.startswith(TRAIN_SPLIT))
    dev = sum(v for k, v in c.items() if k.startswith(DEV_SPLIT))
    rows = "\n".join(f"| {k} | {v:,} |" for k, v in c.items())
    paradigms = "\n".join(f"- {k}: {v} pairs" for k, v in stats["blimp"].items())
    cola = stats["cola"]
    return f"""# babydistill demo world (generated, seed {stats['seed']})

Written by `python -m babydistill.data.demo_world --seed {stats['seed']} --words \
{stats['words_target']}` from a small probabilistic grammar of child-directed English
(src/babydistill/demo_world/). Nothing here is real data; the same seed gives the same bytes.

## corpus/ (BabyLM 2023 raw layout: {TRAIN_SPLIT}/ and {DEV_SPLIT}/)

Ten sources, each in its raw format with the artefacts the Baby Llama mrclean.py removes
(space before punctuation and doubled spaces, `word 's` / `do n't` / `-LRB-` tokens, `= = =`
headings, subtitle credit lines, all-caps QED lines with l for I, blank-line paragraphs,
switchboard `A:`/`B:` turns). Train {train:,} words, dev {dev:,} words (whitespace words).

| file | words |
|---|---|
{rows}

## blimp/ (BLiMP jsonl format, keys as the real paradigm of the same UID)

{paradigms}

Pairs come from a separate random stream and avoid sentences of the train corpus.

## glue/ (BabyLM glue_filtered layout)

cola.train.jsonl: {cola['train']['n']} items ({cola['train']['positive']} acceptable);
cola.valid.jsonl: {cola['valid']['n']} items ({cola['valid']['positive']} acceptable).
Unacceptable items carry the same one-word violations as the minimal pairs.
"""


def generate(out: str | Path, seed: int = 1234, words: int = 300_000, pairs: int = 200,
             cola_train: int = 2000, cola_valid: int = 500) -> dict:
    """Build the world in a temporary directory and rename it onto ``out``."""
    if words < 1000:
        raise UserError(f"--words {words}: too few for ten sources; use at least 1000")
    if pairs < 1:
        raise UserError(f"--pairs {pairs}: must be at least 1")
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out}: is a file; give a directory path")
    with atomic_path(out) as tmp:
        tmp.mkdir()
        stats = build_world(tmp, seed, words, pairs, cola_train, cola_valid)
    return stats


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m babydistill.data.demo_world", description=__doc__
                                 .split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (replaced atomically)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--words", type=int, default=300_000, help="train words over all sources")
    ap.add_argument("--pairs", type=int, default=200, help="minimal pairs per paradigm")
    ap.add_argument("--cola-train", type=int, default=2000)
    ap.add_argument("--cola-valid", type=int, default=500)
    ap.add_argument("--check", action="store_true",
                    help="also report a trigram model's BLiMP accuracy per paradigm")
    ap.add_argument("--log", default=None, help="also log to this file")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    stats = generate(a.out, a.seed, a.words, a.pairs, a.cola_train, a.cola_valid)
    train = sum(v for k, v in stats["corpus"].items() if k.startswith(TRAIN_SPLIT))
    log.info("wrote %s: %d train words, %d paradigms x %d pairs, cola %s", a.out, train,
             len(stats["blimp"]), a.pairs, stats["cola"])
    if a.check:
        acc = ngram_blimp_accuracy(a.out)
        for k, v in acc.items():
            log.info("trigram BLiMP %-45s %.3f", k, v)
        log.info("trigram BLiMP mean %.3f", sum(acc.values()) / len(acc))
