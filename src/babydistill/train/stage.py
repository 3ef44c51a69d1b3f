"""What every training stage does around its objective (``train.pretrain``, ``distill.student``):
the shared flags, logging, the spec and the token splits, the callbacks, the run's identity,
training, ``provenance.json`` (then the model card) at the end, and then
``training.keep_checkpoints`` on the checkpoint folder
(:func:`babydistill.train.checkpoint.prune`). A stage reads::

    ap = stage.parser("python -m babydistill.train.pretrain", __doc__)  # + its own flags
    run = stage.start(ap, argv, PretrainSpec)       # parse, log, spec, load the splits
    objective = ...                                 # from run.spec, run.vocab, run.args
    return run.train(objective, extra_summary)      # train, then record the model

The shared flags: ``--spec JSON|@FILE --train PREFIX --dev PREFIX --tokenizer DIR --out
MODEL_DIR --checkpoint-dir DIR [--blimp-suite DIR] [--at-words N,N,...] [--sweep-best FILE]
[--log FILE]``. ``--sweep-best``: a sweep's ``best.json``, whose best trial's keys are set on
``--spec`` (``config.sweeps.apply_best``) before it is read: the run ``sweep:<name>:best``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from babydistill.common import UserError, parse_json_arg, read_json, setup_logging
from babydistill.config.sweeps import apply_best
from babydistill.config.provenance import record_model, stage_inputs
from babydistill.data.chunks import load_splits
from babydistill.data.tokenize_split import paths_for
from babydistill.train.callbacks import Callback, standard_callbacks
from babydistill.train.checkpoint import prune
from babydistill.train.trainer import Objective, run_identity, train


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The stage's argument parser with the flags every training stage has."""
    ap = argparse.ArgumentParser(prog=prog, description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True, help="the job's spec as JSON (or @FILE)")
    ap.add_argument("--train", required=True, metavar="PREFIX", help="tokenized train split")
    ap.add_argument("--dev", required=True, metavar="PREFIX", help="tokenized dev split")
    ap.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer directory")
    ap.add_argument("--out", required=True, metavar="MODEL_DIR", help="final model directory")
    ap.add_argument("--checkpoint-dir", required=True, metavar="DIR",
                    help="last.pt, best.pt, metrics.csv while the run goes (resumed from)")
    ap.add_argument("--blimp-suite", default=None, metavar="DIR",
                    help="BLiMP-format suite for per-epoch curves (with train.blimp_every_epoch)")
    ap.add_argument("--at-words", default="", metavar="N,N,...", type=_word_counts,
                    help="write a revision (models/<model>/revisions/chck_<N>M, a branch of "
                         "hub.git) at the step crossing each count of words seen")
    ap.add_argument("--sweep-best", default=None, metavar="FILE",
                    help="a sweep's best.json: train --spec with its best trial's keys set")
    ap.add_argument("--log", default=None, metavar="FILE", help="also log to this file")
    return ap


def with_sweep_best(spec_text: str, best_path: str | None) -> str:
    """``--spec`` (JSON or @FILE) with ``--sweep-best``'s trial applied, as JSON text; the spec
    as given without one. The spec is fixed when the DAG is built; the best trial only
    once the sweep has finished: this is where the two meet."""
    if not best_path:
        return spec_text
    if not Path(best_path).is_file():
        raise UserError(f"--sweep-best {best_path}: file not found (rule sweep_results writes it)")
    spec = (read_json(spec_text[1:]) if spec_text.startswith("@")
            else parse_json_arg(spec_text, "--spec"))
    best = parse_json_arg(Path(best_path).read_text(encoding="utf-8"), f"--sweep-best {best_path}")
    return json.dumps(apply_best(spec, best, f"--sweep-best {best_path}"), sort_keys=True)


def _word_counts(text: str) -> list[int]:
    try:
        return sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give word counts like 1000000,2000000")


def ledger_of(model_dir: str | os.PathLike) -> dict:
    """The words-seen ledger in a trained model folder's ``train_summary.json`` (``{}`` for
    a folder trained before ledgers, or from outside the workflow)."""
    path = Path(model_dir) / "train_summary.json"
    return (read_json(path).get("ledger") or {}) if path.is_file() else {}


@dataclass
class StageRun:
    """A training stage's parsed arguments, spec and data; :meth:`train` does the rest."""

    args: argparse.Namespace
    spec: Any  # a babydistill.config.specs PretrainSpec or DistillSpec
    vocab: int
    train_data: Any
    eval_data: Any

    def train(self, objective: Objective, extra_summary: dict,
              inputs: Iterable[str | os.PathLike] = (),
              callbacks: Iterable[Callback] = (),
              ancillary: dict[str, dict] | None = None) -> dict | None:
        """Train ``objective`` with the standard callbacks (then ``callbacks``), under an
        identity of the spec and every input (the splits, the tokenizer, ``inputs``); then
        write ``provenance.json`` and the model card. ``ancillary``: the ledgers of the
        models whose training counts toward this one's words (teachers). Returns the
        summary."""
        a = self.args
        identity = run_identity(self.spec, [*paths_for(a.train), *paths_for(a.dev), a.tokenizer,
                                            *inputs], a.checkpoint_dir)
        summary = train(self.spec.train, objective, self.train_data, self.eval_data, a.out,
                        a.checkpoint_dir, a.tokenizer, extra_summary=extra_summary,
                        identity=identity,
                        callbacks=[*standard_callbacks(self.spec.train, a.tokenizer,
                                                       a.blimp_suite, a.at_words, ancillary),
                                   *callbacks])
        record_model(a.out, a.spec, stage_inputs(a))  # provenance.json, then the card
        if int(os.environ.get("RANK", "0")) == 0:  # the model folder is final: free the disk
            prune(a.checkpoint_dir, self.spec.train.keep_checkpoints)
        return summary


def start(ap: argparse.ArgumentParser, argv: list[str] | None, spec_type) -> StageRun:
    """Parse ``argv``, set up logging, read ``--spec`` as a ``spec_type`` and load the
    token splits it describes."""
    args = ap.parse_args(argv)
    setup_logging(args.log)
    args.spec = with_sweep_best(args.spec, args.sweep_best)  # provenance records this spec
    text = read_json(args.spec[1:]) if args.spec.startswith("@") else args.spec
    spec = spec_type.from_json(text, where="--spec")
    vocab, train_data, eval_data = load_splits(args.train, args.dev, args.tokenizer, spec)
    return StageRun(args, spec, vocab, train_data, eval_data)


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "train.stage", "python -m babydistill.train.pretrain and python -m babydistill.distill.student")
