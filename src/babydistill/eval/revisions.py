"""The fast evaluation of every checkpoint of a model folder (rule ``eval_revisions``).

Owns: listing a saved model folder's checkpoints by words seen -- each ``revisions/chck_<N>``
folder the training stages write (``train.callbacks.Revisions``; its ``revision.json``
holds the words, tokens, step and epochs at that checkpoint) and the final weights as
``main`` (its words from ``train_summary.json``'s ledger) -- and scoring each with the fast
scorer (:mod:`babydistill.eval.scorer`) on the fast subsets of the given suites, into one
JSON per model: per revision its words seen and, per suite, the summary of
:func:`babydistill.eval.scorer.summarize` plus each pair's decision, paradigm by paradigm
(``correct``: a string of 0/1 in file order), which the export turns into the official
``predictions.json`` (:mod:`babydistill.report.export`).

The fast evaluation as the official BabyLM 2025 pipeline runs it
(babylm/evaluation-pipeline-2025@bf55c113 ``eval_zero_shot_fast.sh``: BLiMP, the supplement
and EWoK from ``evaluation_data/fast_eval``, one ``--revision_name`` at a time,
``eval_zero_shot_fast_all_revisions.sh`` over ``chck_1M`` ...): its subsets hold 200 pairs per
BLiMP paradigm, 50 per supplement paradigm and 100 per EWoK domain (``collate_preds.py``
@591121d ``FAST_SIZES``; :data:`babydistill.config.challenge.FAST_SIZES`). Here a suite's
subset is the first ``--limit`` pairs of each paradigm file (the official fast files are
scored whole), under ``--convention`` (default babylm-2025, the pipeline's causal scoring,
no temperature scan: its fast script passes none).

Words seen are the model's own whitespace words (``words_seen``) and, with its teachers'
(``total_words_seen``: the revision's words plus the ancillary words of the final ledger,
which a student's teachers saw before it started).

    python -m babydistill.eval.revisions --model DIR --suite NAME=DIR [NAME=DIR ...] \\
        --limit NAME=N [NAME=N ...] --out revisions.json [--convention babylm-2025] \\
        [--batch-size 64] [--log FILE]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from babydistill.common import UserError, cli, read_json, setup_logging, write_json
from babydistill.eval.blimp import load_model, require_model_dir, silence_progress_bars
from babydistill.eval.scorer import CONVENTIONS, get_convention, load_suite, score_suite

log = logging.getLogger("babydistill.eval.revisions")

REVISIONS = "revisions"  # train.hub.REVISIONS (eval sits below train: the name, not the import)
MAIN = "main"  # the final weights, as the hub and the official results layout name them
DEFAULT_CONVENTION = "babylm-2025"
_INFO_KEYS = ("step", "epochs", "tokens_seen")


def _ledger(model_dir: Path) -> dict:
    path = model_dir / "train_summary.json"
    if not path.is_file():
        raise UserError(f"{model_dir}: no train_summary.json; give --model a folder a training "
                        "stage wrote (an ensemble has no checkpoints of its own)")
    summary = read_json(path)
    ledger = summary.get("ledger") or {}
    if ledger.get("words_seen") is None:
        raise UserError(f"{path}: no words-seen ledger (ledger.words_seen); retrain with the "
                        "tokenize_split word counts (PREFIX.json) beside the train tokens")
    return {**ledger, "steps": summary.get("steps")}


def list_revisions(model_dir: str | os.PathLike) -> list[dict]:
    """Every checkpoint of ``model_dir``, fewest words first, ending with ``main``: the
    revision's name, folder, ``words_seen``, ``total_words_seen``, step, epochs, tokens."""
    d = require_model_dir(model_dir)
    ledger = _ledger(d)
    teachers = int(ledger.get("total_words_seen") or ledger["words_seen"]) - int(ledger["words_seen"])
    out = []
    for folder in sorted(p for p in (d / REVISIONS).glob("*") if p.is_dir()):
        info_path = folder / "revision.json"
        if not info_path.is_file():
            raise UserError(f"{folder}: no revision.json (an incomplete revision); re-run the "
                            "training stage, which writes revisions whole")
        info = read_json(info_path)
        if not isinstance(info, dict) or not isinstance(info.get("words_seen"), int):
            raise UserError(f"{info_path}: no words_seen (an integer); a training stage writes it")
        out.append({"revision": info.get("revision", folder.name), "dir": str(folder),
                    "words_seen": int(info["words_seen"]),
                    "total_words_seen": int(info["words_seen"]) + teachers,
                    **{k: info.get(k) for k in _INFO_KEYS}})
    out.sort(key=lambda r: r["words_seen"])
    out.append({"revision": MAIN, "dir": str(d), "words_seen": int(ledger["words_seen"]),
                "total_words_seen": int(ledger["words_seen"]) + teachers,
                "step": ledger["steps"], "epochs": ledger.get("epochs"),
                "tokens_seen": ledger.get("tokens_seen")})
    return out


