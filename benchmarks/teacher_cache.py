"""Time the teacher cache build against the teachers' bare forward passes over the same chunks.

    .venv/bin/python benchmarks/teacher_cache.py [--config workflow/demo.yaml]
        [--teacher llama-tiny --teacher gpt2-tiny] [--vocab-size 1800] [--chunks 512]
        [--seq-length 128] [--k 256] [--batch-size 32] [--temperature 2] [--threads 2]
        [--repeat 2] [--precision fp32|bf16] [--json OUT.json]

The reference is what live distillation pays for its teachers: ``model(input_ids,
use_cache=False).logits`` of each teacher under ``no_grad``, batch by batch. The cache
build (:func:`babydistill.distill.teacher_cache.build_cache`, written to a temporary directory)
should cost about that plus a little for the top-k and the writes (issue 14). Random
weights: timing does not depend on them. Reports wall and process CPU seconds (best of
``--repeat``) and their ratios; on a shared machine trust the CPU ratio with ``--threads 1``.
``--precision bf16`` builds the cache with its teachers under bf16 autocast (the reference
forwards stay fp32, what live distillation runs): run it with and without to compare builds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from babydistill.config import load_yaml
from babydistill.models.build import build_model
from babydistill.distill.teacher_cache import build_cache

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_of  # noqa: E402


def cpu_seconds(repeat: int, fn) -> float:
    """Best process CPU time over ``repeat`` calls (steadier than wall time on a shared
    machine; with ``--threads 1`` it is the single-core cost)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "workflow" / "demo.yaml"))
    ap.add_argument("--teacher", action="append", default=None)
    ap.add_argument("--vocab-size", type=int, default=1800)
    ap.add_argument("--chunks", type=int, default=512)
    ap.add_argument("--seq-length", type=int, default=128)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="the cache build's precision (teacher_cache --precision)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    presets = load_yaml(args.config)["models"]
    names = args.teacher or ["llama-tiny", "gpt2-tiny"]
    torch.manual_seed(0)
    teachers = []
    for n in names:
        m = build_model(presets[n], args.vocab_size).eval()
        m.requires_grad_(False)
        teachers.append(m)
    rng = np.random.default_rng(0)
    chunks = rng.integers(3, args.vocab_size, (args.chunks, args.seq_length)).astype(np.int64)

    def forwards():
        with torch.no_grad():
            for s in range(0, len(chunks), args.batch_size):
                ids = torch.from_numpy(chunks[s:s + args.batch_size])
                for t in teachers:
                    t(input_ids=ids, use_cache=False).logits

    def build():
        with tempfile.TemporaryDirectory() as d:
            build_cache(teachers, chunks, Path(d) / "cache", k=args.k,
                        temperatures=[args.temperature], batch_size=args.batch_size,
                        progress=False, precision=args.precision)

    forwards()  # warm-up
    t_fwd, _ = best_of(args.repeat, forwards)
    t_build, _ = best_of(args.repeat, build)
    c_fwd, c_build = cpu_seconds(args.repeat, forwards), cpu_seconds(args.repeat, build)
    row = {"teachers": names, "chunks": args.chunks, "seq_length": args.seq_length,
           "vocab_size": args.vocab_size, "k": args.k, "threads": args.threads,
           "precision": args.precision,
           "forward_s": round(t_fwd, 3), "build_s": round(t_build, 3),
           "ratio": round(t_build / t_fwd, 3), "forward_cpu_s": round(c_fwd, 3),
           "build_cpu_s": round(c_build, 3), "cpu_ratio": round(c_build / c_fwd, 3)}
    print(f"teacher forwards {t_fwd:.2f} s, cache build {t_build:.2f} s: "
          f"{t_build / t_fwd:.2f}x ({args.chunks} chunks x {args.seq_length}, "
          f"vocab {args.vocab_size}, k {args.k}, {args.threads} threads, {args.precision} "
          f"build); CPU time "
          f"{c_fwd:.2f} s vs {c_build:.2f} s: {c_build / c_fwd:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
