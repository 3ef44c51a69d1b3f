"""Checkpoints that are never lost and never trusted blindly; what a run's inputs are.

:class:`Checkpointer` (torchtitan's pattern): a run registers its *parts* -- anything with
``state_dict()`` / ``load_state_dict()`` (the model(s), the optimizer, the LR scheduler,
the objective, the RNG states, the trainer's data position and bookkeeping, the callbacks
by name) -- and the checkpointer saves them together in one file and restores them all. It
also owns its cadence (:meth:`Checkpointer.due`) and:

* **Safe loading.** Every file is read with ``torch.load(weights_only=True)``: only
  tensors and plain Python values (dict, list, tuple, str, int, float, bool, None) come
  back, never code. Parts must therefore hold only those (checked at save time, so a bad
  part fails when it is written, not when a resumed run reads it). A file that needs
  anything else -- a crafted pickle, a checkpoint of another program -- is refused with
  one line.
* **Checksums.** Each file stores the SHA-256 of its content (every tensor's bytes and
  every plain value, see :func:`state_digest`); a file whose content no longer matches
  (a disk error, an edit) is refused with one line that says how to start over.
* **Run identity.** Each file records :func:`run_identity` of the run that wrote it; a
  run with another identity never resumes it: the stale files are *moved aside* to
  ``CHECKPOINT_DIR/stale-<UTC time>/`` with a warning saying where, never deleted.

:func:`run_identity` digests a run's spec and its input files' *contents* (not their
modification times, so ``touch`` or a copy without timestamps changes nothing). The
digests are computed once and kept in the job's own ``CHECKPOINT_DIR/input_digests.json``
(by input path, keyed by size and modification time), so a rerun does not read gigabytes
again; nothing is written beside the inputs.

Files: ``last.pt`` (everything to resume) and ``best.pt`` (the best weights), each a
dict ``{"format", "sha256", <metadata>, <part name>: <part state>, ...}``.

:func:`prune` applies ``training.keep_checkpoints`` once a job's model folder is final:
``none`` removes ``last.pt``, ``best.pt`` and ``revisions/`` (the model folder holds its own
copies of the revisions), ``last`` removes ``best.pt`` only (``last.pt`` and what resuming it
needs stay), ``all`` removes nothing. The logs (``metrics.csv``, ``tensorboard/``), the
inputs' digest cache and any ``stale-*`` folder are never removed.
"""

from __future__ import annotations

import errno
import hashlib
from collections import OrderedDict
import json
import logging
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

import numpy as np
import torch

from babydistill.common import (UserError, atomic_path, atomic_write_text, disk_full_message,
                                file_digests)

log = logging.getLogger("babydistill.train.checkpoint")

FORMAT = "babydistill-checkpoint-v3"  # v3: the callbacks' state by name
DIGEST_CACHE = "input_digests.json"  # in CHECKPOINT_DIR: the inputs' content digests
# training.keep_checkpoints -> what prune() removes once the model folder is final
PRUNED = {"none": ("last.pt", "best.pt", "revisions"), "last": ("best.pt",), "all": ()}


# ---------------------------------------------------------------------------- digests

def state_digest(state: Any, where: str = "checkpoint") -> str:
    """SHA-256 of a nested state: every tensor's dtype, shape and bytes, every plain value.

    Raises ``TypeError`` (a bug in a part, not a user error) for anything that
    ``torch.load(weights_only=True)`` could not read back."""
    h = hashlib.sha256()
    _feed(h, state, where)
    return h.hexdigest()


def _feed(h, x: Any, where: str) -> None:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif type(x) in (dict, OrderedDict):
        h.update(f"M{len(x)};".encode())
        for k, v in x.items():
            _feed(h, k, where)
            _feed(h, v, f"{where}[{k!r}]")
    elif type(x) in (list, tuple):
        h.update(f"L{len(x)};".encode())
        for i, v in enumerate(x):
            _feed(h, v, f"{where}[{i}]")
    elif x is None or type(x) in (bool, int, float, str):  # exact: np.float64 is a float
        h.update(f"{type(x).__name__}:{x!r};".encode())
    else:
        raise TypeError(f"{where}: a {type(x).__module__}.{type(x).__name__} cannot be "
                        "checkpointed safely; parts may hold only tensors and plain Python values")


