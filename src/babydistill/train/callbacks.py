"""What the training loop does besides training, as callbacks: evaluation, the BLiMP curve.

A stage builds its callbacks (usually :func:`standard_callbacks`: an :class:`EvalTracker`
and a :class:`BlimpCurve`, then any of its own) and gives them to
:func:`babydistill.train.trainer.train`, which keeps them by :attr:`Callback.name` and
checkpoints their state as ``{name: state_dict}`` (torchtitan's and OLMo-core's pattern;
a checkpoint of other callbacks is moved aside, never loaded into the wrong ones).

:class:`Callback` is the protocol: :meth:`babydistill.train.trainer.Trainer.fit` calls, in the
order the stage gave them,

* ``on_train_start(trainer, resumed)`` once, after a checkpoint was restored (or not);
* ``on_step_end(trainer, evaluate)`` after each optimizer step (and the NaN check), with
  ``evaluate`` true at the evaluator's points (:meth:`EvalTracker.due`: ``eval_every``
  steps, else each epoch end, and always the last step);
* ``on_epoch_end(trainer)`` after ``on_step_end`` at each epoch end and at the last step
  (a ``max_steps`` run ends mid-epoch), before that step's checkpoint is written;
* ``on_train_end(trainer, summary)`` once the loop is done: add keys to the summary;
* ``save(out_dir)`` on rank 0 while the final model directory is written.

A callback's ``state_dict`` / ``load_state_dict`` are checkpointed after the trainer's
data position (so a resumed run writes the same rows and points). Callbacks report with
``trainer.metrics.row(...)`` (:class:`babydistill.train.metrics.MetricsLogger`).

* :class:`EvalTracker` (``eval``): the evaluator. It owns its cadence (``eval_every``);
  at its points the eval loss on the fixed eval chunks, one ``eval_loss`` row, the best
  score so far and ``best.pt`` (``keep: best``).
* :class:`BlimpCurve` (``blimp_curve``): with ``blimp_every_epoch`` and a suite, rank 0
  scores every trainable module with the fast scorer before the first step and at each
  epoch end: a ``blimp_acc`` row (the modules' mean macro accuracy; each module's in
  ``logs``) and the points of ``OUT_DIR/blimp_curve.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from babydistill.common import UserError, write_json
from babydistill.config.specs import TrainSpec

if TYPE_CHECKING:
    from babydistill.train.trainer import Trainer

log = logging.getLogger("babydistill.train.trainer")


class Callback:
    """The hooks of the training loop (see the module docstring); each does nothing here.

    ``name``: the callback's key in the trainer and in the checkpoint (unique in a run)."""

    name: str = ""
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
    """The evaluator: eval loss at its points (:meth:`due`); the best score
    (``objective.score``) and its step; ``best.pt`` when it improves and ``keep`` is
    ``best``. ``every``: evaluate every that many steps; 0 = at each epoch end."""

    name = "eval"

    def __init__(self, every: int = 0) -> None:
        self.every = every
        self.best_loss = math.inf
        self.best_step = -1
        self.last_eval: dict[str, float] = {}

    def due(self, step: int, *, epoch_end: bool, last: bool) -> bool:
        """Whether optimizer step ``step`` is an evaluation point (the last step always is)."""
        if self.every:
            return last or step % self.every == 0
        return last or epoch_end

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
                trainer.save_best(self.best_loss)

    def summary(self) -> dict:
        """The run summary's evaluation keys."""
        return {"best_eval_loss": self.best_loss if math.isfinite(self.best_loss) else None,
                "best_step": self.best_step,
                "final_eval": self.last_eval}

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

    name = "blimp_curve"

    def __init__(self, suite: str | Path | None, tokenizer_dir=None, limit: int | None = None,
                 *, main: bool | None = None):
        self.points: list[dict] = []  # restored on resume
        self.seconds = 0.0
        self.suite = Path(suite) if suite else None
        self.limit = limit
        if main is None:  # this process's rank under torchrun (the trainer's DistInfo reads the same)
            main = int(os.environ.get("RANK", "0")) == 0
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
        if resumed:  # the restored points up to the checkpoint's step
            self.points = [p for p in self.points if p["step"] <= trainer.step]
        else:
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

    def load_state_dict(self, state: dict) -> None:
        self.points, self.seconds = state["points"], state["seconds"]


def standard_callbacks(spec: TrainSpec | dict, tokenizer_dir=None,
                       blimp_suite: str | Path | None = None) -> list[Callback]:
    """The callbacks every training stage gives the trainer, from its train spec: the
    evaluator (``eval_every``) and the BLiMP curve (on with ``blimp_every_epoch`` and a
    suite; always present, so that turning it on or off keeps a run resumable)."""
    spec = TrainSpec.of(spec)
    if spec.blimp_every_epoch and not blimp_suite:
        log.warning("train.blimp_every_epoch is true but no BLiMP suite was given "
                    "(--blimp-suite DIR): no per-epoch curve")
    return [EvalTracker(spec.eval_every),
            BlimpCurve(blimp_suite if spec.blimp_every_epoch else None, tokenizer_dir,
                       spec.blimp_limit)]


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "train.callbacks", "python -m babydistill.train.pretrain and babydistill.distill.student")
