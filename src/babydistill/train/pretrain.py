"""Stage: train a model preset from scratch (the teachers and the no-distillation baselines).

    python -m babydistill.train.pretrain --spec JSON --train PREFIX --dev PREFIX \\
        --tokenizer DIR --out MODEL_DIR --checkpoint-dir DIR [--blimp-suite DIR]

``--spec`` is ``config.pretrain_spec(config, name)`` as JSON: ``{"name", "model": preset,
"train": merged training keys, "seq_length", "eval_chunks"}``. The run resumes from
``--checkpoint-dir`` when it holds a checkpoint; MODEL_DIR (HF model + tokenizer +
metrics.csv + train_summary.json) appears atomically at the end. Run it under
``python -m babydistill.train.launch --gpus N --`` for several GPUs. With
``train.blimp_every_epoch`` and ``--blimp-suite``, MODEL_DIR also holds ``blimp_curve.json``.
"""

from __future__ import annotations

import argparse

import torch

from babydistill.common import cli, setup_logging
from babydistill.data.chunks import load_splits
from babydistill.models.build import build_model
from babydistill.config.provenance import record_model, stage_inputs
from babydistill.config.specs import PretrainSpec
from babydistill.data.tokenize_split import paths_for
from babydistill.train.trainer import LMObjective, run_identity, train


@cli
def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(prog="python -m babydistill.train.pretrain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True, help="JSON: name, model, train, seq_length, eval_chunks")
    ap.add_argument("--train", required=True, metavar="PREFIX", help="tokenized train split")
    ap.add_argument("--dev", required=True, metavar="PREFIX", help="tokenized dev split")
    ap.add_argument("--tokenizer", required=True, metavar="DIR")
    ap.add_argument("--out", required=True, metavar="MODEL_DIR")
    ap.add_argument("--checkpoint-dir", required=True, metavar="DIR")
    ap.add_argument("--blimp-suite", default=None, metavar="DIR",
                    help="BLiMP-format suite for per-epoch curves (with train.blimp_every_epoch)")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    spec = PretrainSpec.from_json(args.spec, where="--spec")

    vocab, train_data, eval_data = load_splits(args.train, args.dev, args.tokenizer, spec)
    t = spec.train

    torch.manual_seed(t.seed)  # the same initial weights on every rank and every restart
    model = build_model(spec.model, vocab, name="spec.model")
    summary = train(t, LMObjective(model, name=spec.name), train_data, eval_data, args.out,
                    args.checkpoint_dir, args.tokenizer,
                    extra_summary={"name": spec.name, "model": spec.model.to_json(),
                                   "vocab_size": vocab, "seq_length": spec.seq_length},
                    blimp_suite=args.blimp_suite,
                    identity=run_identity(spec, [*paths_for(args.train), *paths_for(args.dev),
                                                 args.tokenizer], args.checkpoint_dir))
    record_model(args.out, args.spec, stage_inputs(args))  # provenance.json, then the card
    return summary


if __name__ == "__main__":
    main()
