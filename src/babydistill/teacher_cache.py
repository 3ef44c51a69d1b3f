"""Teachers that run once: the top-k targets of the logit-averaged teacher ensemble, on disk.

The teachers run a single pass over the FIXED training chunks (offset 0, chunk ``i`` =
tokens ``[i*T, (i+1)*T)``) and the cache stores, for every position of every chunk:

* ``values.f16``  [N, T, k] float16: the ensemble's top-k log-probabilities at T = 1
  (log-probs, not raw logits: the large ones sit near 0 where fp16 is most precise, and a
  log-prob is all a temperature needs, ``log softmax(z/T) = log softmax(logp/T)``);
* ``indices.i16`` or ``indices.i32`` [N, T, k]: their token ids (int16 when vocab <= 32767);
* ``rest_T<t>.f32`` [N, T] float32, one per stored temperature ``t``: the remainder bucket,
  ``logsumexp`` over the tokens NOT kept of ``logp / t`` (-inf when k = V).
* ``header.json``: shapes, dtypes, temperatures, teachers; written last, the whole
  directory is renamed into place atomically.

:func:`babydistill.losses.topk_kd_loss` distils from these as k + 1 buckets (the kept
tokens plus one "everything else" bucket holding the exact remainder mass), which needs
the remainder mass at the distillation temperature: hence one ``rest`` file per
temperature (cheap: 4 bytes a position). See docs/distillation.md.

Targets are looked up by ``chunk_index``, which names the same tokens only with fixed
chunking: training with ``random_offset: true`` shifts every chunk, so the cache refuses it.

CLI::

    python -m babydistill.teacher_cache --teacher DIR [--teacher DIR ...] --train PREFIX \\
        --seq-length 128 --k 64 --out CACHE_DIR [--batch-size N] [--temperature T ...]
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .common import UserError, atomic_path, cli, read_json, setup_logging, write_json
from .losses import average_logits

log = logging.getLogger("babydistill.teacher_cache")

FORMAT = "babydistill-topk-v1"
DEFAULT_TEMPERATURES = (1.0, 2.0)  # the papers' values; pass --temperature for others


def _tkey(t: float) -> str:
    return f"{float(t):g}"


def load_teachers(dirs: Sequence[str | os.PathLike], device: torch.device | str = "cpu"):
    """Frozen teachers in eval mode; all must share one vocabulary."""
    from transformers import AutoModelForCausalLM

    if not dirs:
        raise UserError("--teacher: give at least one teacher model directory")
    teachers = []
    for d in dirs:
        if not (Path(d) / "config.json").is_file():
            raise UserError(f"{d}: not a saved model directory (no config.json); train the teacher first")
        m = AutoModelForCausalLM.from_pretrained(d).to(device).eval()
        m.requires_grad_(False)
        teachers.append(m)
    vocabs = {m.config.vocab_size for m in teachers}
    if len(vocabs) != 1:
        raise UserError(f"--teacher: teachers disagree on vocab_size {sorted(vocabs)}; they must share one tokenizer")
    return teachers


@torch.no_grad()
def teacher_logits(teachers, input_ids: torch.Tensor) -> torch.Tensor:
    """The ensemble's logits (mean of raw logits), float32; bf16 autocast on CUDA."""
    use_amp = input_ids.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
        outs = [t(input_ids=input_ids).logits for t in teachers]
    return average_logits(outs)


def fixed_chunks(prefix: str | os.PathLike, seq_length: int):
    """The training split cut at offset 0 (babydistill.data.TrainChunks without random offsets)."""
    from .data import TrainChunks

    return TrainChunks(prefix, seq_length, random_offset=False, seed=0)


def _rows(chunks, start: int, end: int) -> np.ndarray:
    """Chunks ``start..end`` as int64 [n, T], from a TrainChunks or an [N, T] array."""
    if hasattr(chunks, "chunk"):
        return np.stack([chunks.chunk(i) for i in range(start, end)])
    return np.asarray(chunks[start:end], dtype=np.int64)


