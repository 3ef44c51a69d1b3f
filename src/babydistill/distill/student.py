"""Stage 5: distillation variants as training objectives for babydistill.train.trainer.

* :class:`KDObjective`: a student and frozen teachers (eval mode, no grad, live forward
  passes); loss = :func:`babydistill.distill.losses.kd_loss` against the logit-averaged teachers
  (Baby Llama, BabyLlama-2; ``kl_direction: reverse`` is Choosy Babies). The papers' 2, 4
  and 6 teacher runs are just longer teacher lists.
* :class:`CachedKDObjective`: the same, from the stored top-k targets of
  babydistill.distill.teacher_cache (no teacher forward passes at all).
* :class:`MaskedKDObjective`: KD between masked LMs (``arch: roberta`` student and
  teachers): the student's MLM masks (babydistill.train.masked_lm), the same masked ids for
  the student and every live teacher, CE and KL on the masked positions
  (:func:`babydistill.distill.losses.masked_kd_loss`). No cache: its targets would depend
  on each step's masks, which a cache of fixed chunks cannot key (refused in one line).
* ``objective: wml`` -> :class:`babydistill.distill.wml.WMLObjective` (no teachers).

CLI (the spec is what ``babydistill.config.distill_spec`` writes)::

    python -m babydistill.distill.student --spec JSON --train PREFIX --dev PREFIX --tokenizer DIR \\
        --out DIR --checkpoint-dir DIR [--teacher DIR ...] [--cache DIR] [--blimp-suite DIR]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import torch

from babydistill.common import UserError, cli
from babydistill.config.specs import DistillSpec, KDSpec
from babydistill.distill.losses import (ce_loss, kd_loss, masked_kd_loss, next_token_labels,
                                        topk_kd_loss)
from babydistill.train import stage
from babydistill.train.callbacks import Callback
from babydistill.train.trainer import Objective

log = logging.getLogger("babydistill.distill.student")


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


class KDObjective(Objective):
    """Student + frozen teachers: alpha * CE + (1 - alpha) * T^2 * KL(teachers, student),
    the loss a :class:`~babydistill.config.specs.KDSpec` describes."""

    def __init__(self, student, teachers, kd: KDSpec):
        self.student = student
        self.forward_student = student  # what loss() calls: the student, or its DDP wrapper
        self.teachers = list(teachers)
        for t in self.teachers:
            t.eval().requires_grad_(False)  # frozen: never trained, never checkpointed
        self.kd = kd
        self.alpha, self.temperature = float(kd.alpha), float(kd.temperature)
        self.direction, self.reduction = kd.kl_direction, kd.kl_reduction

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"student": self.student}

    def wrap(self, wrap) -> None:
        self.forward_student = wrap(self.student)  # teachers are frozen: nothing to sync

    def to(self, device: torch.device) -> "KDObjective":
        super().to(device)
        for t in self.teachers:  # frozen, so not in modules(): moved here
            t.to(device)
        return self

    def _teacher_logits(self, ids: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return [t(input_ids=ids, use_cache=False).logits for t in self.teachers]

    def _kd(self, logits, labels, batch):
        return kd_loss(logits, self._teacher_logits(batch["input_ids"].to(logits.device)), labels,
                       alpha=self.alpha, temperature=self.temperature, direction=self.direction,
                       reduction=self.reduction, return_parts=True)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        ids = batch["input_ids"].to(_device_of(self.student))
        labels = next_token_labels(ids)
        logits = self.forward_student(input_ids=ids, use_cache=False).logits
        loss, ce, kl = self._kd(logits, labels, {**batch, "input_ids": ids})
        return loss, {"ce": ce, "kl": kl}  # 0-d tensors: no GPU sync per step

    @torch.no_grad()
    def eval_loss(self, batch: dict) -> dict[str, float]:
        ids = batch["input_ids"].to(_device_of(self.student))
        logits = self.student(input_ids=ids, use_cache=False).logits
        return {"student": ce_loss(logits, next_token_labels(ids)).item()}

    def save(self, out_dir: Path, best: dict[str, dict]) -> None:
        self.student.load_state_dict(best["student"])
        self.student.save_pretrained(out_dir)


class CachedKDObjective(KDObjective):
    """KD from the teacher cache's sparse targets, looked up by ``chunk_index``."""

    def __init__(self, student, cache, kd: KDSpec):
        super().__init__(student, [], kd)
        self.cache = cache

    def _kd(self, logits, labels, batch):
        if "chunk_index" not in batch:
            raise ValueError("CachedKDObjective needs batches with chunk_index (babydistill.data.chunks)")
        vals, idx, rest = self.cache.get(batch["chunk_index"], self.temperature, device=logits.device)
        return topk_kd_loss(logits, vals, idx, rest, labels, alpha=self.alpha,
                            temperature=self.temperature, direction=self.direction,
                            reduction=self.reduction, return_parts=True)


