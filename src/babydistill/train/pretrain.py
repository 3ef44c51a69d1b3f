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

from typing import Iterable

import torch

from babydistill.common import cli
from babydistill.config.specs import PretrainSpec
from babydistill.models.build import build_model
from babydistill.train import stage
from babydistill.train.callbacks import Callback
from babydistill.train.trainer import LMObjective


def run_stage(argv: list[str] | None = None, callbacks: Iterable[Callback] = ()) -> dict | None:
    """The stage, with ``callbacks`` after the standard ones (a sweep trial's pruning
    reporter); exceptions propagate (:func:`main` makes user errors one line)."""
    run = stage.start(stage.parser("python -m babydistill.train.pretrain", __doc__), argv,
                      PretrainSpec)
    spec = run.spec
    torch.manual_seed(spec.train.seed)  # the same initial weights on every rank and every restart
    model = build_model(spec.model, run.vocab, name="spec.model")
    return run.train(LMObjective(model, name=spec.name),
                     extra_summary={"name": spec.name, "model": spec.model.to_json(),
                                    "vocab_size": run.vocab, "seq_length": spec.seq_length},
                     callbacks=callbacks)


@cli
def main(argv: list[str] | None = None) -> dict | None:
    return run_stage(argv)


if __name__ == "__main__":
    main()
