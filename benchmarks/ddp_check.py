"""Run under torchrun: a few real Trainer steps in several processes, then check that every
rank holds the same weights (DDP kept them in sync) and report tokens/s.

    python -m torch.distributed.run --standalone --nproc_per_node=2 benchmarks/ddp_check.py \\
        [--preset llama-tiny --config workflow/demo.yaml] [--vocab-size 2000] [--steps 3]

Rank 0 prints one JSON line: world size, backend, device, tokens/s, max weight difference
between ranks (must be 0) and the loss.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.distributed as dist

from babydistill.config import load_yaml
from babydistill.data.chunks import TrainChunks
from babydistill.models.build import build_model
from babydistill.train.trainer import LMObjective, Trainer


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="llama-tiny")
    ap.add_argument("--config", default="workflow/demo.yaml")
    ap.add_argument("--vocab-size", type=int, default=2000)
    ap.add_argument("--seq-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8, help="global batch")
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = build_model(load_yaml(args.config)["models"][args.preset], args.vocab_size)
    tokens = np.random.default_rng(0).integers(3, args.vocab_size,
                                               size=((args.steps + 1) * args.batch_size + 1) * args.seq_length)
    data = TrainChunks(tokens, args.seq_length, random_offset=False, seed=0)
    spec = {"batch_size": args.batch_size, "epochs": 1, "warmup_steps": 0, "tensorboard": False}
    trainer = Trainer(spec, LMObjective(model), data, None, None)
    batches = data.batches(0, args.batch_size, rank=trainer.dist.rank, world_size=trainer.dist.world_size)
    trainer.train_step(next(batches))  # warm-up
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps - 1):
        loss, _ = trainer.train_step(next(batches))
    loss = float(loss)
    sync()
    dt = (time.perf_counter() - t0) / max(1, args.steps - 1)
    flat = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    world = dist.get_world_size() if dist.is_initialized() else 1
    diff = 0.0
    if world > 1:
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
    if trainer.dist.main:
        print(json.dumps({"world_size": world, "backend": dist.get_backend() if dist.is_initialized() else None,
                          "device": str(trainer.device), "tokens_per_s": args.batch_size * args.seq_length / dt,
                          "max_rank_weight_diff": diff, "loss": loss}))
    trainer.dist.close()


if __name__ == "__main__":
    main()