class MaskedKDObjective(KDObjective):
    """KD for masked LMs (``arch: roberta`` student and teachers): the student's masks
    (:class:`babydistill.train.masked_lm.MaskedLMObjective`'s, seeded by (seed, step,
    chunk)) are drawn in :meth:`prepare`, and the student and every teacher read the SAME
    masked ids; CE and KL on the masked positions only
    (:func:`babydistill.distill.losses.masked_kd_loss`); eval loss: the masked CE on the
    fixed eval masks, as for masked pretraining."""

    def __init__(self, student, teachers, kd: KDSpec, vocab_size: int, seed: int):
        from babydistill.train.masked_lm import MaskedLMObjective

        super().__init__(student, teachers, kd)
        self.mlm = MaskedLMObjective(student, vocab_size, seed, name="student")

    def prepare(self, batch: dict, step: int) -> dict:
        return self.mlm.prepare(batch, step)

    def _teacher_logits(self, ids: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return [t(input_ids=ids).logits for t in self.teachers]

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        if "labels" not in batch:
            raise ValueError("MaskedKDObjective.loss: the batch has no labels; pass it "
                             "through prepare(batch, step) first (the Trainer does)")
        device = _device_of(self.student)
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        logits = self.forward_student(input_ids=ids).logits
        loss, ce, kl = masked_kd_loss(logits, self._teacher_logits(ids), labels, alpha=self.alpha,
                                      temperature=self.temperature, direction=self.direction,
                                      reduction=self.reduction, return_parts=True)
        return loss, {"ce": ce, "kl": kl}

    @torch.no_grad()
    def eval_loss(self, batch: dict) -> dict[str, tuple[float, int]]:
        return self.mlm.eval_loss(batch)


# ---------------------------------------------------------------------------------------
# The CLI


def build_kd_objective(spec: DistillSpec, vocab_size: int, teacher_dirs, cache_dir=None,
                       n_train_chunks: int | None = None, where: str = "--spec"):
    """The student (fresh, seeded) and its KD objective, live or cached; a masked-LM
    student gets :class:`MaskedKDObjective` (live masked teachers only)."""
    from babydistill.models.build import build_model, embedding_rows, is_masked

    kd = spec.kd
    if kd.cache and not cache_dir:
        raise UserError(f"{where}: the spec asks for a teacher cache; pass --cache DIR "
                        "(built by python -m babydistill.distill.teacher_cache)")
    masked = is_masked(spec.student)
    if masked and cache_dir:
        raise UserError(f"{where}: a masked-LM student (arch {spec.student.arch}) distils from live "
                        "teachers only (the top-k cache is not keyed by the masks); drop --cache")
    torch.manual_seed(spec.train.seed)
    student = build_model(spec.student, vocab_size, name=f"{where}.student")
    if cache_dir:
        from babydistill.distill.teacher_cache import TopKCache

        cache = TopKCache(cache_dir)
        cache.check(temperature=float(kd.temperature), seq_length=spec.seq_length,
                    start_token=spec.start_token,
                    vocab_size=vocab_size, random_offset=bool(spec.train.random_offset),
                    n_chunks=n_train_chunks, precision=(kd.cache or {}).get("precision", "fp32"))
        return CachedKDObjective(student, cache, kd)
    if not teacher_dirs:
        raise UserError(f"{where}: objective kd needs --teacher DIR (one per teacher) or --cache DIR")
    from babydistill.models.build import load_teachers
    from babydistill.eval.scorer import is_masked_lm

    teachers = load_teachers(teacher_dirs)
    if is_masked_lm(teachers[0]) != masked:
        kinds = ("masked", "causal") if masked else ("causal", "masked")
        raise UserError(f"{teacher_dirs[0]}: the student is a {kinds[0]} LM and this teacher a "
                        f"{kinds[1]} one; KD needs teachers of the student's kind")
    rows = embedding_rows(spec.student, vocab_size)
    if teachers[0].config.vocab_size != rows:
        raise UserError(f"{teacher_dirs[0]}: teacher vocab_size {teachers[0].config.vocab_size} != "
                        f"the student's {rows} (tokenizer's {vocab_size}); teachers and student "
                        "must share one tokenizer")
    if masked:
        return MaskedKDObjective(student, teachers, kd, vocab_size, spec.train.seed)
    return KDObjective(student, teachers, kd)


def run_stage(argv: list[str] | None = None, callbacks: Iterable[Callback] = ()) -> dict | None:
    """The stage, with ``callbacks`` after the standard ones (a sweep trial's pruning
    reporter); exceptions propagate (:func:`main` makes user errors one line)."""
    ap = stage.parser("python -m babydistill.distill.student", __doc__)
    ap.add_argument("--teacher", action="append", default=[], metavar="DIR",
                    help="teacher model dir (repeat)")
    ap.add_argument("--cache", default=None, metavar="DIR",
                    help="teacher cache dir (teacher_cache output)")
    run = stage.start(ap, argv, DistillSpec)
    spec, args, vocab = run.spec, run.args, run.vocab
    if spec.objective == "kd":
        objective = build_kd_objective(spec, vocab, args.teacher, args.cache,
                                       n_train_chunks=len(run.train_data))
        log.info("%s: kd (%s) alpha=%g T=%g %s/%s", spec.name,
                 "cached top-k" if args.cache else f"{len(args.teacher)} live teacher(s)",
                 objective.alpha, objective.temperature, objective.direction, objective.reduction)
    else:
        if args.teacher or args.cache:
            raise UserError("--teacher/--cache: objective wml is teacher-less; drop them")
        from babydistill.distill.wml import build_wml_objective

        objective = build_wml_objective(spec, vocab, tokenizer_dir=args.tokenizer)
    return run.train(objective,
                     extra_summary={"name": spec.name, "objective": spec.objective,
                                    "vocab_size": vocab, "seq_length": spec.seq_length,
                                    "cached_targets": bool(args.cache)},
                     inputs=[*args.teacher, *([args.cache] if args.cache else [])],
                     ancillary=teacher_ledgers(args.teacher, args.cache),
                     callbacks=callbacks)


def teacher_ledgers(teacher_dirs, cache_dir=None) -> dict[str, dict]:
    """The words-seen ledgers of a student's teachers, by folder name: the live ``--teacher``
    folders, or the teachers a ``--cache`` was built from (its header.json names them).
    Their training counts toward the student's words (the BabyLM rules on ancillary models)."""
    from babydistill.common import read_json

    dirs = list(teacher_dirs or [])
    if cache_dir and not dirs:
        dirs = read_json(Path(cache_dir) / "header.json").get("teachers") or []
    return {Path(d).name: stage.ledger_of(d) for d in dirs}


@cli
def main(argv: list[str] | None = None):
    return run_stage(argv)


if __name__ == "__main__":
    main()
