"""What the training loop does besides training, as callbacks: evaluation, the BLiMP curve.

:class:`Callback` is the protocol: :meth:`babydistill.train.trainer.Trainer.fit` calls, in the
order of the trainer's ``callbacks`` list,

* ``on_train_start(trainer, resumed)`` once, after a checkpoint was restored (or not);
* ``on_step_end(trainer, evaluate)`` after each optimizer step (and the NaN check), with
  ``evaluate`` true at the evaluation points (``eval_every`` steps, else each epoch end,
  and always the last step);
* ``on_epoch_end(trainer)`` after ``on_step_end`` at each epoch end and at the last step
  (a ``max_steps`` run ends mid-epoch), before that step's checkpoint is written;
* ``on_train_end(trainer, summary)`` once the loop is done: add keys to the summary;
* ``save(out_dir)`` on rank 0 while the final model directory is written.

A callback's ``state_dict`` / ``load_state_dict`` are checkpointed with the trainer's
data position (so a resumed run writes the same rows and points). Callbacks report with
``trainer.metrics.row(...)`` (:class:`babydistill.train.metrics.MetricsLogger`).

* :class:`EvalTracker`: eval loss on the fixed eval chunks, one ``eval_loss`` row, the
  best score so far and ``best.pt`` (``keep: best``).
* :class:`BlimpCurve`: with ``blimp_every_epoch`` and a suite, rank 0 scores every
  trainable module with the fast scorer before the first step and at each epoch end: a
  ``blimp_acc`` row (the modules' mean macro accuracy; each module's in ``logs``) and the
  points of ``OUT_DIR/blimp_curve.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from babydistill.common import UserError, write_json

if TYPE_CHECKING:
    from babydistill.train.trainer import Trainer

log = logging.getLogger("babydistill.train.trainer")


class Callback:
    """The hooks of the training loop (see the module docstring); each does nothing here."""

    metrics_fields: list[str] = []  # extra metrics.csv columns this callback writes

    def on_train_start(self, trainer: "Trainer", resumed: bool) -> None:
        pass

    def on_step_end(self, trainer: "Trainer", evaluate: bool) -> None:
        pass

    def on_epoch_end(self, trainer: "Trainer") -> None:
        pass

    def on_train_end(self, trainer: "Trainer", summary: dict) -> None:
        pass

    def save(self, out_dir: Path) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class EvalTracker(Callback):
    """Eval loss at the evaluation points; the best score (``objective.score``) and its
    step; ``best.pt`` when it improves and ``keep`` is ``best``."""

    def __init__(self) -> None:
        self.best_loss = math.inf
        self.best_step = -1
        self.last_eval: dict[str, float] = {}

    def on_step_end(self, trainer: "Trainer", evaluate: bool) -> None:
        if not evaluate:
            return
        evals = trainer.evaluate()
        if not evals:
            return
        self.last_eval = evals
        score = trainer.objective.score(evals)
        trainer.metrics.row(step=trainer.step, epoch=trainer.epoch_at(trainer.step), loss="",
                            lr=trainer.lr_at(trainer.step - 1), tokens_per_s="", eval_loss=score,
                            logs=json.dumps(evals))
        if trainer.dist.main:
            log.info("step %d: eval loss %s", trainer.step,
                     ", ".join(f"{k} {v:.4f}" for k, v in evals.items()))
        if score < self.best_loss:
            self.best_loss, self.best_step = score, trainer.step
            if trainer.spec.keep == "best":
                trainer.save_best()

    def state_dict(self) -> dict:
        return {"best": {"loss": self.best_loss, "step": self.best_step},
                "last_eval": self.last_eval}

    def load_state_dict(self, state: dict) -> None:
        self.best_loss, self.best_step = state["best"]["loss"], state["best"]["step"]
        self.last_eval = state["last_eval"]


class BlimpCurve(Callback):
    """BLiMP accuracy of every trainable module at step 0 and each epoch end (rank 0).

    ``suite``: a BLiMP-format suite directory, or None (the curve is off: nothing is
    scored, nothing written). ``limit``: pairs per paradigm. The suite and tokenizer are
    loaded once, on rank 0 only."""

    def __init__(self, suite: str | Path | None, tokenizer_dir=None, limit: int | None = None,
                 *, main: bool = True):
        self.points: list[dict] = []  # restored on resume
        self.seconds = 0.0
        self.suite = Path(suite) if suite else None
        self.limit = limit
        self.active = self.suite is not None and main  # only rank 0 scores
        self.metrics_fields = ["blimp_acc"] if self.suite is not None else []
        if not self.active:
            return
        if not tokenizer_dir:
            raise UserError("train.blimp_every_epoch: the BLiMP curve needs the tokenizer "
                            "directory (--tokenizer DIR)")
        from babydistill.eval.scorer import load_suite
        from babydistill.data.tokenizer import load_tokenizer

        self._paradigms = load_suite(self.suite, limit)
        self._tokenizer = load_tokenizer(tokenizer_dir)

    def on_train_start(self, trainer: "Trainer", resumed: bool) -> None:
        if not resumed:
            self._score(trainer)  # the curve's start: the untrained model(s)

    def on_epoch_end(self, trainer: "Trainer") -> None:
        self._score(trainer)

    def _score(self, trainer: "Trainer") -> None:
        """Curve points and one metrics row whose ``blimp_acc`` is the modules' mean."""
        if not self.active:
            return
        from babydistill.eval.scorer import score_suite

        t0 = time.time()
        epoch = trainer.epoch_at(trainer.step)
        accs = {}
        # Eager even under torch.compile: the scorer's varying batch shapes would recompile.
        eager = (torch.compiler.set_stance("force_eager") if trainer.spec.compile
                 else contextlib.nullcontext())
        with eager:
            for name, module in trainer.modules.items():
                summary, _ = score_suite(module, self._tokenizer, self._paradigms)
                accs[name] = summary["accuracy"]
                self.points.append({"step": trainer.step, "epoch": epoch, "module": name,
                                    "accuracy": summary["accuracy"],
                                    "categories": summary["categories"]})
        dt = time.time() - t0
        self.seconds += dt
        trainer.metrics.row(step=trainer.step, epoch=epoch, loss="",
                            lr=trainer.lr_at(trainer.step - 1), tokens_per_s="", eval_loss="",
                            logs=json.dumps(accs), blimp_acc=sum(accs.values()) / len(accs))
        log.info("step %d: BLiMP %s (%.1f s)", trainer.step,
                 ", ".join(f"{k} {v:.4f}" for k, v in accs.items()), dt)

    def on_train_end(self, trainer: "Trainer", summary: dict) -> None:
        if self.suite is not None:
            summary["blimp_eval_s"] = round(self.seconds, 2)

    def save(self, out_dir: Path) -> None:
        if self.points:
            write_json(Path(out_dir) / "blimp_curve.json",
                       {"suite": self.suite.name, "limit": self.limit, "points": self.points})

    def state_dict(self) -> dict:
        return {"points": self.points, "seconds": self.seconds}

    def load_state_dict(self, state: dict, step: int | None = None) -> None:
        self.points = [p for p in state["points"] if step is None or p["step"] <= step]
        self.seconds = state["seconds"]


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "train.callbacks", "python -m babydistill.train.pretrain and babydistill.distill.student")
