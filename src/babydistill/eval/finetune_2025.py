"""Fine-tuning recipe ``babylm-2025``: the official 2025 pipeline's classifier and training
loop, written from its code (babylm/evaluation-pipeline-2025 @
bf55c1131e53654c2a87418f5629c26959acd710: ``evaluation_pipeline/finetune/classifier_model.py``,
``trainer.py``, ``utils.py``, ``dataset.py``, ``run.py``, and ``eval_finetuning.sh``).

What it does, as that code does it with the flags ``eval_finetuning.sh`` passes:

- the model: the saved LM's base transformer (``AutoModel``, no LM head) and a fresh head,
  LayerNorm (no affine, eps 1e-5) -> Linear(h, h) -> GELU -> LayerNorm (no affine) ->
  Dropout 0.1 -> Linear(h, labels), fed the hidden state of the *first* position
  (``take_final`` is not passed, so ``encoding[:, 0]``). With right padding that is the first
  token of the input; in a causal LM it has seen only itself. This is the official choice
  for decoders under the script, kept as is; recipe babylm-2023 pools the last token. An
  encoder (a saved ``RobertaForMaskedLM``) gives ``RobertaModel``, whose first position
  attends to the whole input; its pooler, absent from the saved weights, is built fresh and
  unused, as ``AutoModel`` builds it in the official code.
- data: the training set shuffled, ``drop_last``; validation in order at batch 64; inputs
  padded per batch on the right, truncated longest-first (here to the model's context too).
- AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0.01 on every parameter, no AMSGrad), no
  gradient clipping, fp32; a cosine schedule with linear warm-up over the first 6% of the
  steps, decaying to 0.1 x the peak (``cosine_schedule_with_warmup``, min factor 0.1).
- evaluation on the validation set after every epoch, all epochs run (no early stopping), the
  best epoch kept by the task's metric (accuracy; F1 for MRPC and QQP), the first of equal
  scores; the score reported is that epoch's. The pipeline's EMA copy with decay 0.0 (its
  default) equals the trained weights, so the trained model is evaluated directly.

Not reproduced exactly: the random streams (the head's init, the shuffling: a generator
seeded with the spec's seed here), and the 10k MNLI/QQP subsample of the 2025 data release
(see ``babydistill.config.finetune_recipes``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

WARMUP_PROPORTION = 0.06  # run.py --warmup_proportion
MIN_FACTOR = 0.1  # trainer.py passes 0.1 to cosine_schedule_with_warmup
WEIGHT_DECAY = 0.01  # run.py --weight_decay
CLASSIFIER_DROPOUT = 0.1  # run.py --classifier_dropout
LAYER_NORM_EPS = 1e-5  # run.py --classifier_layer_norm_eps
VALID_BATCH_SIZE = 64  # run.py --valid_batch_size


class FirstTokenClassifier(nn.Module):
    """A base transformer and the 2025 pipeline's MLP head on the first position's state."""

    def __init__(self, backbone: nn.Module, hidden_size: int, num_labels: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.LayerNorm(hidden_size, LAYER_NORM_EPS, elementwise_affine=False),
            nn.Linear(hidden_size, hidden_size),
            nn.GELU(),
            nn.LayerNorm(hidden_size, LAYER_NORM_EPS, elementwise_affine=False),
            nn.Dropout(CLASSIFIER_DROPOUT),
            nn.Linear(hidden_size, num_labels),
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 0])


def cosine_with_warmup(total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor at a step: linear warm-up from 0 over the first 6% of the
    steps, then half a cosine from 1 down to MIN_FACTOR, never below it."""
    warmup = int(WARMUP_PROPORTION * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return max(MIN_FACTOR, MIN_FACTOR + (1 - MIN_FACTOR) * 0.5 * (1 + math.cos(math.pi * progress)))

    return factor


def _loader(ds, collate, batch_size: int, generator: torch.Generator | None):
    train = generator is not None
    return torch.utils.data.DataLoader(ds, batch_size=batch_size,
                                       shuffle=train, drop_last=train, generator=generator,
                                       collate_fn=collate)


@torch.no_grad()
def predict(model: nn.Module, loader, dev: torch.device) -> tuple[list[int], list[int]]:
    """(predictions, labels) over a loader, the model in eval mode (no dropout)."""
    model.eval()
    preds, labels = [], []
    for batch in loader:
        logits = model(batch["input_ids"].to(dev), batch["attention_mask"].to(dev))
        preds += logits.argmax(-1).tolist()
        labels += batch["labels"].tolist()
    return preds, labels


def train(model: FirstTokenClassifier, tok, train_ds, valid_ds, spec: dict, metrics: dict,
          key_metric: str, dev: torch.device, progress=None) -> dict:
    """Fine-tune for ``spec["epochs"]`` epochs, evaluating after each; returns the best epoch's
    score, its metrics, the per-epoch history and the step count. ``metrics``: name -> fn(preds,
    labels), computed at every evaluation; ``key_metric`` picks the best epoch."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tok)
    gen = torch.Generator().manual_seed(spec["seed"])
    train_dl = _loader(train_ds, collate, spec["batch_size"], gen)
    valid_dl = _loader(valid_ds, collate, VALID_BATCH_SIZE, None)
    total = len(train_dl) * spec["epochs"]
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=WEIGHT_DECAY, amsgrad=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(total))
    history, best, step = [], None, 0
    for epoch in range(1, spec["epochs"] + 1):
        model.train()
        losses = []
        for batch in train_dl:
            logits = model(batch["input_ids"].to(dev), batch["attention_mask"].to(dev))
            loss = F.cross_entropy(logits, batch["labels"].to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            if progress is not None:
                progress(step, total)
        preds, labels = predict(model, valid_dl, dev)
        scores = {name: fn(preds, labels) for name, fn in metrics.items()}
        history.append({"epoch": epoch, "step": step, "score": scores[key_metric],
                        "loss": sum(losses) / len(losses) if losses else None, "metrics": scores})
        if best is None or scores[key_metric] > best["score"]:  # the first of equal scores
            best = history[-1]
    return {"best": best, "history": history, "steps": step, "max_steps": total}


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "eval.finetune_2025", "python -m babydistill.eval.finetune --recipe babylm-2025")
