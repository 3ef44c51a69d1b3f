"""Benchmark: training throughput and MFU of a preset, against this machine's matmul rate.

In one run it measures

* the matmul rate: a large square matmul (float32 on CPU, bf16 on CUDA) timed after
  warm-up, best of several, before and after the training steps (the machine may be shared);
* the training step's tokens/s: the real :class:`babydistill.train.trainer.Trainer` step
  (forward, backward, grad clip, AdamW, schedule) with :class:`LMObjective` on random tokens;

and prints MFU = 6 * params * tokens/s / matmul rate (all parameters, as asked; the
input embedding does no matmul, so the line below the table also gives the
non-embedding figure). ``--profile`` adds the top operators of one step.

Usage::

    python benchmarks/train_throughput.py [--preset llama-58M] [--config config.yaml]
        [--vocab-size 16000] [--seq-length 128] [--batch-size 8] [--steps 5] [--warmup 2]
        [--threads N] [--matmul-size N] [--profile] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from babydistill.common import UserError, cli, write_json
from babydistill.config import DEFAULT_CONFIG, load_yaml
from babydistill.data.chunks import TrainChunks
from babydistill.models.build import build_model, count_parameters
from babydistill.train.trainer import LMObjective, Trainer


def matmul_rate(device: torch.device, n: int, repeat: int = 5) -> float:
    """FLOP/s of an n x n matmul (float32 on CPU, bf16 on CUDA), best of ``repeat``."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):  # warm-up: thread pools, cuBLAS handles, clocks
        a @ b
    sync()
    best = float("inf")
    inner = 10 if device.type == "cuda" else 1
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - t) / inner)
    return 2 * n**3 / best


@cli
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="llama-58M")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--vocab-size", type=int, default=16000)
    ap.add_argument("--seq-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 8 on CPU, 64 on CUDA")
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--matmul-size", type=int, default=None, help="default: 2048 CPU, 8192 CUDA")
    ap.add_argument("--compile", action="store_true", help="torch.compile (CUDA only)")
    ap.add_argument("--profile", action="store_true", help="print the top operators of one step")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = load_yaml(args.config).get("models") or {}
    if args.preset not in models:
        raise UserError(f"{args.config}: models.{args.preset}: no such preset")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    bs = args.batch_size or (64 if cuda else 8)
    n = args.matmul_size or (8192 if cuda else 2048)

    rate_before = matmul_rate(device, n)

    torch.manual_seed(0)
    model = build_model(models[args.preset], args.vocab_size)
    params = count_parameters(model)
    emb = model.get_input_embeddings().weight.numel()
    total_steps = args.warmup + args.steps + (1 if args.profile else 0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, args.vocab_size, size=(total_steps * bs + 1) * args.seq_length)
    data = TrainChunks(tokens, args.seq_length, random_offset=False, seed=0)
    spec = {"batch_size": bs, "epochs": 1, "warmup_steps": 0, "compile": args.compile,
            "tensorboard": False}
    trainer = Trainer(spec, LMObjective(model), data, None, None)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    batches = data.batches(0, bs)
    for _ in range(args.warmup):
        trainer.train_step(next(batches))
    sync()
    t = time.perf_counter()
    for _ in range(args.steps):
        loss, _ = trainer.train_step(next(batches))
    loss = float(loss)  # syncs
    sync()
    dt = (time.perf_counter() - t) / args.steps
    tok_s = bs * args.seq_length / dt
    rate_after = matmul_rate(device, n)
    rate = max(rate_before, rate_after)
    train_flops = 6 * params * tok_s
    res = {
        "preset": args.preset, "params": params, "device": str(device),
        "threads": torch.get_num_threads(), "batch_size": bs, "seq_length": args.seq_length,
        "step_s": dt, "tokens_per_s": tok_s, "train_flops": train_flops,
        "matmul_size": n, "matmul_dtype": "bf16" if cuda else "float32",
        "matmul_flops_before": rate_before, "matmul_flops_after": rate_after,
        "mfu": train_flops / rate, "mfu_nonembedding": 6 * (params - emb) * tok_s / rate,
        "loss": loss,
    }
    print(f"{args.preset}: {params:,} params, {device}, {res['threads']} threads, "
          f"batch {bs} x {args.seq_length} tokens")
    print(f"{'measure':<38}{'value':>16}")
    print(f"{'matmul rate (' + res['matmul_dtype'] + f', n={n}), GFLOP/s':<38}{rate / 1e9:>16.1f}"
          f"   (before {rate_before / 1e9:.1f}, after {rate_after / 1e9:.1f})")
    print(f"{'training step, s':<38}{dt:>16.3f}")
    print(f"{'training tokens/s':<38}{tok_s:>16.1f}")
    print(f"{'training 6*N*tokens/s, GFLOP/s':<38}{train_flops / 1e9:>16.1f}")
    print(f"{'MFU (ratio)':<38}{res['mfu']:>16.1%}")
    print(f"(non-embedding params: MFU {res['mfu_nonembedding']:.1%})")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            trainer.train_step(next(batches))
            sync()
        key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=12))
    if args.json:
        write_json(args.json, res)
    return res


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
