"""Stage: train a model preset from scratch (the teachers and the no-distillation baselines).

    python -m babydistill.pretrain --spec JSON --train PREFIX --dev PREFIX \\
        --tokenizer DIR --out MODEL_DIR --checkpoint-dir DIR [--blimp-suite DIR]

``--spec`` is ``config.pretrain_spec(config, name)`` as JSON: ``{"name", "model": preset,
"train": merged training keys, "seq_length", "eval_chunks"}``. The run resumes from
``--checkpoint-dir`` when it holds a checkpoint; MODEL_DIR (HF model + tokenizer +
metrics.csv + train_summary.json) appears atomically at the end. Run it under
``python -m babydistill.launch --gpus N --`` for several GPUs. With
``train.blimp_every_epoch`` and ``--blimp-suite``, MODEL_DIR also holds ``blimp_curve.json``.
"""

from __future__ import annotations

import argparse

import torch

from .common import UserError, cli, parse_json_arg, setup_logging
from .data import load_splits
from .models import build_model, check_preset
from .provenance import record_model, stage_inputs
from .tokenize_split import paths_for
from .train import LMObjective, run_identity, train, validate_train_spec


def validate_spec(spec) -> dict:
    """Check the pretrain spec's shape; errors name the key (``spec.train.lr: ...``)."""
    if not isinstance(spec, dict):
        raise UserError(f"--spec: expected a JSON object, got {type(spec).__name__}")
    for key in ("name", "model", "train", "seq_length"):
        if key not in spec:
            raise UserError(f"--spec: missing key {key!r} (expected name, model, train, "
                            "seq_length, eval_chunks)")
    if not isinstance(spec["name"], str) or not spec["name"]:
        raise UserError(f"spec.name: expected a run name, got {spec['name']!r}")
    for key, default in (("seq_length", None), ("eval_chunks", 8192)):
        v = spec.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"spec.{key}: expected a positive integer, got {v!r}")
    check_preset(spec["model"], 16000, name="spec.model")  # shape check, vocab comes later
    mpe = spec["model"]["max_position_embeddings"]
    if spec["seq_length"] > mpe:
        raise UserError(f"spec.seq_length: {spec['seq_length']} exceeds the model's "
                        f"max_position_embeddings ({mpe})")
    train_spec = validate_train_spec(spec["train"], where="spec.train")
    from .data import offset_mode
    offset_mode(train_spec.get("random_offset", False), "spec.train.random_offset")
    return {**spec, "eval_chunks": spec.get("eval_chunks", 8192), "train": train_spec}


@cli
def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(prog="python -m babydistill.pretrain", description=__doc__,
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
    spec = validate_spec(parse_json_arg(args.spec, "--spec"))

    vocab, train_data, eval_data = load_splits(args.train, args.dev, args.tokenizer, spec)
    t = spec["train"]

    torch.manual_seed(t["seed"])  # the same initial weights on every rank and every restart
    model = build_model(spec["model"], vocab, name="spec.model")
    summary = train(t, LMObjective(model, name=spec["name"]), train_data, eval_data, args.out,
                    args.checkpoint_dir, args.tokenizer,
                    extra_summary={"name": spec["name"], "model": spec["model"],
                                   "vocab_size": vocab, "seq_length": spec["seq_length"]},
                    blimp_suite=args.blimp_suite,
                    identity=run_identity(spec, [*paths_for(args.train), *paths_for(args.dev),
                                                 args.tokenizer]))
    record_model(args.out, args.spec, stage_inputs(args))  # provenance.json, then the card
    return summary


if __name__ == "__main__":
    main()
