"""The one training loop: pretraining and every distillation variant (nanoGPT style).

What a run is made of:

* an :class:`Objective` -- the trainable modules and the loss. :class:`LMObjective` is
  plain next-token cross-entropy for one model (pretraining); the distillation objectives
  subclass :class:`Objective` elsewhere.
* a train spec: a :class:`babydistill.specs.TrainSpec` (the merged ``training:`` keys,
  checked and completed from the schema's defaults; a mapping is parsed into one).
* data with the :mod:`babydistill.data` API (``batches(epoch, batch_size, start_batch,
  rank=, world_size=)``, ``num_batches(batch_size, epoch)``; an epoch's batch count may
  change with the epoch -- a curriculum opens more data as it goes).

:func:`train` owns everything else: fused AdamW (weight decay on matrices and embeddings
only, never on biases or norm weights -- the HF Trainer convention the papers used), grad
clipping, a per-step warm-up + cosine/linear/constant schedule (transformers.get_scheduler), global
``batch_size`` split into ``world_size * grad_accum`` micro batches, bf16 autocast and
optional ``torch.compile`` on CUDA, data parallelism under ``torchrun`` (gradients are
all-reduced explicitly after the last micro batch -- DDP's semantics without wrapping the
modules, so an objective calls its models directly; gloo on CPU, nccl on CUDA), eval loss
on the fixed eval chunks, the best checkpoint by eval loss, atomic checkpoints that resume
bit-for-bit (a :class:`babydistill.checkpoint.Checkpointer` over the parts: model(s),
optimizer, scheduler, objective, RNG states, data position and best-so-far; loaded without
unpickling code, checksummed, and moved aside, never resumed, when another run wrote
them), a NaN/inf stop naming the step, a progress bar (see :func:`progress_bar`),
``metrics.csv`` and TensorBoard event files in ``CHECKPOINT_DIR/tensorboard/``. Only rank 0
writes files.

BLiMP learning curves: with ``blimp_every_epoch: true`` and a suite directory
(``train(..., blimp_suite=DIR)``), rank 0 scores every trainable module with the fast
scorer (:mod:`babydistill.scorer`, first ``blimp_limit`` pairs per paradigm) before the
first step and at each epoch end (and at the last step), writing a ``blimp_acc`` row to
``metrics.csv`` (the modules' mean macro accuracy; each module's in ``logs``) and the
points to ``OUT_DIR/blimp_curve.json``. The points live in the checkpoint, so a resumed
run writes the same curve and the same metrics rows.

Files: ``CHECKPOINT_DIR/last.pt`` (everything to resume), ``CHECKPOINT_DIR/best.pt`` (the
best weights, keep=best), ``CHECKPOINT_DIR/metrics.csv`` (grows as the run goes). At the
end ``OUT_DIR`` appears in one rename holding the model(s) (``objective.save``), the
tokenizer files, ``metrics.csv``, ``train_summary.json`` and, with the BLiMP curve on,
``blimp_curve.json``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from . import checkpoint
from .checkpoint import Checkpointer, ModulesState, RNGState
from .common import UserError, atomic_path, write_json
from .specs import TrainSpec, defaults

log = logging.getLogger("babydistill.train")

# The training keys' defaults, as workflow/schemas/config.schema.yaml gives them (the only
# place they are written); babydistill.specs.TrainSpec fills them in.
TRAIN_DEFAULTS: dict[str, Any] = defaults("train_spec")
# Keys that may change between a run and its resumption without changing the result.
_RESUME_FREE = {"stop_after_steps", "compile", "log_every", "checkpoint_every", "tensorboard",
                "eval_batch_size", "gpus", "blimp_every_epoch", "blimp_limit"}
METRICS_FIELDS = ["step", "epoch", "loss", "lr", "tokens_per_s", "eval_loss", "logs"]


def run_identity(spec, inputs: Iterable[str | os.PathLike] = ()) -> str:
    """A digest of what a run is: its whole CLI spec (a job spec of babydistill.specs or its
    JSON, less the keys that may change on resumption) and its inputs' contents (see
    :func:`babydistill.checkpoint.run_identity`), so that a checkpoint left by a run with
    other settings or other data is never resumed."""
    spec = spec.to_json() if hasattr(spec, "to_json") else spec
    return checkpoint.run_identity(spec, inputs, resume_free=_RESUME_FREE)


class TrainingStopped(Exception):
    """Raised by the ``stop_after_steps`` test hook: the run ends as if killed."""


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


class _LineWriter:
    """A file for tqdm when stderr is a log file: each redraw becomes one plain line
    instead of a carriage-return overwrite, so a log holds readable lines only."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def quiet_library_bars() -> None:
    """Turn off the progress bars of transformers, datasets and the hub ("Writing model
    shards", "Map", ...): in a log file each is a run of carriage-return redraws."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # only fine-tuning needs datasets
        pass


def progress_bar(total: int, desc: str | None = None, initial: int = 0, disable: bool = False,
                 unit: str = "step") -> tqdm:
    """A tqdm bar on stderr: live on a terminal; in a log file a plain line at most every
    30 s (and at the start and end). Set postfixes with ``refresh=False`` -- a refreshing
    ``set_postfix`` redraws on every call whatever ``mininterval`` says."""
    tty = sys.stderr.isatty()
    if not tty:
        quiet_library_bars()
    if tty:
        return tqdm(total=total, desc=desc, initial=initial, unit=unit, disable=disable,
                    file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    # miniters=1 turns off tqdm's monitor thread refreshes (it only touches dynamic miniters)
    return tqdm(total=total, desc=desc, initial=initial, unit=unit, disable=disable,
                file=_LineWriter(sys.stderr), ncols=100, ascii=True, mininterval=30, miniters=1)


# ---------------------------------------------------------------------------- objectives

class Objective:
    """What is trained and how the loss is computed; the loop does the rest.

    ``modules()`` are the trainable modules by name: optimised, checkpointed and passed
    (as state dicts) to ``save``. Frozen modules (teachers) stay out of it; override
    ``to`` to move them to the device too. Values in the ``logs`` dict may be floats or
    0-d tensors (converted only when a metrics row is written, to avoid GPU syncs).
    """

    def modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

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

    def modules(self) -> dict[str, torch.nn.Module]:
        return {self.name: self.model}

    def _ce(self, batch: dict) -> torch.Tensor:
        ids = batch["input_ids"]
        return self.model(input_ids=ids, labels=ids, use_cache=False).loss

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        return self._ce(batch), {}

    @torch.no_grad()
    def eval_loss(self, batch: dict) -> dict[str, float]:
        return {self.name: self._ce(batch).item()}

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
    from .tokenizer import copy_for_model

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
                "best": {"loss": t.best_loss, "step": t.best_step},
                "last_eval": t.last_eval,
                "wall_time": t.wall_time + (time.time() - t._t_start),
                "blimp": {"points": t.blimp_points, "seconds": t.blimp_seconds}}

    def load_state_dict(self, s: dict) -> None:
        t = self.trainer
        t.step, t.epoch, t.batch = s["step"], s["epoch"], s["batch"]
        t.best_loss, t.best_step = s["best"]["loss"], s["best"]["step"]
        t.last_eval, t.wall_time = s["last_eval"], s["wall_time"]
        t.blimp_points = [p for p in s["blimp"]["points"] if p["step"] <= t.step]
        t.blimp_seconds = s["blimp"]["seconds"]


class Trainer:
    """Holds the run's state; :meth:`fit` is the loop. ``train()`` is the usual entry."""

    def __init__(self, spec: TrainSpec | dict, objective: Objective, train_data, eval_data=None,
                 checkpoint_dir: str | os.PathLike | None = None,
                 blimp_suite: str | os.PathLike | None = None,
                 tokenizer_dir: str | os.PathLike | None = None,
                 identity: str | None = None):
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
        if self.dist.world_size > 1:
            for p in self.params:  # identical start on every rank whatever the init did
                dist.broadcast(p.data, src=0)
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

        bf16 = s.precision == "bf16" or (s.precision == "auto" and cuda)
        self.autocast = (functools.partial(torch.autocast, self.device.type, dtype=torch.bfloat16)
                         if bf16 else contextlib.nullcontext)
        if s.compile and cuda:
            for m in self.modules.values():
                m.compile()  # in place: state_dict keys and the objective's references unchanged

        # Position and bookkeeping (all restored on resume).
        self.step = 0          # optimizer steps done
        self.epoch = 0         # current epoch
        self.batch = 0         # batches of the current epoch already consumed
        self.best_loss = math.inf
        self.best_step = -1
        self.last_eval: dict[str, float] = {}
        self.wall_time = 0.0   # summed over resumptions
        self.tokens_per_step = 0
        self.metrics_fields = METRICS_FIELDS
        self._window: list[torch.Tensor] = []
        self._window_logs: dict[str, Any] = {}
        self._setup_blimp(blimp_suite, tokenizer_dir)
        self.checkpointer = self._make_checkpointer()

    def _setup_blimp(self, suite, tokenizer_dir) -> None:
        """Load the suite and tokenizer once (rank 0) when the per-epoch curve is on."""
        self.blimp_points: list[dict] = []  # restored on resume
        self.blimp_suite: Path | None = None
        self.blimp_seconds = 0.0
        on = self.spec.blimp_every_epoch
        if not (on and suite):
            if on:
                log.warning("train.blimp_every_epoch is true but no BLiMP suite was given "
                            "(--blimp-suite DIR): no per-epoch curve")
            return
        self.blimp_suite = Path(suite)
        self.metrics_fields = METRICS_FIELDS + ["blimp_acc"]
        if not self.dist.main:  # only rank 0 scores
            return
        if not tokenizer_dir:
            raise UserError("train.blimp_every_epoch: the BLiMP curve needs the tokenizer "
                            "directory (--tokenizer DIR)")
        from .scorer import load_suite
        from .tokenizer import load_tokenizer

        self._blimp_paradigms = load_suite(self.blimp_suite, self.spec.blimp_limit)
        self._blimp_tokenizer = load_tokenizer(tokenizer_dir)

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

    def _sync_grads(self) -> None:
        """Average gradients over ranks: one flat all-reduce per bucket (DDP without overlap)."""
        world = self.dist.world_size
        if world == 1:
            return
        grads = []
        for p in self.params:
            if p.grad is None:  # a module unused this step still takes part in the reduce
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        bucket, size, limit = [], 0, 2**25
        for i, g in enumerate(grads):
            bucket.append(g)
            size += g.numel()
            if size >= limit or i == len(grads) - 1 or grads[i + 1].dtype != g.dtype:
                flat = torch.cat([b.reshape(-1) for b in bucket])
                dist.all_reduce(flat)
                flat /= world
                for b, f in zip(bucket, torch._utils._unflatten_dense_tensors(flat, bucket)):
                    b.copy_(f)
                bucket, size = [], 0

    def train_step(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Forward/backward over the micro batches, sync, clip, step. Returns the mean loss
        (a 0-d tensor, not synced) and the objective's logs of the last micro batch."""
        micro = self._micro_batches(batch)
        total = torch.zeros((), device=self.device)
        logs: dict = {}
        for mb in micro:
            with self.autocast():
                loss, logs = self.objective.loss(mb)
            (loss / len(micro)).backward()
            total += loss.detach().float()
        self._sync_grads()
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
        """Mean eval CE per module over the fixed eval chunks (all ranks share the work)."""
        if self.eval_data is None:
            return {}
        bs = self.spec.eval_batch_size or self.spec.batch_size
        for m in self.modules.values():
            m.eval()
        sums: dict[str, float] = {}
        rows = 0
        for batch in self.eval_data.batches(0, bs, rank=self.dist.rank,
                                            world_size=self.dist.world_size):
            batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            n = batch["input_ids"].shape[0]
            with self.autocast():
                losses = self.objective.eval_loss(batch)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            rows += n
        for m in self.modules.values():
            m.train()
        if self.dist.world_size > 1:
            parts: list = [None] * self.dist.world_size
            dist.all_gather_object(parts, (sums, rows))
            sums, rows = {}, 0
            for s, r in parts:
                for k, v in s.items():
                    sums[k] = sums.get(k, 0.0) + v
                rows += r
        return {k: v / rows for k, v in sorted(sums.items())} if rows else {}

    # -- checkpoints -----------------------------------------------------------------
    def _ckpt(self, name: str) -> Path:
        return self.checkpoint_dir / name

    def _make_checkpointer(self) -> Checkpointer:
        """The parts a resumed run needs, each with ``state_dict``/``load_state_dict``."""
        barrier = dist.barrier if self.dist.world_size > 1 else None
        return Checkpointer(
            self.checkpoint_dir,
            {"modules": ModulesState(self.modules), "optimizer": self.optimizer,
             "scheduler": self.scheduler, "objective": self.objective, "rng": RNGState(),
             "position": _Position(self)},
            spec=self.spec, identity=self.identity, resume_free=_RESUME_FREE,
            main=self.dist.main, barrier=barrier)

    def save_checkpoint(self) -> None:
        self.checkpointer.save()

    def save_best(self) -> None:
        self.checkpointer.save_weights({n: m.state_dict() for n, m in self.modules.items()},
                                       step=self.step, loss=self.best_loss)

    def resume(self) -> bool:
        """Load ``last.pt`` when it is this run's (every rank reads it). Returns whether it did."""
        if not self.checkpointer.restore():
            return False
        log.info("resumed from %s at step %d (epoch %d, batch %d)", self._ckpt("last.pt"),
                 self.step, self.epoch, self.batch)
        return True

    # -- metrics ---------------------------------------------------------------------
    def _open_metrics(self, resumed: bool) -> None:
        """metrics.csv in the checkpoint dir; on resume, rows past the checkpoint go."""
        self._metrics = None
        self._tb = None
        if not (self.dist.main and self.checkpoint_dir):
            return
        path = self._ckpt("metrics.csv")
        fields = self.metrics_fields
        rows = []
        if resumed and path.is_file():
            with path.open(newline="") as f:  # only this run's columns (blimp may be toggled)
                rows = [{k: r.get(k) or "" for k in fields} for r in csv.DictReader(f)
                        if int(r["step"]) <= self.step]
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fields)
            w.writeheader()
            w.writerows(rows)
        self._metrics = path.open("a", newline="")
        self._metrics_writer = csv.DictWriter(self._metrics, fields)
        if self.spec.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter:
                self._tb = SummaryWriter(str(self._ckpt("tensorboard")), purge_step=self.step + 1)

    def _row(self, **row) -> None:
        if self._metrics:
            self._metrics_writer.writerow(row)
            self._metrics.flush()
        if self._tb:
            for k in ("loss", "lr", "tokens_per_s", "eval_loss", "blimp_acc"):
                if isinstance(row.get(k), float):
                    self._tb.add_scalar(k, row[k], row["step"])

    def _flush(self, bar: tqdm) -> None:
        """Check the steps since the last flush for NaN/inf, then log their mean loss."""
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
            where = (f"; the last good checkpoint is kept in {self.checkpoint_dir}"
                     if self.checkpoint_dir else "")
            raise UserError(f"training diverged: loss is {losses[i].item()} at step {first + i}"
                            f" (epoch {self.epoch}); lower lr or check the data{where}")
        now = time.time()
        tps = self.tokens_per_step * len(self._window) / max(now - self._t_window, 1e-9)
        loss = float(losses.mean())
        lr = self.lr_at(self.step - 1)
        logs = {k: float(v) for k, v in self._window_logs.items()}
        self._row(step=self.step, epoch=self.epoch_at(self.step), loss=loss,
                  lr=lr, tokens_per_s=round(tps, 1), eval_loss="",
                  logs=json.dumps(logs) if logs else "")
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}", lr=f"{lr:.2e}", refresh=False)
        bar.update(len(self._window))
        self._window = []
        self._t_window = now

    def _eval_and_track(self) -> None:
        evals = self.evaluate()
        if not evals:
            return
        self.last_eval = evals
        score = self.objective.score(evals)
        self._row(step=self.step, epoch=self.epoch_at(self.step), loss="",
                  lr=self.lr_at(self.step - 1), tokens_per_s="", eval_loss=score,
                  logs=json.dumps(evals))
        if self.dist.main:
            log.info("step %d: eval loss %s", self.step,
                     ", ".join(f"{k} {v:.4f}" for k, v in evals.items()))
        if score < self.best_loss:
            self.best_loss, self.best_step = score, self.step
            if self.spec.keep == "best":
                self.save_best()

    def _blimp_and_track(self) -> None:
        """Score every trainable module on the BLiMP suite (rank 0 only): curve points and
        one metrics row whose ``blimp_acc`` is the modules' mean macro accuracy."""
        if self.blimp_suite is None or not self.dist.main:
            return
        from .scorer import score_suite

        t0 = time.time()
        epoch = self.epoch_at(self.step)
        accs = {}
        # Eager even under torch.compile: the scorer's varying batch shapes would recompile.
        eager = (torch.compiler.set_stance("force_eager") if self.spec.compile
                 else contextlib.nullcontext())
        with eager:
            for name, module in self.modules.items():
                summary, _ = score_suite(module, self._blimp_tokenizer, self._blimp_paradigms)
                accs[name] = summary["accuracy"]
                self.blimp_points.append({"step": self.step, "epoch": epoch, "module": name,
                                          "accuracy": summary["accuracy"],
                                          "categories": summary["categories"]})
        dt = time.time() - t0
        self.blimp_seconds += dt
        self._row(step=self.step, epoch=epoch, loss="", lr=self.lr_at(self.step - 1),
                  tokens_per_s="", eval_loss="", logs=json.dumps(accs),
                  blimp_acc=sum(accs.values()) / len(accs))
        log.info("step %d: BLiMP %s (%.1f s)", self.step,
                 ", ".join(f"{k} {v:.4f}" for k, v in accs.items()), dt)

    # -- the loop --------------------------------------------------------------------
    def fit(self) -> dict:
        self._t_start = time.time()
        resumed = self.resume()
        self._open_metrics(resumed)
        s = self.spec
        bar = progress_bar(self.total_steps, initial=self.step, disable=not self.dist.main)
        try:
            if not resumed:
                self._blimp_and_track()  # the curve's start: the untrained model(s)
            self._t_window = time.time()
            while self.step < self.total_steps:
                consumed = False
                for batch in self.train_data.batches(self.epoch, s.batch_size, self.batch,
                                                     rank=self.dist.rank,
                                                     world_size=self.dist.world_size):
                    consumed = True
                    loss, logs = self.train_step(batch)
                    self._window.append(loss)
                    self._window_logs = logs
                    self.batch += 1
                    epoch_end = self.batch >= self.epoch_steps[self.epoch]
                    if epoch_end:
                        self.epoch, self.batch = self.epoch + 1, 0
                    last = self.step >= self.total_steps
                    do_eval = last or (s.eval_every and self.step % s.eval_every == 0) \
                        or (epoch_end and not s.eval_every)
                    do_ckpt = last or epoch_end or \
                        (s.checkpoint_every and self.step % s.checkpoint_every == 0)
                    if self.step % s.log_every == 0 or do_eval or do_ckpt:
                        self._flush(bar)  # NaN check before anything is saved
                    if do_eval:
                        self._eval_and_track()
                    if epoch_end or last:  # before the checkpoint, which holds the points
                        self._blimp_and_track()
                    if do_ckpt:
                        self.save_checkpoint()
                    if do_eval or do_ckpt:
                        self._t_window = time.time()  # eval/save time is not training time
                    if s.stop_after_steps and self.step >= s.stop_after_steps:
                        raise TrainingStopped(f"stopped after step {self.step} (test hook)")
                    if epoch_end or last:
                        break
                if not consumed:
                    raise UserError(f"train data: epoch {self.epoch} yielded no batch from "
                                    f"batch {self.batch} (num_batches says {self.epoch_steps[self.epoch]})")
        finally:
            bar.close()
            if self._metrics:
                self._metrics.close()
            if self._tb:
                self._tb.close()
        self.wall_time += time.time() - self._t_start
        return {
            "steps": self.step,
            "epochs": self.epoch_at(self.step),
            "tokens": self.step * s.batch_size * self.train_data.seq_length,
            "batch_size": s.batch_size,
            "world_size": self.dist.world_size,
            "best_eval_loss": self.best_loss if math.isfinite(self.best_loss) else None,
            "best_step": self.best_step,
            "final_eval": self.last_eval,
            "keep": s.keep,
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
          blimp_suite: str | os.PathLike | None = None, identity: str | None = None) -> dict | None:
    """Train ``objective`` on ``train_data``; resume from ``checkpoint_dir/last.pt`` when
    present; write ``out_dir`` atomically at the end (rank 0). Returns the summary.
    ``blimp_suite``: a BLiMP-format suite directory for the per-epoch curve (used only when
    ``spec.blimp_every_epoch``; the tokenizer comes from ``tokenizer_dir``).
    ``identity``: :func:`run_identity` of the run; a checkpoint with another is not resumed."""
    trainer = Trainer(spec, objective, train_data, eval_data, checkpoint_dir,
                      blimp_suite=blimp_suite, tokenizer_dir=tokenizer_dir, identity=identity)
    try:
        summary = trainer.fit()
        summary = {**(extra_summary or {}), **summary}
        if trainer.blimp_suite is not None:
            summary["blimp_eval_s"] = round(trainer.blimp_seconds, 2)
        if trainer.dist.world_size > 1:
            summary["rank_checksums"] = trainer.rank_checksums()
        if trainer.dist.main:
            best = trainer.final_states()
            with atomic_path(out_dir) as tmp:
                tmp.mkdir()
                objective.save(tmp, best)
                copy_tokenizer(tokenizer_dir, tmp)
                if checkpoint_dir and (Path(checkpoint_dir) / "metrics.csv").is_file():
                    shutil.copy2(Path(checkpoint_dir) / "metrics.csv", tmp / "metrics.csv")
                write_json(tmp / "train_summary.json", summary)
                if trainer.blimp_points:
                    write_json(tmp / "blimp_curve.json",
                               {"suite": trainer.blimp_suite.name,
                                "limit": trainer.spec.blimp_limit,
                                "points": trainer.blimp_points})
            log.info("wrote %s (%d steps, best eval loss %s)", out_dir, summary["steps"],
                     summary["best_eval_loss"])
        if trainer.dist.world_size > 1:
            dist.barrier()
        return summary
    finally:
        trainer.dist.close()


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "train", "python -m babydistill.pretrain and python -m babydistill.distill")
