"""What the training loop does besides training, as callbacks: evaluation, the BLiMP curve,
the words-seen ledger and the revisions by words seen.

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
* :class:`WordsSeen` (``words``): words seen, tokens seen and epochs (and the teachers'
  ledgers) as ``ledger`` in ``train_summary.json``.
* :class:`Revisions` (``revisions``): a model folder at the step crossing each count of
  ``checkpoints.at_words``, then ``OUT_DIR/revisions/`` and ``OUT_DIR/hub.git``.

A callback with ``stateful = False`` (the last two) is left out of the checkpoint: adding
one keeps a run's ``last.pt`` resumable.
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
    # False: nothing to checkpoint (what it knows follows from the step or lies on disk), so
    # adding or dropping it leaves a run's last.pt resumable
    stateful: bool = True

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
        self._tokenizer_dir, self._masked_tokenizer = tokenizer_dir, None

    def _tokenizer_for(self, module):
        """The stage's tokenizer; for a masked LM the same with its mask token (as its saved
        folder will have it), so the scorer's masked path (eval.pll) can mask."""
        from babydistill.eval.scorer import is_masked_lm

        if not is_masked_lm(module):
            return self._tokenizer
        if self._masked_tokenizer is None:
            from babydistill.data.tokenizer import load_masked_tokenizer

            self._masked_tokenizer = load_masked_tokenizer(self._tokenizer_dir)
        return self._masked_tokenizer

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
                summary, _ = score_suite(module, self._tokenizer_for(module), self._paradigms)
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


class WordsSeen(Callback):
    """The words-seen ledger (``words``): whitespace words, as the BabyLM data statistics
    count them (``data.tokenize_split``'s per-file counts). Words at step ``s`` are a pure
    function of the data order (:meth:`babydistill.data.chunks.TrainChunks.batch_words`:
    each chunk's tokens x its file's words per token, summed over the batches done), so
    nothing is checkpointed and a resumed run counts the same. ``ancillary``: the ledgers
    of the models whose training counts toward this one's budget (a student's teachers,
    its teacher cache's), by name; their words are added to ``total_words_seen``."""

    name = "words"
    stateful = False

    def __init__(self, ancillary: dict[str, dict] | None = None) -> None:
        self.ancillary = dict(ancillary or {})
        self.cumulative = None  # words seen after step i+1, as a float array

    def on_train_start(self, trainer: "Trainer", resumed: bool) -> None:
        import numpy as np

        data, bs = trainer.train_data, trainer.spec.batch_size
        per_epoch = [data.batch_words(e, bs) if hasattr(data, "batch_words") else None
                     for e in range(len(trainer.epoch_steps))]
        if any(w is None for w in per_epoch):
            return  # no per-file word counts (a bare token array): tokens only
        self.cumulative = np.cumsum(np.concatenate(per_epoch))[:trainer.total_steps]

    def words_at(self, step: int) -> int | None:
        """Words seen after ``step`` optimizer steps (None without word counts)."""
        if self.cumulative is None:
            return None
        return int(round(float(self.cumulative[step - 1]))) if step > 0 else 0

    def ledger(self, trainer: "Trainer") -> dict:
        data = trainer.train_data
        own = self.words_at(trainer.step)
        data_words = data.data_words() if hasattr(data, "data_words") else None
        extra = sum(int(a.get("total_words_seen") or 0) for a in self.ancillary.values())
        return {"word_count": "whitespace words (len(line.split())); per chunk its tokens x "
                              "its file's words/tokens",
                "words_seen": own,
                "tokens_seen": trainer.tokens_at(trainer.step),
                "epochs": trainer.epoch_at(trainer.step),
                "data_words": data_words, "data_tokens": len(data.tokens),
                "ancillary": self.ancillary,
                "total_words_seen": None if own is None else own + extra}

    def on_train_end(self, trainer: "Trainer", summary: dict) -> None:
        summary["ledger"] = self.ledger(trainer)


