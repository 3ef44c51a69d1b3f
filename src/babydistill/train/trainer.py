"""The one training loop: pretraining and every distillation variant (nanoGPT style).

What a run is made of:

* an :class:`Objective` -- the trainable modules and the loss. :class:`LMObjective` is
  plain next-token cross-entropy for one model (pretraining);
  :class:`babydistill.train.masked_lm.MaskedLMObjective` the masked-LM one (its masks made
  by ``Objective.prepare`` on the CPU batch); the distillation objectives subclass
  :class:`Objective` elsewhere.
* a train spec: a :class:`babydistill.config.specs.TrainSpec` (the merged ``training:`` keys,
  checked and completed from the schema's defaults; a mapping is parsed into one).
* data with the :mod:`babydistill.data.chunks` API (``batches(epoch, batch_size, start_batch,
  rank=, world_size=)``, ``num_batches(batch_size, epoch)``; an epoch's batch count may
  change with the epoch -- a curriculum opens more data as it goes).

The :class:`Trainer` owns the optimization: fused AdamW (weight decay on matrices and
embeddings only, never on biases or norm weights -- the HF Trainer convention the papers
used), grad clipping, a per-step warm-up + cosine/linear/constant schedule
(transformers.get_scheduler), global ``batch_size`` split into ``world_size * grad_accum``
micro batches, bf16 autocast and optional ``torch.compile`` on CUDA, data parallelism
under ``torchrun`` (each trainable module wrapped in DistributedDataParallel, which the
objective's ``loss`` calls -- see :meth:`Objective.wrap`; ``no_sync`` on all but the last
micro batch; gloo on CPU, nccl on CUDA; no wrapping in a single process) and a NaN/inf
stop naming the step. Its parts do the rest:

* :class:`babydistill.train.checkpoint.Checkpointer` over the parts' state dicts (model(s),
  optimizer, scheduler, objective, RNG states, data position and ``{name: state}`` of the
  callbacks): atomic checkpoints that resume bit-for-bit, loaded without unpickling code,
  checksummed, and moved aside, never resumed, when another run wrote them. It owns its
  cadence (``checkpoint_every``, each epoch end, the last step);
* :class:`babydistill.train.metrics.MetricsLogger`: ``metrics.csv``, TensorBoard event files in
  ``CHECKPOINT_DIR/tensorboard/`` and the progress bar (:func:`progress_bar`);
* the callbacks the stage gives it (:mod:`babydistill.train.callbacks`, kept by name; usually
  :func:`~babydistill.train.callbacks.standard_callbacks`): the evaluator (``EvalTracker``:
  eval loss on the fixed eval chunks at its own cadence, ``eval_every``, and the best
  checkpoint by it), the BLiMP learning curve (``BlimpCurve``, with ``blimp_every_epoch``
  and a suite: every trainable module scored before the first step and at each epoch end,
  ``blimp_acc`` rows in ``metrics.csv`` and ``OUT_DIR/blimp_curve.json``) and the stage's
  own. Only rank 0 writes files.

:meth:`Trainer.fit` reads top to bottom: an optimizer step, then the loss window is logged
and each component asked whether it is due (the evaluator, the checkpointer).

One run per folder: :func:`train` holds :func:`babydistill.common.exclusive` on the
checkpoint folder and the output for the whole run (a second trainer given either stops with
one line naming the first). Preemption: while training, SIGTERM or SIGUSR1 (what SLURM sends
before preempting or before the time limit, see workflow/profiles/slurm) stops the loop at
the next step boundary with ``last.pt`` written and :class:`Preempted` (one line, exit
status 143); a rerun logs ``resumed from step N of ...`` or ``no checkpoint: starting at
step 0``. ``best.pt`` becomes the model only when it is this run's (its identity).

Files: ``CHECKPOINT_DIR/last.pt`` (everything to resume), ``CHECKPOINT_DIR/best.pt`` (the
best weights, keep=best), ``CHECKPOINT_DIR/metrics.csv`` (grows as the run goes). At the
end ``OUT_DIR`` appears in one rename holding the model(s) (``objective.save``), the
tokenizer files, ``metrics.csv``, ``train_summary.json`` and, with the BLiMP curve on,
``blimp_curve.json``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from babydistill.train import checkpoint
from babydistill.train.callbacks import Callback, EvalTracker
from babydistill.train.checkpoint import Checkpointer, NamedStates, RNGState
from babydistill.common import UserError, atomic_path, exclusive, resolve_precision, write_json
from babydistill.train.metrics import METRICS_FIELDS, MetricsLogger, progress_bar, quiet_library_bars  # noqa: F401 (re-exported)
from babydistill.config.specs import TrainSpec, defaults

log = logging.getLogger("babydistill.train.trainer")

# The training keys' defaults, as workflow/schemas/config.schema.yaml gives them (the only
# place they are written); babydistill.config.specs.TrainSpec fills them in.
TRAIN_DEFAULTS: dict[str, Any] = defaults("train_spec")
# Keys that may change between a run and its resumption without changing the result.
_RESUME_FREE = {"stop_after_steps", "compile", "log_every", "checkpoint_every", "tensorboard",
                "eval_batch_size", "gpus", "blimp_every_epoch", "blimp_limit",
                "keep_checkpoints"}


def run_identity(spec, inputs: Iterable[str | os.PathLike] = (),
                 checkpoint_dir: str | os.PathLike | None = None) -> str:
    """A digest of what a run is: its whole CLI spec (a job spec of babydistill.config.specs or its
    JSON, less the keys that may change on resumption) and its inputs' contents (see
    :func:`babydistill.train.checkpoint.run_identity`), so that a checkpoint left by a run with
    other settings or other data is never resumed. With ``checkpoint_dir`` (the run's own),
    the inputs' digests are cached in its ``input_digests.json``."""
    spec = spec.to_json() if hasattr(spec, "to_json") else spec
    cache = Path(checkpoint_dir) / checkpoint.DIGEST_CACHE if checkpoint_dir else None
    return checkpoint.run_identity(spec, inputs, resume_free=_RESUME_FREE, cache=cache)


class TrainingStopped(Exception):
    """Raised by the ``stop_after_steps`` test hook: the run ends as if killed."""


class Preempted(UserError):
    """SIGTERM (or SIGUSR1) reached the trainer, which checkpointed at the next step
    boundary; exit status 143 (128 + SIGTERM), what SLURM and Snakemake see of a run that
    was stopped and can resume."""

    exit_code = 143


# What SLURM sends before a preemption or the time limit (workflow/profiles/slurm asks for
# SIGTERM 120 s ahead with --signal); SIGUSR1 is what other sites' profiles often ask for.
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


@contextlib.contextmanager
def _catch_preemption(flag: list):
    """While training, a preemption signal only sets ``flag`` (the loop checkpoints and
    stops at the next step boundary); the previous handlers come back afterwards. Only the
    main thread can install handlers: elsewhere signals keep their default action."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum, _frame):
        flag.append(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, note) for sig in PREEMPT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------- the spec

# Our schedule names -> transformers.get_scheduler's (constant keeps the warm-up).
HF_SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
SCHEDULES = tuple(HF_SCHEDULES)


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step schedule from ``transformers.get_scheduler`` (what the papers' HF
    Trainer runs used): linear warm-up from 0, then cosine / linear decay to 0 at
    ``total_steps``, or constant."""
    from transformers import get_scheduler

    return get_scheduler(HF_SCHEDULES[schedule], optimizer, num_warmup_steps=warmup_steps,
                         num_training_steps=total_steps)


@functools.lru_cache(maxsize=16)
def _schedule_lambda(schedule: str, warmup_steps: int, total_steps: int):
    probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return build_scheduler(probe, schedule, warmup_steps, total_steps).lr_lambdas[0]


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based), from the same
    ``get_scheduler`` lambda the optimizer follows (for metrics and the progress bar)."""
    return _schedule_lambda(schedule, warmup_steps, total_steps)(step)


# ---------------------------------------------------------------------------- objectives

class Objective:
    """What is trained and how the loss is computed; the loop does the rest.

    ``modules()`` are the trainable modules by name: optimised, checkpointed and passed
    (as state dicts) to ``save``. Frozen modules (teachers) stay out of it; override
    ``to`` to move them to the device too. Values in the ``logs`` dict may be floats or
    0-d tensors (converted only when a metrics row is written, to avoid GPU syncs).

    Under ``torchrun`` the trainer calls :meth:`wrap` once with a function that wraps a
    module in DistributedDataParallel: ``loss`` must then run its trainable modules'
    forward passes through the wrappers (DDP all-reduces the gradients during backward);
    ``modules()``, ``eval_loss`` and ``save`` keep using the bare modules.
    """

    def modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def prepare(self, batch: dict, step: int) -> dict:
        """The training batch as ``loss`` takes it, for optimizer step ``step`` (0-based),
        made on the CPU before it moves to the device (a masked LM's masks); as it is here."""
        return batch

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def eval_loss(self, batch: dict) -> dict[str, float]:
        raise NotImplementedError

    def score(self, eval_losses: dict[str, float]) -> float:
        """The number the best checkpoint is chosen by (lower is better): the mean."""
        return sum(eval_losses.values()) / len(eval_losses)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def on_step(self, step: int, trainer: "Trainer") -> None:
        pass

    def wrap(self, wrap: Callable[[torch.nn.Module], torch.nn.Module]) -> None:
        """Make ``loss`` call ``wrap(module)`` instead of each trainable module."""
        raise NotImplementedError(f"{type(self).__name__} cannot run data-parallel: it does "
                                  "not implement Objective.wrap")

    def to(self, device: torch.device) -> "Objective":
        for m in self.modules().values():
            m.to(device)
        return self

    def save(self, out_dir: Path, best: dict[str, dict]) -> None:
        raise NotImplementedError


class LMObjective(Objective):
    """Plain next-token cross-entropy for one causal LM (the HF model shifts the labels)."""

    def __init__(self, model: torch.nn.Module, name: str = "model"):
        self.model, self.name = model, name
        self.forward_model = model  # what loss() calls: the model, or its DDP wrapper

    def modules(self) -> dict[str, torch.nn.Module]:
        return {self.name: self.model}

    def wrap(self, wrap) -> None:
        self.forward_model = wrap(self.model)

    def _ce(self, batch: dict, model: torch.nn.Module) -> torch.Tensor:
        ids = batch["input_ids"]
        return model(input_ids=ids, labels=ids, use_cache=False).loss

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        return self._ce(batch, self.forward_model), {}

    @torch.no_grad()
    def eval_loss(self, batch: dict) -> dict[str, float]:
        return {self.name: self._ce(batch, self.model).item()}

    def save(self, out_dir: Path, best: dict[str, dict]) -> None:
        self.model.load_state_dict(best[self.name])
        self.model.save_pretrained(out_dir)


def copy_tokenizer(tokenizer_dir: str | os.PathLike | None, dest: str | os.PathLike) -> None:
    """Copy the tokenizer's files next to a saved model (objectives with sub-folders use it)."""
    if not tokenizer_dir:
        return
    src = Path(tokenizer_dir)
    if not src.is_dir():
        raise UserError(f"{src}: tokenizer directory not found; run the tokenizer stage first")
    from babydistill.data.tokenizer import copy_for_model

    copy_for_model(src, dest)  # model_max_length = the saved model's context


# ---------------------------------------------------------------------------- processes

class DistInfo:
    """This process's place under torchrun (WORLD_SIZE / RANK / LOCAL_RANK), or a lone one."""

    def __init__(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{self.local_rank}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self.owns_group = False
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
            self.owns_group = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too


def _param_groups(modules: Iterable[torch.nn.Module], weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings; not biases or norm weights (all 1-d)."""
    seen: set[int] = set()
    decay, no_decay = [], []
    for m in modules:
        for p in m.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------- the trainer

class _Position:
    """The trainer's data position and bookkeeping, as a checkpoint part."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer

    def state_dict(self) -> dict:
        t = self.trainer
        return {"step": t.step, "epoch": t.epoch, "batch": t.batch,
                "wall_time": t.wall_time + (time.time() - t._t_start), "precision": t.precision}

    def load_state_dict(self, s: dict) -> None:
        t = self.trainer
        t.step, t.epoch, t.batch = s["step"], s["epoch"], s["batch"]
        t.wall_time = s["wall_time"]
        # `auto` resolved on the machine that started the run: a resumption elsewhere (a CPU
        # without native bf16, a GPU) keeps it, so that one run is never half fp32, half bf16
        started = s.get("precision", t.precision)
        if started != t.precision:
            log.warning("resuming in %s, the precision this run started with (here %s resolves "
                        "to %s)", started, t.spec.precision, t.precision)
            t.set_precision(started)


def _by_name(callbacks: Iterable[Callback]) -> dict[str, Callback]:
    """The stage's callbacks keyed by their names (in the order given); names must be unique."""
    out: dict[str, Callback] = {}
    for cb in callbacks:
        if not cb.name or cb.name in out:
            raise ValueError(f"callback {type(cb).__name__}: name {cb.name!r} is "
                             f"{'taken' if cb.name else 'empty'}; each callback needs its own")
        out[cb.name] = cb
    return out


class Trainer:
    """Holds the run's state; :meth:`fit` is the loop. ``train()`` is the usual entry.

    Its parts: ``objective`` (modules and loss), ``optimizer`` and ``scheduler``,
    ``checkpointer`` (:class:`babydistill.train.checkpoint.Checkpointer` over every part's
    state dict), ``metrics`` (:class:`babydistill.train.metrics.MetricsLogger`: metrics.csv,
    TensorBoard, the progress bar) and ``callbacks`` (:mod:`babydistill.train.callbacks`),
    the stage's, by name; ``evaluator`` is the :class:`~babydistill.train.callbacks.EvalTracker`
    among them (None without one: no evaluation, no best checkpoint)."""

    def __init__(self, spec: TrainSpec | dict, objective: Objective, train_data, eval_data=None,
                 checkpoint_dir: str | os.PathLike | None = None,
                 identity: str | None = None, callbacks: Iterable[Callback] = ()):
        self.spec = TrainSpec.of(spec)
        self.identity = identity  # run_identity() of the caller's spec and inputs
        self.objective, self.train_data, self.eval_data = objective, train_data, eval_data
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.dist = DistInfo()
        self.device = self.dist.device
        s = self.spec
        per_rank, rest = divmod(s.batch_size, self.dist.world_size * s.grad_accum)
        if rest or per_rank == 0:
            raise UserError(f"train.batch_size: {s.batch_size} is not a multiple of "
                            f"processes ({self.dist.world_size}) x grad_accum ({s.grad_accum})")
        self.micro_batch = per_rank
        seed_everything(s.seed)

        objective.to(self.device)
        self.modules = objective.modules()
        self.params = [p for g in _param_groups(self.modules.values(), 0.0) for p in g["params"]]
        self.ddp: list[DistributedDataParallel] = []  # one per trainable module under torchrun
        if self.dist.world_size > 1:
            self._wrap_data_parallel()
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        groups = _param_groups(self.modules.values(), s.weight_decay)
        try:  # the fused kernel (CPU and CUDA): one pass over the weights, ~4x faster on CPU
            self.optimizer = torch.optim.AdamW(groups, lr=s.lr, betas=tuple(s.betas),
                                               eps=s.eps, fused=True)
        except RuntimeError:  # a device or dtype without the fused kernel
            self.optimizer = torch.optim.AdamW(groups, lr=s.lr, betas=tuple(s.betas),
                                               eps=s.eps)

        # Batches of each epoch (a curriculum's epochs grow as buckets are added).
        self.epoch_steps = [train_data.num_batches(s.batch_size, e) for e in range(s.epochs)]
        if min(self.epoch_steps) < 1:
            raise UserError(f"train data: fewer chunks than one batch of {s.batch_size} in "
                            f"epoch {self.epoch_steps.index(min(self.epoch_steps))}; "
                            "use more data or a smaller batch_size")
        self.steps_per_epoch = self.epoch_steps[0]
        self.total_steps = sum(self.epoch_steps)
        if s.max_steps:
            self.total_steps = min(self.total_steps, s.max_steps)
        self.scheduler = build_scheduler(self.optimizer, s.schedule, s.warmup_steps,
                                         self.total_steps)

        self.set_precision(resolve_precision(s.precision, self.device.type))
        if s.compile and cuda:
            for m in self.modules.values():
                m.compile()  # in place: state_dict keys and the objective's references unchanged

        # Position and bookkeeping (all restored on resume).
        self.step = 0          # optimizer steps done
        self.epoch = 0         # current epoch
        self.batch = 0         # batches of the current epoch already consumed
        self.wall_time = 0.0   # summed over resumptions
        self.tokens_per_step = 0
        self._window: list[torch.Tensor] = []
        self._window_logs: dict[str, Any] = {}
        self._signals: list[str] = []  # preemption signals received (see _catch_preemption)

        # The stage's callbacks, by name; the evaluator among them owns the eval cadence.
        self.callbacks = _by_name(callbacks)
        self.evaluator = next((cb for cb in self.callbacks.values()
                               if isinstance(cb, EvalTracker)), None)
        fields = METRICS_FIELDS + [f for cb in self.callbacks.values() for f in cb.metrics_fields]
        self.metrics = MetricsLogger(self.checkpoint_dir, fields, main=self.dist.main,
                                     tensorboard=s.tensorboard)
        self.checkpointer = self._make_checkpointer()

    def _wrap_data_parallel(self) -> None:
        """Wrap every trainable module in DistributedDataParallel; the objective's ``loss``
        calls the wrappers (:meth:`Objective.wrap`). DDP broadcasts rank 0's weights at
        construction (an identical start whatever each rank's init did) and averages the
        gradients during backward. Buffers are synced at construction only, not before
        each forward: evaluation shards may give the ranks different numbers of forward
        passes, and the buffers (rotary frequencies) never change."""
        device_ids = [self.device.index] if self.device.type == "cuda" else None

        def wrap(module: torch.nn.Module) -> torch.nn.Module:
            ddp = DistributedDataParallel(module, device_ids=device_ids,
                                          forward_sync_buffers=False)
            self.ddp.append(ddp)
            return ddp

        self.objective.wrap(wrap)
        wrapped = {id(d.module) for d in self.ddp}
        missing = [n for n, m in self.modules.items() if id(m) not in wrapped]
        if missing:
            raise UserError(f"{type(self.objective).__name__}.wrap left {', '.join(missing)} "
                            "unwrapped: its gradients would not be averaged over processes")

    def tokens_at(self, step: int) -> int:
        """Corpus tokens seen after ``step`` optimizer steps (a start token is not one)."""
        return step * self.spec.batch_size * self.train_data.stride

    def epoch_at(self, step: int) -> float:
        """Epochs done after ``step`` optimizer steps (fractional)."""
        for e, n in enumerate(self.epoch_steps):
            if step < n:
                return round(e + step / n, 4)
            step -= n
        return float(len(self.epoch_steps))

    def lr_at(self, step: int) -> float:
        """The (first param group's) lr optimizer step ``step`` (0-based) uses."""
        return self.spec.lr * lr_factor(max(step, 0), self.spec.schedule,
                                           self.spec.warmup_steps, self.total_steps)

    # -- one optimizer step -----------------------------------------------------------
    def _micro_batches(self, batch: dict) -> list[dict]:
        n = batch["input_ids"].shape[0]
        if n != self.micro_batch * self.spec.grad_accum:
            raise UserError(f"train data: got a batch of {n} rows on rank {self.dist.rank}, "
                            f"expected {self.micro_batch * self.spec.grad_accum}")
        out = [{} for _ in range(self.spec.grad_accum)]
        for k, v in batch.items():
            parts = (v.to(self.device, non_blocking=True).split(self.micro_batch)
                     if torch.is_tensor(v) else [v] * len(out))
            for d, part in zip(out, parts):
                d[k] = part
        return out

    def _no_sync(self, sync: bool):
        """DDP's ``no_sync`` on every wrapped module unless ``sync`` (the last micro batch
        all-reduces the accumulated gradients); nothing at all in a single process."""
        if sync or not self.ddp:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for d in self.ddp:
            stack.enter_context(d.no_sync())
        return stack

    def train_step(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Forward/backward over the micro batches (DDP syncs on the last), clip, step.
        Returns the mean loss (a 0-d tensor, not synced) and the objective's logs of the
        last micro batch."""
        micro = self._micro_batches(self.objective.prepare(batch, self.step))
        total = torch.zeros((), device=self.device)
        logs: dict = {}
        for i, mb in enumerate(micro):
            with self._no_sync(i == len(micro) - 1):
                with self.autocast():
                    loss, logs = self.objective.loss(mb)
                (loss / len(micro)).backward()
            total += loss.detach().float()
        if self.spec.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.spec.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_per_step = batch["input_ids"].numel() * self.dist.world_size
        self.objective.on_step(self.step, self)
        return total / len(micro), logs

    # -- eval ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean eval CE per module over the fixed eval chunks (all ranks share the work).
        A batch's loss weighs by its rows, or by the count an objective gives with it
        (``(mean, count)``: a masked LM's masked positions), so the result is the same
        whatever ``eval_batch_size``."""
        if self.eval_data is None:
            return {}
        bs = self.spec.eval_batch_size or self.spec.batch_size
        for m in self.modules.values():
            m.eval()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for batch in self.eval_data.batches(0, bs, rank=self.dist.rank,
                                            world_size=self.dist.world_size):
            batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            n = batch["input_ids"].shape[0]
            with self.autocast():
                losses = self.objective.eval_loss(batch)
            for k, v in losses.items():
                v, w = v if isinstance(v, tuple) else (v, n)
                sums[k] = sums.get(k, 0.0) + float(v) * w
                counts[k] = counts.get(k, 0) + w
        for m in self.modules.values():
            m.train()
        if self.dist.world_size > 1:
            parts: list = [None] * self.dist.world_size
            dist.all_gather_object(parts, (sums, counts))
            sums, counts = {}, {}
            for s, c in parts:
                for k, v in s.items():
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + c[k]
        return {k: v / counts[k] for k, v in sorted(sums.items()) if counts[k]}

    # -- checkpoints -----------------------------------------------------------------
    def set_precision(self, precision: str) -> None:
        """The forward's precision: ``bf16`` autocast (weights, optimizer state and losses stay
        fp32) or ``fp32``; the resolved one is in the checkpoint and ``train_summary.json``."""
        self.precision = precision
        self.autocast = (functools.partial(torch.autocast, self.device.type, dtype=torch.bfloat16)
                         if precision == "bf16" else contextlib.nullcontext)

    def _make_checkpointer(self) -> Checkpointer:
        """The parts a resumed run needs, each with ``state_dict``/``load_state_dict``."""
        barrier = dist.barrier if self.dist.world_size > 1 else None
        parts = {"modules": NamedStates(self.modules, "modules"), "optimizer": self.optimizer,
                 "scheduler": self.scheduler, "objective": self.objective, "rng": RNGState(),
                 "position": _Position(self),
                 "callbacks": NamedStates({n: c for n, c in self.callbacks.items() if c.stateful},
                                          "callbacks")}  # {name: state}
        return Checkpointer(self.checkpoint_dir, parts, spec=self.spec, identity=self.identity,
                            resume_free=_RESUME_FREE, every=self.spec.checkpoint_every,
                            main=self.dist.main, barrier=barrier)

    def save_best(self, loss: float) -> None:
        """``best.pt``: the current weights, the best so far by the evaluator's ``loss``."""
        self.checkpointer.save_weights({n: m.state_dict() for n, m in self.modules.items()},
                                       step=self.step, loss=loss)

    def resume(self) -> bool:
        """Load ``last.pt`` when it is this run's (every rank reads it). Returns whether it did."""
        if not self.checkpointer.restore(unusable=self._unusable):
            if self.checkpoint_dir and self.dist.main:
                log.info("no checkpoint: starting at step 0 (%s)", self.checkpoint_dir)
            return False
        log.info("resumed from step %d of %s (epoch %d, batch %d)", self.step,
                 self.checkpointer.path("last.pt"), self.epoch, self.batch)
        return True

    def _unusable(self, ck: dict) -> str | None:
        """Why this run's ``last.pt`` cannot finish the run: it is the last step's, the model is
        best.pt's (keep: best) and ``keep_checkpoints: last`` removed best.pt after the run
        wrote its model; resuming would export the last weights as the best."""
        if (ck["position"]["step"] >= self.total_steps and self.spec.keep == "best"
                and self.evaluator is not None and not self.checkpointer.path("best.pt").is_file()):
            return ("it is the finished run's and its best.pt was removed (keep_checkpoints: "
                    "last), which keep: best exports")
        return None

    def _kept(self) -> str:
        """What the checkpoint folder holds now, for a run that stops (divergence)."""
        found = []
        for name in ("last.pt", "best.pt"):
            path = self.checkpointer.path(name)
            if path.is_file():
                try:
                    ck = checkpoint.load_file(path)
                except UserError:
                    found.append(f"{name} (unreadable)")
                    continue
                step = (ck.get("position") or {}).get("step", ck.get("step"))
                found.append(f"{name} (step {step})")
        if not found:
            return (f"{self.checkpoint_dir} holds no checkpoint yet (it diverged before the "
                    "first one): a rerun starts at step 0")
        return f"the last good checkpoint is kept in {self.checkpoint_dir}: {', '.join(found)}"

    # -- the loop --------------------------------------------------------------------
    def _log_window(self) -> None:
        """Check the steps since the last call for NaN/inf, then log their mean loss."""
        if not self._window:
            return
        losses = torch.stack(self._window)
        if self.dist.world_size > 1:  # every rank stops at the same step
            dist.all_reduce(losses)
            losses /= self.dist.world_size
        losses = losses.cpu()
        first = self.step - len(self._window) + 1
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            i = int(bad[0])
            where = f"; {self._kept()}" if self.checkpoint_dir else ""
            raise UserError(f"training diverged: loss is {losses[i].item()} at step {first + i}"
                            f" (epoch {self.epoch}); lower lr or check the data{where}")
        now = time.time()
        tps = self.tokens_per_step * len(self._window) / max(now - self._t_window, 1e-9)
        loss = float(losses.mean())
        lr = self.lr_at(self.step - 1)
        logs = {k: float(v) for k, v in self._window_logs.items()}
        self.metrics.row(step=self.step, epoch=self.epoch_at(self.step), loss=loss,
                         lr=lr, tokens_per_s=round(tps, 1), eval_loss="",
                         logs=json.dumps(logs) if logs else "")
        self.metrics.progress(len(self._window), loss=loss, tokens_per_s=tps, lr=lr)
        self._window = []
        self._t_window = now

    def fit(self) -> dict:
        """Resume when this run's checkpoint is there, train to ``total_steps``, return the
        summary. Each step: the optimizer step, then each component asked whether it is due
        (:meth:`_after_step`)."""
        self._t_start = time.time()
        resumed = self.resume()
        self.metrics.open(self.step, self.total_steps, resumed)
        try:
            with _catch_preemption(self._signals):  # a signal now stops at the next step
                for cb in self.callbacks.values():
                    cb.on_train_start(self, resumed)
                self._t_window = time.time()
                while self.step < self.total_steps:
                    self._run_epoch()
        finally:
            self.metrics.close()
        self.wall_time += time.time() - self._t_start
        summary = self._summary()
        for cb in self.callbacks.values():
            cb.on_train_end(self, summary)
        return summary

    def _run_epoch(self) -> None:
        """The rest of the current epoch (or of the run, when it ends mid-epoch)."""
        consumed = False
        for batch in self.train_data.batches(self.epoch, self.spec.batch_size, self.batch,
                                             rank=self.dist.rank,
                                             world_size=self.dist.world_size):
            consumed = True
            loss, self._window_logs = self.train_step(batch)
            self._window.append(loss)
            self.batch += 1
            epoch_end = self.batch >= self.epoch_steps[self.epoch]
            if epoch_end:
                self.epoch, self.batch = self.epoch + 1, 0
            self._after_step(epoch_end)
            if epoch_end or self.step >= self.total_steps:
                return
        if not consumed:
            raise UserError(f"train data: epoch {self.epoch} yielded no batch from "
                            f"batch {self.batch} (num_batches says {self.epoch_steps[self.epoch]})")

    def _after_step(self, epoch_end: bool) -> None:
        """Log, evaluate and checkpoint when each is due, in that order: the loss window
        (checked for NaN before anything is saved), the callbacks (the evaluator's points
        from :meth:`EvalTracker.due`), epoch-end callbacks (before the checkpoint, which
        holds their state), then ``last.pt`` (:meth:`Checkpointer.due`)."""
        s, last = self.spec, self.step >= self.total_steps
        evaluate = bool(self.evaluator and self.evaluator.due(self.step, epoch_end=epoch_end,
                                                               last=last))
        save = self.checkpointer.due(self.step, epoch_end=epoch_end, last=last)
        if self.step % s.log_every == 0 or evaluate or save:
            self._log_window()
        for cb in self.callbacks.values():
            cb.on_step_end(self, evaluate)
        if epoch_end or last:
            for cb in self.callbacks.values():
                cb.on_epoch_end(self)
        if save:
            self.checkpointer.save()
        if evaluate or save:
            self._t_window = time.time()  # eval/save time is not training time
        if self._preempted() and not last:
            self._stop_preempted(save)
        if s.stop_after_steps and self.step >= s.stop_after_steps:
            raise TrainingStopped(f"stopped after step {self.step} (test hook)")

    def _preempted(self) -> bool:
        """Whether a preemption signal arrived (on any rank: all stop at the same step)."""
        if self.dist.world_size == 1:
            return bool(self._signals)
        flag = torch.tensor([float(bool(self._signals))], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _stop_preempted(self, saved: bool) -> None:
        """Checkpoint this step (unless just done) and stop with one line (exit 143)."""
        if not self.checkpoint_dir:
            raise Preempted(f"{'/'.join(self._signals) or 'a signal'} at step {self.step}: "
                            "stopped; no --checkpoint-dir, so a rerun starts at step 0")
        if not saved:
            self._log_window()
            self.checkpointer.save()
        raise Preempted(f"{'/'.join(self._signals) or 'SIGTERM on another rank'} at step "
                        f"{self.step} of {self.total_steps}: checkpointed to "
                        f"{self.checkpointer.path('last.pt')}; run again to resume from "
                        f"step {self.step}")

    def _summary(self) -> dict:
        s = self.spec
        return {
            "steps": self.step,
            "epochs": self.epoch_at(self.step),
            "tokens": self.tokens_at(self.step),
            "batch_size": s.batch_size,
            "world_size": self.dist.world_size,
            **(self.evaluator or EvalTracker()).summary(),  # best_eval_loss, best_step, final_eval
            "keep": s.keep,
            "precision": self.precision,
            "wall_time_s": round(self.wall_time, 2),
            "parameters": {n: sum(p.numel() for p in m.parameters())
                           for n, m in self.modules.items()},
        }

    @torch.no_grad()
    def rank_checksums(self) -> list[float]:
        """A checksum of the weights from every rank; they must agree, else one-line error."""
        mine = sum(float(p.double().sum() + p.double().square().sum()) for p in self.params)
        sums: list = [None] * self.dist.world_size
        dist.all_gather_object(sums, mine)
        if len(set(sums)) > 1:
            raise UserError(f"data-parallel ranks ended with different weights {sums}; "
                            "this is a bug, please report it")
        return sums

    def final_states(self) -> dict[str, dict]:
        """The weights that become the final model: best.pt's (keep=best) or the current."""
        best = self.checkpointer.load_weights() if self.spec.keep == "best" else None
        if best is not None:
            return best
        return {n: m.state_dict() for n, m in self.modules.items()}


def train(spec: TrainSpec | dict, objective: Objective, train_data, eval_data, out_dir,
          checkpoint_dir, tokenizer_dir=None, extra_summary: dict | None = None,
          identity: str | None = None, callbacks: Iterable[Callback] = ()) -> dict | None:
    """Train ``objective`` on ``train_data``; resume from ``checkpoint_dir/last.pt`` when
    present; write ``out_dir`` atomically at the end (rank 0). Returns the summary.
    ``identity``: :func:`run_identity` of the run; a checkpoint with another is not resumed.
    ``callbacks``: the stage's :class:`babydistill.train.callbacks.Callback` s, called in
    this order (usually :func:`babydistill.train.callbacks.standard_callbacks` first: the
    evaluator and the BLiMP curve; without an evaluator nothing is evaluated)."""
    with contextlib.ExitStack() as locks:
        if int(os.environ.get("RANK", "0")) == 0:  # one lock per run, held by rank 0
            # a second trainer on this checkpoint folder or output (an orphaned job and its
            # rerun, two runs given one --checkpoint-dir) stops here with one line
            for folder in (checkpoint_dir, out_dir):
                if folder:
                    locks.enter_context(exclusive(folder, "run's checkpoint folder"
                                                  if folder == checkpoint_dir else "model"))
        return _train(spec, objective, train_data, eval_data, out_dir, checkpoint_dir,
                      tokenizer_dir, extra_summary, identity, callbacks)


def _train(spec, objective, train_data, eval_data, out_dir, checkpoint_dir, tokenizer_dir,
           extra_summary, identity, callbacks) -> dict | None:
    """:func:`train` under its locks."""
    trainer = Trainer(spec, objective, train_data, eval_data, checkpoint_dir, identity=identity,
                      callbacks=callbacks)
    try:
        summary = {**(extra_summary or {}), **trainer.fit()}
        if trainer.dist.world_size > 1:
            summary["rank_checksums"] = trainer.rank_checksums()
        if trainer.dist.main:
            best = trainer.final_states()
            with atomic_path(out_dir) as tmp:
                tmp.mkdir()
                objective.save(tmp, best)
                copy_tokenizer(tokenizer_dir, tmp)
                if trainer.metrics.path and trainer.metrics.path.is_file():
                    shutil.copy2(trainer.metrics.path, tmp / "metrics.csv")
                write_json(tmp / "train_summary.json", summary)
                for cb in trainer.callbacks.values():
                    cb.save(tmp)
            log.info("wrote %s (%d steps, best eval loss %s)", out_dir, summary["steps"],
                     summary["best_eval_loss"])
        if trainer.dist.world_size > 1:
            dist.barrier()
        return summary
    finally:
        trainer.dist.close()


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "train.trainer", "python -m babydistill.train.pretrain and python -m babydistill.distill.student")
