"""Teachers that run once: the top-k targets of the logit-averaged teacher ensemble, on disk.

The teachers run a single pass over the FIXED training chunks (offset 0, chunk ``i`` =
tokens ``[i*T, (i+1)*T)``) and the cache stores, for every position of every chunk:

* ``values.f16``  [N, T, k] float16: the ensemble's top-k log-probabilities at T = 1
  (log-probs, not raw logits: the large ones sit near 0 where fp16 is most precise, and a
  log-prob is all a temperature needs, ``log softmax(z/T) = log softmax(logp/T)``);
* ``indices.i16`` or ``indices.i32`` [N, T, k]: their token ids (int16 when vocab <= 32767);
* ``rest_T<t>.f32`` [N, T] float32, one per stored temperature ``t``: the remainder bucket,
  ``logsumexp`` over the tokens NOT kept of ``logp / t`` (-inf when k = V).
* ``header.json``: shapes, dtypes, temperatures, teachers, and ``precision: bf16`` for a
  cache whose teachers ran under bf16 autocast (no ``precision`` = fp32, as every cache
  written before the key existed: an fp32 cache stays byte for byte as before);
* ``manifest.json``: every other file's name and size, written LAST; the whole directory
  is then renamed into place atomically. :class:`TopKCache` checks it on opening, so a cache
  left incomplete (by a build that another overwrote, or by hand) is refused in one line
  saying what to delete, never read as targets. A cache built before manifests is checked
  by the sizes its header gives.

One build at a time: a build holds :func:`babydistill.common.exclusive` on its output for
its whole run, so a second one (a rerun while an orphaned job still builds) stops with one
line naming the first's PID and host instead of sharing its ``.partial`` folder. The data
files' space is reserved (``posix_fallocate``) before any is written: a full disk is one
line at the start, not a SIGBUS inside the memory map.

The build is resumable: it grows in ``.<out>.partial`` beside the output and records the
finished chunk ranges there (``progress.json``); a build killed and started again skips
them and writes the same bytes as an uninterrupted one (see :func:`build_cache`).

:func:`babydistill.distill.losses.topk_kd_loss` distils from these as k + 1 buckets (the kept
tokens plus one "everything else" bucket holding the exact remainder mass), which needs
the remainder mass at the distillation temperature: hence one ``rest`` file per
temperature (cheap: 4 bytes a position). See docs/distillation.md.

Precision (``--precision``, config ``distill.<run>.cache.precision``): ``fp32`` (default) runs
the teachers in float32 on every device; ``bf16`` runs their forward under
``torch.autocast(<device>, dtype=torch.bfloat16)`` (the scorer's
:func:`babydistill.eval.scorer.autocast_for`), faster where the hardware has bf16; the
log-softmax, top-k and remainder stay fp32. The two never stand in for each other: the
header names it, :meth:`TopKCache.check` refuses the other one, the build key of a partial
build includes it and the workflow's cache folder of a bf16 cache ends in ``.bf16``
(:func:`babydistill.config.names.cache_key`). ``benchmarks/precision.py`` measures the
agreement (top-k ids kept, KL fp32 || bf16) on :func:`teacher_logprobs`, this module's path.

Targets are looked up by ``chunk_index``, which names the same tokens only with fixed
chunking: training with ``random_offset: true`` shifts every chunk, so the cache refuses it.

CLI::

    python -m babydistill.distill.teacher_cache --teacher DIR [--teacher DIR ...] --train PREFIX \\
        --seq-length 128 --k 64 --out CACHE_DIR [--batch-size N] [--temperature T ...]
        [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from babydistill.common import (UserError, cli, disk_full_message, exclusive, read_json,
                                setup_logging, write_json)
from babydistill.data.chunks import START_TOKENS
from babydistill.eval.scorer import PRECISIONS, autocast_for, check_precision
from babydistill.models.build import load_teachers

log = logging.getLogger("babydistill.distill.teacher_cache")

FORMAT = "babydistill-topk-v1"
MANIFEST = "manifest.json"  # written last: its files and sizes, checked by TopKCache
DEFAULT_TEMPERATURES = (1.0, 2.0)  # the papers' values; pass --temperature for others


def _tkey(t: float) -> str:
    return f"{float(t):g}"


@torch.inference_mode()
def teacher_logits(teachers, input_ids: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """The ensemble's logits (mean of raw logits) as float32; each teacher's forward in
    ``precision`` (``fp32``, or ``bf16`` autocast on the ids' device: :func:`autocast_for`).

    The same numbers as :func:`babydistill.distill.losses.average_logits` (a sum in teacher order,
    then one division), summed in place: no stacked [n_teachers, B, T, V] copy. No
    key/value cache (``use_cache=False``): a single pass does not need one."""
    autocast = autocast_for(precision, input_ids.device)
    total = None
    for t in teachers:
        with autocast():
            logits = t(input_ids=input_ids, use_cache=False).logits
        if total is None:
            total = logits.float()  # a fresh tensor (the model's output), safe to add into
        else:
            total += logits.float()
    if len(teachers) > 1:
        total /= len(teachers)
    return total


def teacher_logprobs(teachers, input_ids: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """The ensemble's log-probabilities at T = 1, float32 [B, T, V]: what the cache keeps the
    top k of (:func:`_fill`), and what ``benchmarks/precision.py`` compares across precisions."""
    return F.log_softmax(teacher_logits(teachers, input_ids, precision), dim=-1)


def fixed_chunks(prefix: str | os.PathLike, seq_length: int, start_token: str = "none"):
    """The training split cut at offset 0 (babydistill.data.chunks.TrainChunks without random
    offsets), with ``<s>`` in front of every chunk for ``start_token="chunk"``."""
    from babydistill.data.chunks import TokenArray, TrainChunks, start_token_id

    tokens = TokenArray(prefix)
    return TrainChunks(tokens, seq_length, random_offset=False, seed=0,
                       start_token=start_token_id(tokens, start_token))


def _rows(chunks, start: int, end: int) -> np.ndarray:
    """Chunks ``start..end`` as int64 [n, T], from a TrainChunks or an [N, T] array."""
    if hasattr(chunks, "chunk"):
        return np.stack([chunks.chunk(i) for i in range(start, end)])
    return np.asarray(chunks[start:end], dtype=np.int64)


class CacheBuildStopped(Exception):
    """Raised by the ``stop_after_chunks`` test hook: the build ends as if killed."""


def _build_key(teachers, chunks, header: dict, batch_size: int, device: torch.device,
               precision: str = "fp32") -> str:
    """What decides the cache's bytes: teachers' weights, the tokens, the layout, the batch
    size, the device kind and the precision (a partial build is resumed only under the same key)."""
    from babydistill.train.checkpoint import state_digest

    h = hashlib.sha256(json.dumps(
        {"header": header, "batch_size": batch_size, "device": device.type, "precision": precision,
         "torch": torch.__version__, "teachers": [type(t).__name__ for t in teachers]},
        sort_keys=True).encode())
    for t in teachers:
        h.update(state_digest(t.state_dict(), "teacher").encode())
    tokens = chunks.tokens if hasattr(chunks, "tokens") else np.asarray(chunks)
    h.update(str(np.asarray(tokens).dtype).encode())
    for i in range(0, len(tokens), 1 << 24):
        h.update(memoryview(np.ascontiguousarray(tokens[i:i + (1 << 24)])))
    return h.hexdigest()


def _covered(done: list[list[int]], start: int, end: int) -> bool:
    return any(a <= start and end <= b for a, b in done)


def _add_range(done: list[list[int]], start: int, end: int) -> list[list[int]]:
    """``done`` plus ``[start, end)``, merged into sorted disjoint ranges."""
    out: list[list[int]] = []
    for a, b in sorted([*done, [start, end]]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


RECORD_EVERY_S = 10.0  # how often a build records its finished chunks (a kill loses at most this)


def _layout(n: int, seq: int, k: int, vocab: int, temperatures: Sequence[float]) -> dict:
    """The cache's header without the caller's info: shapes, files, dtypes, temperatures."""
    if not 1 <= k <= vocab:
        raise UserError(f"--k: must be between 1 and the vocabulary size {vocab}, got {k}")
    temps = sorted({float(t) for t in temperatures})
    if not temps or min(temps) <= 0:
        raise UserError(f"--temperature: must be positive, got {list(temperatures)}")
    idx_dtype = np.int16 if vocab <= np.iinfo(np.int16).max else np.int32
    idx_name = "indices.i16" if idx_dtype == np.int16 else "indices.i32"
    return {
        "format": FORMAT, "n_chunks": int(n), "seq_length": int(seq), "k": int(k),
        "vocab_size": int(vocab), "offset": 0,
        "values": {"file": "values.f16", "dtype": "float16", "what": "top-k log-probs at T=1"},
        "indices": {"file": idx_name, "dtype": np.dtype(idx_dtype).name},
        "rest": {_tkey(t): f"rest_T{_tkey(t)}.f32" for t in temps},
        "temperatures": temps,
    }


def _file_sizes(layout: dict) -> dict[str, int]:
    """Each data file's size in bytes once complete."""
    rows = layout["n_chunks"] * layout["seq_length"]
    idx = layout["indices"]
    return {"values.f16": rows * layout["k"] * 2,
            idx["file"]: rows * layout["k"] * np.dtype(idx["dtype"]).itemsize,
            **{f: rows * 4 for f in layout["rest"].values()}}


def _resumable(work: Path, key: str, layout: dict) -> list[list[int]]:
    """The chunk ranges a partial build in ``work`` finished under the same ``key``; a
    partial of another build (or one with files missing or cut short) is removed."""
    done: list[list[int]] = []
    if work.is_dir():
        try:
            state = json.loads((work / "progress.json").read_text())
            if state["key"] == key:
                done = [[int(a), int(b)] for a, b in state["done"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if done:
            log.info("resuming %s: %d of %d chunks already cached", work,
                     sum(b - a for a, b in done), layout["n_chunks"])
        else:
            shutil.rmtree(work)  # another build's (or an unrecorded) partial: start over
    if done and any(not (work / f).is_file() or (work / f).stat().st_size != size
                    for f, size in _file_sizes(layout).items()):
        log.warning("%s: files missing or cut short; starting the cache over", work)
        shutil.rmtree(work)
        done = []
    return done


def _reserve(work: Path, layout: dict, out: Path, fresh: bool) -> None:
    """Allocate every data file at its full size before anything is written (a memory map
    written past a full disk dies by SIGBUS, with no word); one line when it does not fit.
    A filesystem without ``fallocate`` gets plain (sparse) files, as before."""
    sizes = _file_sizes(layout)
    for name, size in sizes.items():
        fd = os.open(work / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                os.ftruncate(fd, max(size, os.fstat(fd).st_size))
                continue
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            os.close(fd)
            fd = -1
            if fresh:  # give the space back: nothing was cached yet
                shutil.rmtree(work, ignore_errors=True)
            raise UserError(disk_full_message(e, out, sum(sizes.values()))) from None
        finally:
            if fd >= 0:
                os.close(fd)


def _write_manifest(work: Path) -> None:
    """``manifest.json``: every file of the finished cache and its size; written last."""
    files = {p.name: p.stat().st_size for p in sorted(work.iterdir()) if p.name != MANIFEST}
    write_json(work / MANIFEST, {"format": FORMAT, "files": files})


def check_complete(path: Path) -> None:
    """One line when the cache at ``path`` is not a complete build (no manifest, a file
    missing or of another size than the manifest says)."""
    again = (f"delete {path} and build it again (python -m babydistill.distill.teacher_cache, "
             "or rerun the workflow: the teacher_cache rule rebuilds it)")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = dict(manifest["files"])
    except FileNotFoundError:
        files = _legacy_files(path, again)
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path}: incomplete teacher cache (no readable {MANIFEST}: its build "
                        f"was interrupted or overwritten); {again}") from None
    for name, size in files.items():
        p = path / name
        if not p.is_file() or p.stat().st_size != size:
            have = f"{p.stat().st_size} bytes" if p.is_file() else "missing"
            raise UserError(f"{p}: incomplete teacher cache ({have}, its {MANIFEST} says "
                            f"{size} bytes); {again}")


def _legacy_files(path: Path, again: str) -> dict[str, int]:
    """The files a cache built before manifests must hold (by its header's layout): such a
    cache is still read when every data file has its full size; a folder without a
    header is not a cache at all."""
    try:
        header = json.loads((path / "header.json").read_text())
        files = {"header.json": (path / "header.json").stat().st_size, **_file_sizes(header)}
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path}: incomplete teacher cache (no {MANIFEST}, no readable "
                        f"header.json: its build was interrupted or overwritten); {again}") from None
    log.warning("%s: no %s (built before manifests); checked by its header's sizes", path,
                MANIFEST)
    return files


def _open_arrays(work: Path, layout: dict, mode: str):
    """The memory-mapped data files: values [n, T, k], indices [n, T, k], and the rest
    log-mass [n, T] per temperature (a dict)."""
    n, seq, k = layout["n_chunks"], layout["seq_length"], layout["k"]
    idx = layout["indices"]
    values = np.memmap(work / "values.f16", dtype=np.float16, mode=mode, shape=(n, seq, k))
    indices = np.memmap(work / idx["file"], dtype=np.dtype(idx["dtype"]), mode=mode,
                        shape=(n, seq, k))
    rests = {t: np.memmap(work / layout["rest"][_tkey(t)], dtype=np.float32, mode=mode,
                          shape=(n, seq)) for t in layout["temperatures"]}
    return values, indices, rests


@torch.inference_mode()
def _fill(teachers, rows: np.ndarray, k: int, values, indices, rests, start: int,
          end: int, precision: str = "fp32") -> None:
    """The teachers' top-k log-probs of chunks ``start..end`` (``rows``) and, per
    temperature, the log-mass outside the top k, written into the arrays."""
    ids = torch.from_numpy(rows).to(next(teachers[0].parameters()).device)
    logp = teacher_logprobs(teachers, ids, precision)
    top, top_idx = logp.topk(k, dim=-1)
    values[start:end] = top.to(torch.float16).cpu().numpy()
    indices[start:end] = top_idx.cpu().numpy().astype(indices.dtype)
    for t, rest in rests.items():
        masked = logp / t
        masked.scatter_(-1, top_idx, float("-inf"))  # in place: one V-wide pass less
        rest[start:end] = torch.logsumexp(masked, dim=-1).cpu().numpy()


def build_cache(teachers, chunks, out: str | os.PathLike, *, k: int,
                temperatures: Sequence[float] = DEFAULT_TEMPERATURES, batch_size: int = 32,
                info: dict | None = None, progress: bool = True,
                stop_after_chunks: int | None = None, precision: str = "fp32") -> dict:
    """Run ``teachers`` once over ``chunks`` (a TrainChunks at offset 0, or an [N, T] array)
    and write the cache directory ``out``.

    Resumable: the files grow in ``.<out>.partial`` beside ``out`` with ``progress.json``
    (the finished chunk ranges, recorded every :data:`RECORD_EVERY_S` seconds after the
    data is flushed); a build killed and started again skips those ranges and gives the
    same bytes as an uninterrupted one. A partial build of other teachers, tokens or
    settings is discarded. At the end the partial directory is renamed onto ``out``.
    ``precision``: the teachers' forward, ``fp32`` or ``bf16`` (autocast; named in the header).
    ``stop_after_chunks``: test hook, stop as if killed after that many new chunks."""
    check_precision(precision)
    with exclusive(out, "teacher cache"):  # a second build stops here, one line
        return _build_cache(teachers, chunks, Path(out), k=k, temperatures=temperatures,
                            batch_size=batch_size, info=info, progress=progress,
                            stop_after_chunks=stop_after_chunks, precision=precision)


def _build_cache(teachers, chunks, out: Path, *, k: int, temperatures: Sequence[float],
                 batch_size: int, info: dict | None, progress: bool,
                 stop_after_chunks: int | None, precision: str) -> dict:
    """:func:`build_cache` under its lock."""
    n = len(chunks)
    seq = chunks.seq_length if hasattr(chunks, "seq_length") else chunks.shape[1]
    layout = _layout(n, seq, k, teachers[0].config.vocab_size, temperatures)
    # named only when not fp32: an fp32 cache's header stays byte for byte as before
    header = {**layout, **(info or {}), **({"precision": precision} if precision != "fp32" else {})}
    device = next(teachers[0].parameters()).device
    out = Path(out)
    work = out.parent / f".{out.name}.partial"
    for old in out.parent.glob(f".{out.name}.*.tmp"):  # left by builds before resumability
        shutil.rmtree(old, ignore_errors=True)
    key = _build_key(teachers, chunks, layout, batch_size, device, precision)
    record = work / "progress.json"
    done = _resumable(work, key, layout)
    work.mkdir(parents=True, exist_ok=True)
    _reserve(work, layout, out, fresh=not done)
    values, indices, rests = _open_arrays(work, layout, "r+")
    arrays = (values, indices, *rests.values())

    def save_progress() -> None:
        for arr in arrays:
            arr.flush()  # the data first: a recorded range is always on disk
        write_json(record, {"key": key, "done": done})

    bar = tqdm(total=n, desc="teacher cache", unit="chunk", disable=not progress,
               initial=sum(b - a for a, b in done))
    new_chunks, last_record = 0, time.monotonic()
    for start in range(0, n, batch_size):
        end = min(n, start + batch_size)
        if _covered(done, start, end):
            continue
        _fill(teachers, _rows(chunks, start, end), k, values, indices, rests, start, end,
              precision)
        done = _add_range(done, start, end)
        new_chunks += end - start
        bar.update(end - start)
        if stop_after_chunks is not None and new_chunks >= stop_after_chunks:
            save_progress()
            bar.close()
            raise CacheBuildStopped(f"stopped after {new_chunks} chunks (test hook)")
        if time.monotonic() - last_record >= RECORD_EVERY_S:
            save_progress()
            last_record = time.monotonic()
    bar.close()
    for arr in arrays:
        arr.flush()
    del values, indices, rests, arrays
    record.unlink(missing_ok=True)
    write_json(work / "header.json", header)
    _write_manifest(work)  # last: a manifest present (and matching) == complete
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    os.replace(work, out)
    return header


class TopKCache:
    """Read side of the cache: sparse targets for a batch of chunk indices."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        check_complete(self.path)
        h = read_json(self.path / "header.json")
        if h.get("format") != FORMAT:
            raise UserError(f"{self.path}/header.json: format {h.get('format')!r}, expected {FORMAT}; rebuild the cache")
        self.header = h
        self.n_chunks, self.seq_length, self.k = h["n_chunks"], h["seq_length"], h["k"]
        self.vocab_size = h["vocab_size"]
        self.precision = h.get("precision", "fp32")  # absent: every cache before bf16 existed
        shape = (self.n_chunks, self.seq_length, self.k)
        self.values = np.memmap(self.path / h["values"]["file"], dtype=np.float16, mode="r", shape=shape)
        self.indices = np.memmap(self.path / h["indices"]["file"], dtype=np.dtype(h["indices"]["dtype"]),
                                 mode="r", shape=shape)
        self._rest_files = h["rest"]
        self._rest: dict[str, np.memmap] = {}

    def check(self, *, temperature: float, seq_length: int, vocab_size: int,
              random_offset: bool, n_chunks: int | None = None, start_token: str = "none",
              precision: str = "fp32") -> None:
        """One-line errors when this cache cannot serve a run."""
        where = f"{self.path}"
        if precision != self.precision:
            raise UserError(f"{where}: built with the teachers in {self.precision}, the run asks "
                            f"for cache.precision {precision}; rebuild it with --precision "
                            f"{precision}")
        cached_start = self.header.get("start_token", "none")
        if start_token != cached_start:
            raise UserError(f"{where}: cached with data.start_token {cached_start}, the run uses "
                            f"{start_token}; rebuild it with --start-token {start_token}")
        if random_offset:
            raise UserError(
                f"{where}: the teacher cache stores targets for the fixed chunks (offset 0); "
                "set random_offset: false for this run (random offsets shift every chunk, "
                "so chunk_index would no longer name the cached tokens)")
        if _tkey(temperature) not in self._rest_files:
            raise UserError(f"{where}: no remainder mass for temperature {temperature:g} (cache has "
                            f"{', '.join(self._rest_files)}); rebuild with --temperature {temperature:g}")
        if seq_length != self.seq_length:
            raise UserError(f"{where}: cache seq_length {self.seq_length} != run seq_length {seq_length}; rebuild it")
        if vocab_size != self.vocab_size:
            raise UserError(f"{where}: cache vocab_size {self.vocab_size} != student vocab_size {vocab_size}")
        if n_chunks is not None and n_chunks != self.n_chunks:
            raise UserError(f"{where}: cache has {self.n_chunks} chunks, the training split {n_chunks}; "
                            "rebuild it from the same --train prefix")

    def rest(self, temperature: float) -> np.memmap:
        key = _tkey(temperature)
        if key not in self._rest:
            self._rest[key] = np.memmap(self.path / self._rest_files[key], dtype=np.float32, mode="r",
                                        shape=(self.n_chunks, self.seq_length))
        return self._rest[key]

    def get(self, chunk_index, temperature: float, device=None):
        """(topk_logprobs f16 [B,T,k], topk_index long [B,T,k], rest_logit f32 [B,T]) for a batch."""
        idx = np.asarray(torch.as_tensor(chunk_index).cpu().numpy(), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_chunks):
            raise IndexError(f"chunk_index out of range for a cache of {self.n_chunks} chunks")
        vals = torch.from_numpy(np.ascontiguousarray(self.values[idx]))
        ind = torch.from_numpy(np.ascontiguousarray(self.indices[idx]).astype(np.int64))
        rest = torch.from_numpy(np.ascontiguousarray(self.rest(temperature)[idx]))
        if device is not None:
            vals, ind, rest = (x.to(device, non_blocking=True) for x in (vals, ind, rest))
        return vals, ind, rest


@cli
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m babydistill.distill.teacher_cache", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", action="append", required=True, help="teacher model dir (repeat)")
    ap.add_argument("--train", required=True, help="tokenized training split PREFIX (PREFIX.bin/.json)")
    ap.add_argument("--seq-length", type=int, default=128)
    ap.add_argument("--start-token", choices=START_TOKENS, default="none",
                    help="chunk: <s> starts every chunk, as data.start_token (default none)")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--out", required=True, help="cache directory to write")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--temperature", type=float, action="append", default=None,
                    help=f"distillation temperature(s) to store the remainder mass for "
                         f"(repeat; default {' '.join(map(_tkey, DEFAULT_TEMPERATURES))})")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32",
                    help="the teachers' forward: fp32 (default) or bf16 autocast (named in the "
                         "header; a run reads only a cache of its cache.precision)")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    if args.seq_length < 2 or args.batch_size < 1:
        raise UserError("--seq-length must be >= 2 and --batch-size >= 1")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teachers = load_teachers(args.teacher, device)
    if any(type(t).__name__.endswith("ForMaskedLM") for t in teachers):
        # their targets depend on each step's masks, which a cache of fixed chunks cannot key
        raise UserError(f"--teacher: {args.teacher[0]} is a masked LM; the top-k cache serves "
                        "causal teachers only (masked students distil from live teachers)")
    chunks = fixed_chunks(args.train, args.seq_length, args.start_token)
    log.info("caching top-%d targets of %d teacher(s) over %d chunks of %d tokens (%s)",
             args.k, len(teachers), len(chunks), args.seq_length, args.precision)
    header = build_cache(
        teachers, chunks, args.out, k=args.k, batch_size=args.batch_size,
        temperatures=args.temperature or DEFAULT_TEMPERATURES, precision=args.precision,
        info={"teachers": [str(t) for t in args.teacher], "train": str(args.train),
              # named only when on: a cache without a start token stays byte for byte as before
              **({"start_token": args.start_token} if args.start_token != "none" else {})},
    )
    log.info("wrote %s (%d chunks x %d positions x top-%d)", args.out, header["n_chunks"],
             header["seq_length"], header["k"])
    return header


if __name__ == "__main__":
    main()
