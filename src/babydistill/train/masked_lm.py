"""The masked-LM objective (``arch: roberta``): masking, its seeds, and the loss on masked positions.

Masking as the WML authors' code masks (AI-DA-STC/generative-ai-research-babylm@701a0c8,
``src/WML_distill/utils.py``, ``get_batch`` for ``model_type == "MLM"``): each position is
chosen with probability 0.15, every position alike (no special token is spared: their
chunks are cut from the token stream, as ours are); of the chosen, 80% become the mask
token, 10% a token drawn uniformly from the whole vocabulary (``randint(vocab_size)``, the
mask and special tokens included) and 10% stay; the labels are the original ids at the
chosen positions and -100 elsewhere, so the loss is the cross-entropy over the chosen
positions only (their ``F.cross_entropy(..., ignore_index=-100)``, the mean; here the
model's own MLM loss, the same mean). They draw fresh masks for every train and validation
batch from the global RNG; we draw them through transformers' own
``DataCollatorForLanguageModeling.torch_mask_tokens`` (the same 0.15 / 80 / 10 / 10 and the
same vocabulary for the random tokens; passed an all-false special-tokens mask so that,
like theirs, every position may be chosen), but from a generator of its own per chunk:

* training: seeded from ``(seed, step, chunk index)``, so a killed run resumes
  bit-identically (the mask does not depend on a global RNG stream, nor on how a batch is
  split into micro batches or over GPUs) and a chunk seen again in a later epoch gets a new
  mask (dynamic masking, as theirs). Drawn in :meth:`MaskedLMObjective.prepare`, on the CPU
  before the batch moves to the GPU, whose work on the step before goes on meanwhile;
* evaluation: seeded from ``(seed, chunk index)`` of the fixed dev chunks, the same mask at
  every evaluation (a fixed masked eval loss, whatever ``eval_batch_size``), where theirs
  re-masks each validation batch. The eval loss is the mean over all masked dev positions.

Positions: no ``position_ids`` are passed, so RoBERTa numbers them from the ids as it does
at inference (a random token that happens to be the padding id shifts the row's later
positions by one, as in the authors' runs and every RoBERTa trained with this collator).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from babydistill.common import UserError
from babydistill.config.presets import mask_token_id
from babydistill.train.trainer import Objective

MLM_PROBABILITY = 0.15  # utils.py: mask_prob = 0.15
MASK_REPLACE_PROB = 0.8  # of the chosen: rand < 0.8 -> mask token
RANDOM_REPLACE_PROB = 0.1  # 0.8 <= rand < 0.9 -> a random token; the rest keep theirs
_TRAIN, _EVAL = 0x7A1, 0xE7A  # the two streams of mask seeds


class _MaskVocabulary:
    """What ``DataCollatorForLanguageModeling`` reads of a tokenizer when given the special
    tokens mask: the mask token and the vocabulary's size (the tokenizer's + the mask)."""

    mask_token = "<mask>"

    def __init__(self, vocab_size: int):
        self.mask_token_id = mask_token_id(vocab_size)
        self._size = vocab_size + 1

    def __len__(self) -> int:
        return self._size

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.mask_token_id


def mask_seed(seed: int, *parts: int) -> int:
    """A 63-bit generator seed from ``seed`` and ``parts`` (numpy's SeedSequence: nearby
    inputs give unrelated seeds)."""
    words = np.random.SeedSequence([int(seed), *map(int, parts)]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class Masker:
    """Masks rows of token ids, each from its own seed (see the module docstring)."""

    def __init__(self, vocab_size: int):
        from transformers import DataCollatorForLanguageModeling

        self.mask_id = mask_token_id(vocab_size)
        self.collator = DataCollatorForLanguageModeling(
            tokenizer=_MaskVocabulary(vocab_size), mlm=True, mlm_probability=MLM_PROBABILITY,
            mask_replace_prob=MASK_REPLACE_PROB, random_replace_prob=RANDOM_REPLACE_PROB)

    def mask(self, ids: torch.Tensor, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, labels)`` for ``ids`` (rows x positions, any device), row ``i`` masked
        by a generator seeded with ``seeds[i]``; drawn on the CPU, returned on ``ids``'s
        device."""
        rows = ids.detach().cpu()
        inputs, labels = torch.empty_like(rows), torch.empty_like(rows)
        spare_none = torch.zeros((1, rows.shape[1]), dtype=torch.bool)  # every position may be chosen
        for i, seed in enumerate(seeds):
            self.collator.generator = torch.Generator().manual_seed(seed)
            inputs[i:i + 1], labels[i:i + 1] = self.collator.torch_mask_tokens(
                rows[i:i + 1].clone(), special_tokens_mask=spare_none)
        self.collator.generator = None
        return inputs.to(ids.device), labels.to(ids.device)


def masked_ce(model, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-entropy summed over the masked positions (labels not -100) and their count:
    the authors' ``F.cross_entropy(..., ignore_index=-100)`` is the ratio, and RoBERTa's own
    MLM loss (float32 logits) too; a micro batch with no masked position adds 0, not NaN,
    and nothing here waits for the GPU."""
    logits = model(input_ids=inputs).logits
    total = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(),
                                              ignore_index=-100, reduction="sum")
    return total, (labels != -100).sum()


class MaskedLMObjective(Objective):
    """Masked-LM cross-entropy for one ``RobertaForMaskedLM`` (pretraining)."""

    def __init__(self, model: torch.nn.Module, vocab_size: int, seed: int, name: str = "model"):
        self.model, self.name, self.seed = model, name, int(seed)
        self.forward_model = model  # the model, or its DDP wrapper
        self.masker = Masker(vocab_size)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {self.name: self.model}

    def wrap(self, wrap) -> None:
        self.forward_model = wrap(self.model)

    def _chunks(self, batch: dict) -> list[int]:
        if "chunk_index" not in batch:
            raise UserError("masked LM: batches must carry their chunk_index (the masks are "
                            "seeded by it); use babydistill.data.chunks")
        return [int(c) for c in batch["chunk_index"].tolist()]

    def masked(self, batch: dict, step: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's ``(inputs, labels)``: step ``step``'s train masks, or with None the
        fixed eval ones."""
        seeds = [mask_seed(self.seed, _EVAL, c) if step is None
                 else mask_seed(self.seed, _TRAIN, step, c) for c in self._chunks(batch)]
        return self.masker.mask(batch["input_ids"], seeds)

    def prepare(self, batch: dict, step: int) -> dict:
        inputs, labels = self.masked(batch, step)
        return {**batch, "input_ids": inputs, "labels": labels}

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        if "labels" not in batch:
            raise ValueError("MaskedLMObjective.loss: the batch has no labels; pass it "
                             "through prepare(batch, step) first (the Trainer does)")
        total, count = masked_ce(self.forward_model, batch["input_ids"], batch["labels"])
        return total / count.clamp(min=1), {}

    @torch.no_grad()
    def eval_loss(self, batch: dict) -> dict[str, tuple[float, int]]:
        """``{name: (mean CE over the batch's masked positions, their count)}``: the trainer
        weights by the count, so the eval loss is the mean over every masked dev position."""
        total, count = masked_ce(self.model, *self.masked(batch, None))
        n = int(count)
        return {self.name: (total.item() / n if n else 0.0, n)}

    def save(self, out_dir: Path, best: dict[str, dict]) -> None:
        self.model.load_state_dict(best[self.name])
        self.model.save_pretrained(out_dir)  # copy_tokenizer adds the mask token beside it


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "train.masked_lm", "python -m babydistill.train.pretrain")
