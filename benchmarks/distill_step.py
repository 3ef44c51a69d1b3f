"""Time one training step: plain student, KD with live teachers, KD from the top-k cache.

    .venv/bin/python benchmarks/distill_step.py [--config workflow/demo.yaml]
        [--student llama-student-tiny] [--teacher llama-tiny --teacher gpt2-tiny]
        [--vocab-size N] [--batch-size 32] [--seq-length 128] [--k 64] [--steps 10]
        [--temperature 2] [--device auto|cpu|cuda] [--threads N] [--clock wall|cpu] [--json OUT.json]

Presets are names from the config's ``models:`` or inline JSON presets (random weights:
timing does not depend on them). Each variant runs the same student, batch and AdamW
step; the cache is built once from the teachers over the benchmark's chunks (not timed).
Reports ms/step (median over ``--steps``; the variants take turns step by step so load
changes hit them alike; 2 warm-up rounds) and the ratio to the plain step. Target: the
cached step costs <= 1.1x the plain one. On a shared CPU use ``--threads 1 --clock cpu``
(the process's CPU time: other processes' load then barely moves the numbers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from babydistill.config import load_yaml
from babydistill.distill.student import CachedKDObjective, KDObjective
from babydistill.models.build import build_model, count_parameters
from babydistill.config.specs import KDSpec
from babydistill.distill.teacher_cache import TopKCache, build_cache
from babydistill.train.trainer import LMObjective

REPO = Path(__file__).resolve().parents[1]


class Runner:
    """One variant: an objective and its AdamW; ``step()`` times one optimizer step."""

    def __init__(self, objective, device, amp: bool, clock=time.perf_counter):
        self.objective, self.device, self.amp, self.clock = objective, device, amp, clock
        params = [p for m in objective.modules().values() for p in m.parameters()]
        self.opt = torch.optim.AdamW(params, lr=1e-4)
        self.times: list[float] = []

    def step(self, batch: dict, record: bool) -> None:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = self.clock()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss, _ = self.objective.loss(batch)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        if record:
            self.times.append(self.clock() - t0)


def time_variants(runners: dict, batches, steps: int) -> dict[str, float]:
    """Median ms/step per variant. The variants take turns step by step, so a change in
    machine load hits them alike; 2 warm-up rounds (allocator, kernels) are not timed."""
    for i in range(steps + 2):
        for r in runners.values():
            r.step(batches[i % len(batches)], record=i >= 2)
    return {name: statistics.median(r.times) * 1e3 for name, r in runners.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "workflow" / "demo.yaml"))
    ap.add_argument("--student", default="llama-student-tiny")
    ap.add_argument("--teacher", action="append", default=None)
    ap.add_argument("--vocab-size", type=int, default=None, help="default: the config's tokenizer.vocab_size")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-length", type=int, default=128)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="cpu: this process's CPU time (CPU, --threads 1), steady on a loaded machine")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.clock == "cpu" and (args.device == "cuda" or args.threads != 1):
        sys.exit("error: --clock cpu needs --device cpu (or auto without CUDA) and --threads 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_yaml(args.config)
    models = dict(cfg["models"])
    teacher_names = args.teacher or ["llama-tiny", "gpt2-tiny"]
    for name in [args.student, *teacher_names]:
        if name.lstrip().startswith("{"):  # an inline preset
            models[name] = json.loads(name)
        elif name not in models:
            sys.exit(f"error: {args.config}: models.{name}: no such preset (have {', '.join(models)})")
    vocab = args.vocab_size or cfg["tokenizer"]["vocab_size"]
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    amp = device.type == "cuda"
    if args.clock == "cpu" and device.type != "cpu":
        sys.exit("error: --clock cpu times CPU work only; this run is on CUDA")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    torch.manual_seed(0)
    teachers = [build_model(models[n], vocab).to(device).eval().requires_grad_(False) for n in teacher_names]
    n_chunks = 4 * args.batch_size
    chunks = np.random.default_rng(0).integers(3, vocab, size=(n_chunks, args.seq_length))
    batches = [{"input_ids": torch.from_numpy(chunks[i:i + args.batch_size]),
                "chunk_index": torch.arange(i, i + args.batch_size)}
               for i in range(0, n_chunks, args.batch_size)]
    kd = KDSpec(alpha=0.5, temperature=args.temperature, kl_direction="forward",
                kl_reduction="batchmean")

    def student():
        torch.manual_seed(1)
        return build_model(models[args.student], vocab).to(device)

    results = {"device": torch.cuda.get_device_name() if amp else f"cpu ({torch.get_num_threads()} threads)",
               "student": args.student, "teachers": teacher_names, "vocab_size": vocab,
               "batch_size": args.batch_size, "seq_length": args.seq_length, "k": args.k,
               "params": {"student": count_parameters(student()),
                          "teachers": [count_parameters(t) for t in teachers]}}
    with tempfile.TemporaryDirectory() as tmp:
        build_cache(teachers, chunks, Path(tmp) / "cache", k=args.k, temperatures=[args.temperature],
                    batch_size=args.batch_size, progress=False)
        cache = TopKCache(Path(tmp) / "cache")
        ms = time_variants({
            "plain": Runner(LMObjective(student()), device, amp, clock),
            "live_kd": Runner(KDObjective(student(), teachers, kd), device, amp, clock),
            "cached_kd": Runner(CachedKDObjective(student(), cache, kd), device, amp, clock),
        }, batches, args.steps)
    results["clock"] = args.clock
    results["ms_per_step"] = {k: round(v, 2) for k, v in ms.items()}
    results["ratio_to_plain"] = {k: round(v / ms["plain"], 3) for k, v in ms.items()}
    for k, v in ms.items():
        print(f"{k:10s} {v:9.2f} ms/step  {v / ms['plain']:5.2f}x plain")
    print(json.dumps(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