def build_cache(teachers, chunks, out: str | os.PathLike, *, k: int,
                temperatures: Sequence[float] = DEFAULT_TEMPERATURES, batch_size: int = 32,
                info: dict | None = None, progress: bool = True) -> dict:
    """Run ``teachers`` once over ``chunks`` (a TrainChunks at offset 0, or an [N, T] array)
    and write the cache directory ``out``."""
    n = len(chunks)
    seq = chunks.seq_length if hasattr(chunks, "seq_length") else chunks.shape[1]
    vocab = teachers[0].config.vocab_size
    if not 1 <= k <= vocab:
        raise UserError(f"--k: must be between 1 and the vocabulary size {vocab}, got {k}")
    temps = sorted({float(t) for t in temperatures})
    if not temps or min(temps) <= 0:
        raise UserError(f"--temperature: must be positive, got {list(temperatures)}")
    idx_dtype = np.int16 if vocab <= np.iinfo(np.int16).max else np.int32
    idx_name = "indices.i16" if idx_dtype == np.int16 else "indices.i32"
    device = next(teachers[0].parameters()).device
    header = {
        "format": FORMAT, "n_chunks": int(n), "seq_length": int(seq), "k": int(k),
        "vocab_size": int(vocab), "offset": 0,
        "values": {"file": "values.f16", "dtype": "float16", "what": "top-k log-probs at T=1"},
        "indices": {"file": idx_name, "dtype": np.dtype(idx_dtype).name},
        "rest": {_tkey(t): f"rest_T{_tkey(t)}.f32" for t in temps},
        "temperatures": temps,
        **(info or {}),
    }
    with atomic_path(out) as tmp:
        tmp.mkdir()
        values = np.memmap(tmp / "values.f16", dtype=np.float16, mode="w+", shape=(n, seq, k))
        indices = np.memmap(tmp / idx_name, dtype=idx_dtype, mode="w+", shape=(n, seq, k))
        rests = {t: np.memmap(tmp / header["rest"][_tkey(t)], dtype=np.float32, mode="w+", shape=(n, seq))
                 for t in temps}
        bar = tqdm(total=n, desc="teacher cache", unit="chunk", disable=not progress)
        for start in range(0, n, batch_size):
            ids = torch.from_numpy(_rows(chunks, start, min(n, start + batch_size))).to(device)
            logp = F.log_softmax(teacher_logits(teachers, ids), dim=-1)
            top, top_idx = logp.topk(k, dim=-1)
            end = start + ids.size(0)
            values[start:end] = top.to(torch.float16).cpu().numpy()
            indices[start:end] = top_idx.cpu().numpy().astype(idx_dtype)
            for t in temps:
                masked = (logp / t).scatter(-1, top_idx, float("-inf"))
                rests[t][start:end] = torch.logsumexp(masked, dim=-1).cpu().numpy()
            bar.update(ids.size(0))
        bar.close()
        for arr in (values, indices, *rests.values()):
            arr.flush()
        write_json(tmp / "header.json", header)  # last: header present == complete
    return header


class TopKCache:
    """Read side of the cache: sparse targets for a batch of chunk indices."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        h = read_json(self.path / "header.json")
        if h.get("format") != FORMAT:
            raise UserError(f"{self.path}/header.json: format {h.get('format')!r}, expected {FORMAT}; rebuild the cache")
        self.header = h
        self.n_chunks, self.seq_length, self.k = h["n_chunks"], h["seq_length"], h["k"]
        self.vocab_size = h["vocab_size"]
        shape = (self.n_chunks, self.seq_length, self.k)
        self.values = np.memmap(self.path / h["values"]["file"], dtype=np.float16, mode="r", shape=shape)
        self.indices = np.memmap(self.path / h["indices"]["file"], dtype=np.dtype(h["indices"]["dtype"]),
                                 mode="r", shape=shape)
        self._rest_files = h["rest"]
        self._rest: dict[str, np.memmap] = {}

    def check(self, *, temperature: float, seq_length: int, vocab_size: int,
              random_offset: bool, n_chunks: int | None = None) -> None:
        """One-line errors when this cache cannot serve a run."""
        where = f"{self.path}"
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
    ap = argparse.ArgumentParser(prog="python -m babydistill.teacher_cache", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", action="append", required=True, help="teacher model dir (repeat)")
    ap.add_argument("--train", required=True, help="tokenized training split PREFIX (PREFIX.bin/.json)")
    ap.add_argument("--seq-length", type=int, default=128)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--out", required=True, help="cache directory to write")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--temperature", type=float, action="append", default=None,
                    help=f"distillation temperature(s) to store the remainder mass for "
                         f"(repeat; default {' '.join(map(_tkey, DEFAULT_TEMPERATURES))})")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    if args.seq_length < 2 or args.batch_size < 1:
        raise UserError("--seq-length must be >= 2 and --batch-size >= 1")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teachers = load_teachers(args.teacher, device)
    chunks = fixed_chunks(args.train, args.seq_length)
    log.info("caching top-%d targets of %d teacher(s) over %d chunks of %d tokens",
             args.k, len(teachers), len(chunks), args.seq_length)
    header = build_cache(
        teachers, chunks, args.out, k=args.k, batch_size=args.batch_size,
        temperatures=args.temperature or DEFAULT_TEMPERATURES,
        info={"teachers": [str(t) for t in args.teacher], "train": str(args.train)},
    )
    log.info("wrote %s (%d chunks x %d positions x top-%d)", args.out, header["n_chunks"],
             header["seq_length"], header["k"])
    return header


if __name__ == "__main__":
    main()