class Revisions(Callback):
    """Checkpoints by words seen (``revisions``): at the step that crosses each of
    ``at_words``, a full model folder ``CHECKPOINT_DIR/revisions/chck_<N>M`` (the
    objective's saved model(s) with the current weights, the tokenizer, ``revision.json``
    and a short ``README.md``), written atomically on rank 0; at the end they are copied to
    ``OUT_DIR/revisions/`` and ``OUT_DIR/hub.git`` gets a branch each plus ``main``
    (:mod:`babydistill.train.hub`).

    It reads weights and writes files only: no RNG is drawn and no training state changes,
    so a run's final weights are the same with or without revisions. A revision on disk is
    its own record (nothing is checkpointed): one written by this run (its
    ``revision.json`` holds the run identity) is kept and never written again -- a resumed
    run replays the steps after ``last.pt`` bit for bit and skips it -- and one of another
    run is removed at the start."""

    name = "revisions"
    stateful = False

    def __init__(self, at_words, words: WordsSeen, tokenizer_dir=None, *,
                 main: bool | None = None) -> None:
        from babydistill.config.challenge import revision_name

        self.at_words = sorted(set(int(w) for w in at_words or ()))
        self.names = {w: revision_name(w) for w in self.at_words}
        self.words, self.tokenizer_dir = words, tokenizer_dir
        if main is None:
            main = int(os.environ.get("RANK", "0")) == 0
        self.active = bool(self.at_words) and main
        self.dir: Path | None = None
        self.written: list[int] = []

    def on_train_start(self, trainer: "Trainer", resumed: bool) -> None:
        if not self.active:
            return
        if trainer.checkpoint_dir is None or self.words.cumulative is None:
            raise UserError("checkpoints.at_words: revisions need a checkpoint directory and "
                            "the train split's word counts (PREFIX.json from tokenize_split)")
        self.dir = trainer.checkpoint_dir / "revisions"
        self.dir.mkdir(parents=True, exist_ok=True)
        for d in sorted(self.dir.iterdir()):
            info = d / "revision.json"
            mine = info.is_file() and json.loads(info.read_text()).get("identity") == trainer.identity
            if not mine and d.is_dir():
                log.warning("%s: a revision of another run; removed", d)
                import shutil

                shutil.rmtree(d)

    def on_step_end(self, trainer: "Trainer", evaluate: bool) -> None:
        if not self.active:
            return
        before, now = self.words.words_at(trainer.step - 1), self.words.words_at(trainer.step)
        for w in self.at_words:
            if before < w <= now:
                self._write(trainer, w, now)

    def _write(self, trainer: "Trainer", w: int, now: int) -> None:
        from babydistill.common import atomic_path
        from babydistill.train.trainer import copy_tokenizer

        dest = self.dir / self.names[w]
        if (dest / "revision.json").is_file():
            return  # written before a kill: the replayed step is the same step
        with atomic_path(dest) as tmp:
            tmp.mkdir()
            states = {n: m.state_dict() for n, m in trainer.modules.items()}
            trainer.objective.save(tmp, states)  # the current weights, loaded onto themselves
            copy_tokenizer(self.tokenizer_dir, tmp)
            info = {"revision": self.names[w], "at_words": w, "words_seen": now,
                    "step": trainer.step, "epochs": trainer.epoch_at(trainer.step),
                    "tokens_seen": trainer.tokens_at(trainer.step), "identity": trainer.identity}
            (tmp / "README.md").write_text(
                f"# {self.names[w]}\n\nAn intermediate checkpoint: the weights after step "
                f"{info['step']} ({info['epochs']} epochs), {now:,} words seen "
                f"(whitespace words; {info['tokens_seen']:,} tokens), the first step at or past "
                f"{w:,}. The final model's card holds the whole ledger.\n")
            write_json(tmp / "revision.json", info)  # last: present == complete
        log.info("step %d: revision %s (%d words seen)", trainer.step, self.names[w], now)

    def save(self, out_dir: Path) -> None:
        if not self.active:
            return
        import shutil

        from babydistill.train.hub import REVISIONS, write_hub_repo

        done = [w for w in self.at_words if (self.dir / self.names[w] / "revision.json").is_file()]
        for w in done:  # hard links: a revision's files are never rewritten in place
            shutil.copytree(self.dir / self.names[w], Path(out_dir) / REVISIONS / self.names[w],
                            copy_function=_link_or_copy)
        missing = [self.names[w] for w in self.at_words if w not in done]
        if missing:
            log.warning("checkpoints.at_words: the run ended before %s (%d words seen)",
                        ", ".join(missing), self.words.words_at(self.words.cumulative.size))
        infos = [json.loads((self.dir / self.names[w] / "revision.json").read_text())
                 for w in done]
        write_hub_repo(out_dir, [(i["revision"], f"{i['revision']}: step {i['step']}, "
                                  f"{i['words_seen']} words seen") for i in infos])


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        import shutil

        shutil.copy2(src, dst)


def standard_callbacks(spec: TrainSpec | dict, tokenizer_dir=None,
                       blimp_suite: str | Path | None = None, at_words=(),
                       ancillary: dict[str, dict] | None = None) -> list[Callback]:
    """The callbacks every training stage gives the trainer, from its train spec: the
    evaluator (``eval_every``), the BLiMP curve (on with ``blimp_every_epoch`` and a
    suite; always present, so that turning it on or off keeps a run resumable), the
    words-seen ledger (with the ``ancillary`` models' ledgers) and the revisions at
    ``at_words`` (neither checkpointed: ``stateful`` is False)."""
    spec = TrainSpec.of(spec)
    if spec.blimp_every_epoch and not blimp_suite:
        log.warning("train.blimp_every_epoch is true but no BLiMP suite was given "
                    "(--blimp-suite DIR): no per-epoch curve")
    words = WordsSeen(ancillary)
    return [EvalTracker(spec.eval_every),
            BlimpCurve(blimp_suite if spec.blimp_every_epoch else None, tokenizer_dir,
                       spec.blimp_limit),
            words, Revisions(at_words, words, tokenizer_dir)]


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "train.callbacks", "python -m babydistill.train.pretrain and babydistill.distill.student")