def content_digests(path: str | os.PathLike,
                    cache: str | os.PathLike | None = None) -> list[tuple[str, int, str]]:
    """``(name, size, sha256)`` of a file, or of every file under a directory (names
    relative to it, sorted; :func:`babydistill.common.file_digests`). With ``cache`` (a
    JSON file the job owns, e.g. ``CHECKPOINT_DIR/input_digests.json``) the digests are
    kept there under the input's path and reused while each file's size and modification
    time are unchanged; nothing is ever written beside the input."""
    key = str(path)
    stored = _read_cache(cache) if cache else {}
    digests = file_digests(path, known=stored.get(key))
    if cache and digests != stored.get(key):
        stored[key] = digests
        try:
            atomic_write_text(cache, json.dumps(stored, indent=1) + "\n")
        except OSError:  # a read-only checkpoint folder: no cache, the digests are still right
            pass
    return [(name, d["size"], d["sha256"]) for name, d in digests.items()]


def _read_cache(cache: str | os.PathLike) -> dict:
    try:
        stored = json.loads(Path(cache).read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def run_identity(spec: dict, inputs: Iterable[str | os.PathLike] = (),
                 resume_free: Iterable[str] = (), cache: str | os.PathLike | None = None) -> str:
    """A digest of what a run is: its whole CLI spec (less the ``train`` keys in
    ``resume_free``, which may change on resumption) and its inputs' names and contents,
    so that a checkpoint left by a run with other settings or other data is never resumed.
    ``cache``: where the inputs' content digests are kept between runs (see
    :func:`content_digests`)."""
    spec = dict(spec)
    free = set(resume_free)
    if isinstance(spec.get("train"), dict):
        spec["train"] = {k: v for k, v in spec["train"].items() if k not in free}
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for p in map(Path, inputs):
        for name, size, digest in content_digests(p, cache):
            h.update(f"{p.name}/{name}:{size}:{digest};".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------- parts

class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class NamedStates:
    """Named parts as one part: ``{name: part.state_dict()}`` (the trainable modules, the
    callbacks). A checkpoint holding other names belongs to another run: :meth:`mismatch`
    says so, and :meth:`Checkpointer.restore` moves it aside."""

    def __init__(self, parts: Mapping[str, Stateful], what: str = "parts"):
        self.parts, self.what = parts, what

    def state_dict(self) -> dict:
        return {n: p.state_dict() for n, p in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        for n, p in self.parts.items():
            p.load_state_dict(state[n])

    def mismatch(self, state: dict) -> str | None:
        """Why ``state`` cannot be loaded into these parts (other names), or None."""
        if set(state) == set(self.parts):
            return None
        return (f"it holds the state of {self.what} {', '.join(state) or '(none)'}, this run has "
                f"{', '.join(self.parts) or '(none)'}")


class RNGState:
    """Python's, NumPy's, torch's (and CUDA's) generators, as tensors and plain values."""

    def state_dict(self) -> dict:
        version, internal, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        s = {"python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                        "gauss": gauss},
             "numpy": {"kind": kind, "state": torch.from_numpy(keys.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
             "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            s["cuda"] = torch.cuda.get_rng_state()
        return s

    def load_state_dict(self, s: dict) -> None:
        py, npy = s["python"], s["numpy"]
        random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
        np.random.set_state((npy["kind"], npy["state"].numpy().astype(np.uint32), npy["pos"],
                             npy["has_gauss"], npy["cached"]))
        torch.set_rng_state(s["torch"])
        if torch.cuda.is_available() and "cuda" in s:
            torch.cuda.set_rng_state(s["cuda"])


# ---------------------------------------------------------------------------- files

def _nbytes(x: Any) -> int:
    """The tensor bytes in a nested state (about the size of its file)."""
    if isinstance(x, torch.Tensor):
        return x.nelement() * x.element_size()
    if isinstance(x, dict):
        return sum(_nbytes(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x)
    return 0


def save_file(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` (tensors and plain values) with its checksum, atomically. On a full
    disk: one line naming the path and the space needed; the previous file stays."""
    body = {"format": FORMAT, **state}
    body["sha256"] = state_digest(body, str(path))
    with atomic_path(path) as tmp:
        try:
            torch.save(body, tmp)
        except RuntimeError as e:
            # torch's zip writer reports a failed write ("unexpected pos ...") with no errno:
            # when the disk has no room for the file, that is what happened.
            tmp.unlink(missing_ok=True)
            need = _nbytes(body) + (1 << 20)
            if shutil.disk_usage(tmp.parent).free >= need:
                raise
            full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            raise UserError(disk_full_message(full, path, need)) from None


def load_file(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely (``weights_only=True``) and verify its checksum; one-line
    :class:`UserError` when it cannot be read, needs code to load, or does not match."""
    path = Path(path)
    start_over = f"delete it (or its whole folder {path.parent}) to start over"
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- whatever went wrong, the file is not loaded
        why = ("it holds objects that only unpickling code could build; refused, nothing was run"
               if "weights only" in str(e).lower() or "weights_only" in str(e)
               else f"unreadable ({type(e).__name__})")
        raise UserError(f"{path}: not a checkpoint this version can load: {why}; "
                        f"{start_over}") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        fmt = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
        raise UserError(f"{path}: checkpoint format {fmt!r}, expected {FORMAT!r} (an older "
                        f"version or another program wrote it); {start_over}")
    stored = ck.pop("sha256", None)
    try:
        actual = state_digest(ck, str(path))
    except TypeError:
        actual = None
    if stored != actual:
        raise UserError(f"{path}: checksum mismatch, the file changed after it was written "
                        f"(disk error or edit); {start_over}")
    return ck


def prune(directory: str | os.PathLike | None, keep_checkpoints: str) -> list[str]:
    """Remove what ``keep_checkpoints`` (:data:`PRUNED`) does not keep from a finished job's
    checkpoint ``directory``; only call it once the job's model folder is final (a killed
    job must still find everything it resumes from). Returns the names removed."""
    if keep_checkpoints not in PRUNED:
        raise UserError(f"training.keep_checkpoints: {keep_checkpoints!r}, use one of "
                        f"{', '.join(PRUNED)}")
    if not directory:
        return []
    removed = []
    for name in PRUNED[keep_checkpoints]:
        path = Path(directory) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    if removed:
        log.info("%s: removed %s (keep_checkpoints: %s)", directory, ", ".join(removed),
                 keep_checkpoints)
    return removed


class Checkpointer:
    """Saves and restores a run's parts in ``directory`` (``last.pt``, ``best.pt``).

    ``parts``: name -> object with ``state_dict()``/``load_state_dict()``. ``spec``: the
    train spec, stored and compared on resume (keys in ``resume_free`` may differ).
    ``every``: its cadence, ``last.pt`` every that many steps (0 = none) besides each epoch
    end and the last step (:meth:`due`).
    ``identity``: :func:`run_identity` of the run (None = not checked). Only the main
    process writes; every process reads. ``barrier`` is called (when given) after the
    main process moved stale files aside, so no rank reads them."""

    def __init__(self, directory: str | os.PathLike | None, parts: Mapping[str, Stateful], *,
                 spec: dict, identity: str | None = None, resume_free: Iterable[str] = (),
                 every: int = 0, main: bool = True, barrier=None):
        self.directory = Path(directory) if directory else None
        self.every = every
        self.parts = dict(parts)
        # a babydistill.config.specs object is stored as its JSON: checkpoints hold plain data only
        self.spec = spec.to_json() if hasattr(spec, "to_json") else spec
        self.identity = identity
        self.resume_free = set(resume_free)
        self.main, self.barrier = main, barrier

    def path(self, name: str) -> Path:
        return self.directory / name

    def due(self, step: int, *, epoch_end: bool, last: bool) -> bool:
        """Whether ``last.pt`` is written after optimizer step ``step``."""
        return last or epoch_end or bool(self.every and step % self.every == 0)

    def _meta(self) -> dict:
        return {"spec": self.spec, "identity": self.identity}

    def save(self) -> None:
        """``last.pt``: every part, so a killed run resumes bit for bit."""
        if not (self.main and self.directory):
            return
        save_file(self.path("last.pt"),
                  {**self._meta(), **{n: p.state_dict() for n, p in self.parts.items()}})

    def save_weights(self, modules: dict, **info) -> None:
        """``best.pt``: the weights only (``modules``: name -> state dict) and ``info``."""
        if not (self.main and self.directory):
            return
        save_file(self.path("best.pt"), {"identity": self.identity, **info, "modules": modules})

    def load_weights(self) -> dict | None:
        """``best.pt``'s modules (verified), or None when there is none. A ``best.pt`` of
        another run (another identity: a second trainer given this folder) is refused in one
        line, never exported as this run's model."""
        path = self.directory and self.path("best.pt")
        if not path or not path.is_file():
            return None
        ck = load_file(path)
        if self.identity is not None and ck.get("identity") != self.identity:
            raise UserError(f"{path}: written by another run (another spec or other inputs), "
                            f"not this one; it is not exported as this run's model. Give each "
                            f"run its own checkpoint folder, delete {self.directory} and run "
                            f"again")
        return ck["modules"]

    def _move_aside(self, why: str) -> None:
        """Move this directory's checkpoint files to ``stale-<UTC time>/``; warn where."""
        if self.barrier:  # every rank has read the files before they move
            self.barrier()
        if self.main:
            dest = self.directory / time.strftime("stale-%Y%m%dT%H%M%SZ", time.gmtime())
            n = 0
            while dest.exists():
                n += 1
                dest = dest.with_name(f"{dest.name.split('.')[0]}.{n}")
            moved = []
            for name in ("last.pt", "best.pt", "metrics.csv", "tensorboard"):
                if self.path(name).exists():
                    dest.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(self.path(name)), str(dest / name))
                    moved.append(name)
            if moved:
                log.warning("%s: %s; starting over -- moved %s aside to %s (delete it when "
                            "you no longer need it)", self.directory, why, ", ".join(moved), dest)
        if self.barrier:
            self.barrier()

    def restore(self, unusable=None) -> bool:
        """Load ``last.pt`` into the parts when it belongs to this run. Returns whether
        it did. A checkpoint of another run (other identity) is moved aside; one written
        with other train keys (no identity given) is a one-line error. ``unusable``: called
        with this run's checkpoint before anything is loaded; a reason it returns means the
        run starts over (with a warning) and the file stays until the next save replaces it."""
        if not self.directory:
            return False
        path = self.path("last.pt")
        if not path.is_file():
            best = self.path("best.pt")
            if self.identity is not None and best.is_file():
                # best.pt without last.pt: killed before the first checkpoint; keep it only
                # when it is this run's (it will be rewritten at the first evaluation).
                if load_file(best).get("identity") != self.identity:
                    self._move_aside(f"{best.name} was written by another run")
            return False
        ck = load_file(path)
        if self.identity is not None and ck.get("identity") != self.identity:
            # Snakemake reruns a job whose config or inputs changed: the checkpoint is stale.
            self._move_aside(f"{path.name} was written by a run with other settings or inputs")
            return False
        old = {k: v for k, v in ck["spec"].items() if k not in self.resume_free}
        new = {k: v for k, v in self.spec.items() if k not in self.resume_free}
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        if changed:
            raise UserError(f"{path}: written with a different train.{changed[0]} "
                            f"({old.get(changed[0])!r}, now {new.get(changed[0])!r}); "
                            f"delete the checkpoint directory {self.directory} to start over")
        missing = sorted(set(self.parts) - set(ck))
        if missing:
            raise UserError(f"{path}: no state for {', '.join(missing)}; delete the checkpoint "
                            f"directory {self.directory} to start over")
        for name, part in self.parts.items():
            why = part.mismatch(ck[name]) if isinstance(part, NamedStates) else None
            if why:  # e.g. other callbacks: another run's state, never loaded into these
                self._move_aside(f"{path.name} is another run's: {why}")
                return False
        why = unusable(ck) if unusable else None
        if why:
            log.warning("%s: %s; starting over", path, why)
            return False
        for name, part in self.parts.items():
            part.load_state_dict(ck[name])
        return True


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "train.checkpoint", "python -m babydistill.train.pretrain and babydistill.distill.student")