def score_revision(folder: str | os.PathLike, suites: dict[str, list], convention: str,
                   batch_size: int = 64) -> dict[str, dict]:
    """Per suite (``{name: paradigms}`` as :func:`load_suite` gives them): the summary and
    each pair's decision (``correct``: ``{paradigm: "0110..."}``) of the model in ``folder``."""
    model, tok = load_model(folder)
    out = {}
    for name, paradigms in suites.items():
        summary, rows = score_suite(model, tok, paradigms, batch_size, convention=convention)
        correct: dict[str, list[str]] = {}
        for paradigm, _, _, _, ok in rows:
            correct.setdefault(paradigm, []).append(str(ok))
        out[name] = {**summary, "correct": {p: "".join(c) for p, c in correct.items()}}
    return out


def evaluate(model_dir: str | os.PathLike, suite_dirs: dict[str, str], limits: dict[str, int],
             convention: str = DEFAULT_CONVENTION, batch_size: int = 64) -> dict:
    """The result JSON of :mod:`babydistill.eval.revisions` for one model folder."""
    conv = get_convention(convention).name
    suites = {name: load_suite(path, limits.get(name)) for name, path in suite_dirs.items()}
    revisions = list_revisions(model_dir)
    for rev in revisions:
        t0 = time.time()
        rev["suites"] = score_revision(rev["dir"], suites, conv, batch_size)
        log.info("%s %s (%d words seen): %s, %.1f s", Path(model_dir).name, rev["revision"],
                 rev["words_seen"], ", ".join(f"{s} {r['accuracy']:.4f}" for s, r in
                                              rev["suites"].items()), time.time() - t0)
    return {"model": Path(model_dir).name, "model_dir": str(model_dir), "backend": "fast",
            "convention": conv,
            "suites": {name: {"suite_dir": str(suite_dirs[name]), "limit": limits.get(name),
                              "paradigms": {p.name: len(p.pairs) for p in ps}}
                       for name, ps in suites.items()},
            "revisions": revisions}


def _named(items: list[str] | None, flag: str, cast=str) -> dict:
    """``NAME=VALUE`` arguments as a dict; a malformed one is one line naming the flag."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UserError(f"{flag} {item}: give NAME=VALUE")
        try:
            out[name] = cast(value)
        except ValueError:
            raise UserError(f"{flag} {item}: {value!r} is not a {cast.__name__}") from None
    return out


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m babydistill.eval.revisions",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a model folder a training stage wrote")
    ap.add_argument("--suite", nargs="+", required=True, metavar="NAME=DIR",
                    help="each suite's name and folder of <paradigm>.jsonl files")
    ap.add_argument("--limit", nargs="+", default=[], metavar="NAME=N",
                    help="the first N pairs per paradigm of a suite (its fast subset; default all)")
    ap.add_argument("--out", required=True, help="the result JSON")
    ap.add_argument("--convention", default=DEFAULT_CONVENTION, metavar="NAME",
                    help=f"{', '.join(CONVENTIONS)} (default {DEFAULT_CONVENTION})")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    if not sys.stderr.isatty():
        silence_progress_bars()
    suites, limits = _named(args.suite, "--suite"), _named(args.limit, "--limit", int)
    if unknown := sorted(set(limits) - set(suites)):
        raise UserError(f"--limit {unknown[0]}=...: no --suite of that name")
    if args.batch_size < 1 or any(n < 1 for n in limits.values()):
        raise UserError("--batch-size and --limit must be positive")
    result = evaluate(args.model, suites, limits, args.convention, args.batch_size)
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
