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
import os
from pathlib import Path

import torch

from .common import UserError, cli, parse_json_arg, setup_logging
from .models import build_model, model_config
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
    model_config(spec["model"], 16000, name="spec.model")  # shape check, vocab comes later
    mpe = spec["model"]["max_position_embeddings"]
    if spec["seq_length"] > mpe:
        raise UserError(f"spec.seq_length: {spec['seq_length']} exceeds the model's "
                        f"max_position_embeddings ({mpe})")
    train_spec = validate_train_spec(spec["train"], where="spec.train")
    from .data import offset_mode
    offset_mode(train_spec.get("random_offset", False), "spec.train.random_offset")
    return {**spec, "eval_chunks": spec.get("eval_chunks", 8192), "train": train_spec}


def tokenizer_vocab_size(tokenizer_dir: str) -> int:
    p = Path(tokenizer_dir)
    if not p.is_dir():
        raise UserError(f"{p}: tokenizer directory not found; run the tokenizer stage first")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer
    try:
        return len(AutoTokenizer.from_pretrained(str(p)))
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: cannot load the tokenizer ({str(e).splitlines()[0]})") from None


def load_splits(train_prefix: str, dev_prefix: str, tokenizer_dir: str, spec: dict):
    """The token arrays of both splits, checked against each other and the tokenizer, as the
    training chunks and the fixed eval chunks. Returns (vocab_size, train_data, eval_data)."""
    from .data import EvalChunks, TokenArray, TrainChunks

    train_tokens, dev_tokens = TokenArray(train_prefix), TokenArray(dev_prefix)
    vocab = train_tokens.vocab_size
    if dev_tokens.vocab_size != vocab:
        raise UserError(f"{dev_prefix}: vocab_size {dev_tokens.vocab_size} differs from "
                        f"{train_prefix}'s {vocab}; tokenize both with the same tokenizer")
    tok_vocab = tokenizer_vocab_size(tokenizer_dir)
    if tok_vocab != vocab:
        raise UserError(f"{tokenizer_dir}: {tok_vocab} tokens but {train_prefix} was tokenized "
                        f"with {vocab}; re-run tokenize_split with this tokenizer")
    t = spec["train"]
    train_data = TrainChunks(train_tokens, spec["seq_length"],
                             random_offset=t.get("random_offset", False), seed=t["seed"],
                             curriculum=t.get("curriculum"))
    eval_data = EvalChunks(dev_tokens, spec["seq_length"], spec["eval_chunks"], seed=t["seed"])
    return vocab, train_data, eval_data


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
    return train(t, LMObjective(model, name=spec["name"]), train_data, eval_data, args.out,
                 args.checkpoint_dir, args.tokenizer,
                 extra_summary={"name": spec["name"], "model": spec["model"],
                                "vocab_size": vocab, "seq_length": spec["seq_length"]},
                 blimp_suite=args.blimp_suite,
                 identity=run_identity(spec, [*paths_for(args.train), *paths_for(args.dev),
                                              args.tokenizer]))


if __name__ == "__main__":
    main()
