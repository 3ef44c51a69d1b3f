"""Stage: train a model preset from scratch (the teachers and the no-distillation baselines).

    python -m babydistill.train.pretrain --spec JSON --train PREFIX --dev PREFIX \\
        --tokenizer DIR --out MODEL_DIR --checkpoint-dir DIR [--blimp-suite DIR]

``--spec`` is ``config.pretrain_spec(config, name)`` as JSON: ``{"name", "model": preset,
"train": merged training keys, "seq_length", "eval_chunks"}``. The run resumes from
``--checkpoint-dir`` when it holds a checkpoint; MODEL_DIR (HF model + tokenizer +
metrics.csv + train_summary.json) appears atomically at the end. Run it under
``python -m babydistill.train.launch --gpus N --`` for several GPUs. With
``train.blimp_every_epoch`` and ``--blimp-suite``, MODEL_DIR also holds ``blimp_curve.json``.

A masked preset (``arch: roberta``) trains with the masked-LM objective
(:mod:`babydistill.train.masked_lm`); its MODEL_DIR's tokenizer holds the mask token (id =
the tokenizer's size) and ``AutoModelForMaskedLM.from_pretrained(MODEL_DIR)`` loads it; its
BLiMP curve is scored by pseudo-log-likelihood (the fast scorer's masked path, eval.pll).
"""

from __future__ import annotations

from typing import Iterable

import torch

from babydistill.common import cli
from babydistill.config.specs import PretrainSpec
from babydistill.models.build import build_model, is_masked, mask_token_id
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
    summary = {"name": spec.name, "model": spec.model.to_json(), "vocab_size": run.vocab,
               "seq_length": spec.seq_length}
    if is_masked(spec.model):
        from babydistill.train.masked_lm import MaskedLMObjective

        objective = MaskedLMObjective(model, run.vocab, spec.train.seed, name=spec.name)
        summary.update(objective="mlm", mask_token_id=mask_token_id(run.vocab))
    else:
        objective = LMObjective(model, name=spec.name)
    return run.train(objective, extra_summary=summary, callbacks=callbacks)


@cli
def main(argv: list[str] | None = None) -> dict | None:
    return run_stage(argv)


if __name__ == "__main__":
    main()
