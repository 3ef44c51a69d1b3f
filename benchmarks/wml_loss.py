"""Benchmark: weighted mutual learning's KL terms, pairwise vs in N passes, side by side.

``babydistill.distill.losses.wml_loss`` sums the N(N-1) terms ``w_j KL(p_j || p_i)`` through the
identity ``sum_{i != j} KL(p_j || p_i) = sum_v p_j (N log p_j - sum_i log p_i)``: N passes over
the vocabulary instead of N(N-1). This times forward + backward of the whole loss both ways on
the same random peer logits, taking turns, and prints the median of each and their ratio, plus
the largest difference in value and gradient.

Usage::

    python benchmarks/wml_loss.py [--peers 4] [--batch 32] [--seq 128] [--vocab 2000]
        [--reduction token|batchmean] [--steps 15] [--threads 1] [--clock wall|cpu]

The defaults are the demo's WML run (4 peers, batch 32 x 128, its ~1,800-token vocabulary
rounded up); ``--vocab 16000`` is the papers'.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from babydistill.common import cli
from babydistill.distill.losses import ce_loss, reduce_positions, wml_loss


def pairwise_wml_loss(logits, labels, w, alpha, reduction):
    """The loss as the reference writes it: one KL per ordered pair of peers."""
    log_p = [F.log_softmax(z.float(), dim=-1) for z in logits]
    total_ce = sum(w[i] * ce_loss(z, labels) for i, z in enumerate(logits))
    total_kl = 0.0
    for i, lp_i in enumerate(log_p):
        for j, lp_j in enumerate(log_p):
            if i != j:
                per_pos = (lp_j.exp() * (lp_j - lp_i)).sum(-1)
                total_kl = total_kl + w[j] * reduce_positions(per_pos, labels, reduction)
    return (1.0 - alpha) * total_ce + alpha * total_kl


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=2000)
    ap.add_argument("--reduction", choices=["token", "batchmean"], default="token")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    logits = [torch.randn(args.batch, args.seq, args.vocab, requires_grad=True) for _ in range(args.peers)]
    labels = torch.randint(0, args.vocab, (args.batch, args.seq))
    w = torch.full((args.peers,), 1.0 / args.peers)

    def n_pass():
        return wml_loss(logits, labels, w, alpha=0.5, reduction=args.reduction)[0]

    def pairwise():
        return pairwise_wml_loss(logits, labels, w, 0.5, args.reduction)

    times = {"pairwise": [], "n_pass": []}
    for step in range(args.steps + 1):
        for name, fn in (("pairwise", pairwise), ("n_pass", n_pass)):
            t0 = clock()
            loss = fn()
            torch.autograd.grad(loss, logits)
            if step:  # the first round warms up
                times[name].append(clock() - t0)
    a, b = pairwise(), n_pass()
    ga, gb = torch.autograd.grad(a, logits), torch.autograd.grad(b, logits)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.peers} peers, [{args.batch}, {args.seq}, {args.vocab}], {args.reduction}, "
          f"{args.threads} thread(s), {args.clock} clock, median of {args.steps}")
    print(f"pairwise ({args.peers * (args.peers - 1)} KL passes) {1000 * med['pairwise']:8.1f} ms")
    print(f"n-pass   ({args.peers} passes)       {1000 * med['n_pass']:8.1f} ms")
    print(f"ratio n-pass / pairwise {med['n_pass'] / med['pairwise']:.2f}; |loss diff| "
          f"{abs(a.item() - b.item()):.2e}; max |grad diff| {max((x - y).abs().max().item() for x, y in zip(ga, gb)):.2e}")


if __name__ == "__main__":
    main()
