"""Benchmark: fp32 against bf16 autocast, side by side in one run, on this machine's device.

For each preset it times, in interleaved rounds (the machine may be shared, so each round
times both precisions back to back and the median round counts):

* a training step: the real :class:`babydistill.train.trainer.Trainer` step (forward,
  backward, clip, AdamW, schedule) with ``precision: fp32`` and ``precision: bf16`` (autocast
  around the forward; master weights, optimizer state and the loss stay fp32), two trainers
  built from the same initial weights;
* a teacher-cache batch through the cache's own code path,
  :func:`babydistill.distill.teacher_cache.teacher_logprobs` with ``precision`` fp32 and bf16
  (what ``python -m babydistill.distill.teacher_cache --precision`` runs: the forward under
  ``torch.inference_mode`` and the scorer's ``autocast_for``, log-softmax in fp32), with the
  agreement of the bf16 result with the fp32 one: the top-k ids kept (top-k as the cache takes
  it), KL(fp32 || bf16) per token, and the share of sentence-pair decisions (sum of
  log-probabilities of two random sequences) that differ (a proxy: the scorer's own path is
  ``--score-models`` below).

On a CPU without native bf16 instructions autocast still runs, slowly: the ratio says so.

    python benchmarks/precision.py [--presets llama-58M llama-tiny] [--batch-size 8]
        [--seq-length 128] [--rounds 3] [--threads N] [--json OUT]
        [--score-models DIR ... --score-suites DIR ... [--convention NAME]]

``--score-models`` / ``--score-suites`` also score each trained model folder on each suite
folder with the fast BLiMP scorer in fp32 and in bf16 (``--precision`` of
``babydistill.eval.blimp``), and report the time ratio, the decisions that differ and both
macro accuracies, per suite.

``--json OUT`` writes ``{"train_step_speedup": {preset: x}, "forward_speedup": {preset: x},
"topk_overlap": {...}, "kl_per_token": {...}, "decisions_differ": {...}, "native_bf16": bool}``,
and with scoring, ``"scorer": [{"model", "suite", "speedup", "pairs", "decisions_differ", ...}]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from babydistill.common import UserError, cli, write_json
from babydistill.config import DEFAULT_CONFIG, load_yaml
from babydistill.data.chunks import TrainChunks
from babydistill.distill.teacher_cache import teacher_logprobs
from babydistill.models.build import build_model, count_parameters
from babydistill.train.trainer import LMObjective, Trainer

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "workflow" / "demo.yaml"


def native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (Linux /proc/cpuinfo flags; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16", " bf16"))


def find_preset(name: str) -> dict:
    for config in (DEFAULT_CONFIG, DEMO_CONFIG):
        models = load_yaml(config).get("models") or {}
        if name in models:
            return models[name]
    raise UserError(f"--presets: {name!r} is in neither {DEFAULT_CONFIG} nor {DEMO_CONFIG} models:")


def timed(fn, sync) -> float:
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def train_speedup(preset: dict, args, sync) -> dict:
    """Median fp32 step time / median bf16 step time, rounds interleaved."""
    torch.manual_seed(0)
    model = build_model(preset, args.vocab_size)
    models = {"fp32": model, "bf16": copy.deepcopy(model)}
    rng = np.random.default_rng(0)
    steps = args.rounds * args.steps + args.warmup
    tokens = rng.integers(3, args.vocab_size, size=(steps * args.batch_size + 1) * args.seq_length)
    trainers, batches = {}, {}
    for p, m in models.items():
        data = TrainChunks(tokens, args.seq_length, random_offset=False, seed=0)
        spec = {"batch_size": args.batch_size, "epochs": 1, "warmup_steps": 0,
                "tensorboard": False, "precision": p}
        trainers[p] = Trainer(spec, LMObjective(m), data, None, None)
        batches[p] = data.batches(0, args.batch_size)
        for _ in range(args.warmup):
            trainers[p].train_step(next(batches[p]))
    times = {"fp32": [], "bf16": []}
    losses = {}
    for _ in range(args.rounds):
        for p in ("fp32", "bf16"):
            def run(p=p):
                for _ in range(args.steps):
                    losses[p] = trainers[p].train_step(next(batches[p]))[0]
            times[p].append(timed(run, sync) / args.steps)
    master = {p: next(m.parameters()).dtype for p, m in models.items()}
    return {"params": count_parameters(model),
            "step_s": {p: statistics.median(t) for p, t in times.items()},
            "speedup": statistics.median(times["fp32"]) / statistics.median(times["bf16"]),
            "loss": {p: float(v) for p, v in losses.items()},
            "loss_dtype": {p: str(v.dtype) for p, v in losses.items()},
            "master_dtype": {p: str(d) for p, d in master.items()}}


def forward_agreement(preset: dict, args, device, sync) -> dict:
    """Speed of a teacher-cache batch in bf16 and how far its log-probabilities move: the
    cache's own :func:`teacher_logprobs` (one teacher), fp32 against bf16."""
    torch.manual_seed(1)
    model = build_model(preset, args.vocab_size).to(device).eval()
    ids = torch.randint(3, args.vocab_size, (args.batch_size, args.seq_length), device=device)

    def logprobs(bf16: bool) -> torch.Tensor:
        return teacher_logprobs([model], ids, "bf16" if bf16 else "fp32")

    ref, low = logprobs(False), logprobs(True)
    times = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for p in ("fp32", "bf16"):
            times[p].append(timed(lambda p=p: logprobs(p == "bf16"), sync))
    k = min(args.k, args.vocab_size)
    top_ref, top_low = ref.topk(k, -1).indices, low.topk(k, -1).indices
    overlap = (top_ref.unsqueeze(-1) == top_low.unsqueeze(-2)).any(-1).float().mean()
    kl = (ref.exp() * (ref - low)).sum(-1).mean()
    # sentence-pair decisions: sequence i against sequence i+1, summed target log-probs
    tgt = ids[:, 1:].unsqueeze(-1)
    score = {n: lp[:, :-1].gather(-1, tgt).squeeze(-1).sum(-1) for n, lp in (("ref", ref), ("low", low))}
    dec = {n: s[:-1] > s[1:] for n, s in score.items()}
    return {"speedup": statistics.median(times["fp32"]) / statistics.median(times["bf16"]),
            "topk_overlap": float(overlap), "kl_per_token": float(kl),
            "decisions_differ": float((dec["ref"] != dec["low"]).float().mean()),
            "pairs": int(dec["ref"].numel())}


def scorer_agreement(model_dir: str, suite_dir: str, convention: str) -> dict:
    """One trained model on one suite: the fast scorer in fp32 and in bf16, side by side."""
    from babydistill.eval.blimp import load_model
    from babydistill.eval.scorer import load_suite, score_suite

    model, tok = load_model(model_dir)
    paradigms = load_suite(suite_dir)
    res, correct = {}, {}
    for p in ("fp32", "bf16", "fp32", "bf16"):  # twice each, interleaved: the second counts
        t = time.perf_counter()
        summary, rows = score_suite(model, tok, paradigms, 64, convention=convention, precision=p)
        res[p] = (time.perf_counter() - t, summary["accuracy"])
        correct[p] = [r[4] for r in rows]
    return {"model": Path(model_dir).name, "suite": Path(suite_dir).name, "convention": convention,
            "pairs": len(correct["fp32"]), "speedup": res["fp32"][0] / res["bf16"][0],
            "seconds": {p: v[0] for p, v in res.items()},
            "accuracy": {p: v[1] for p, v in res.items()},
            "decisions_differ": sum(a != b for a, b in zip(correct["fp32"], correct["bf16"]))}


@cli
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["llama-58M", "llama-tiny"],
                    help="presets of config.yaml or workflow/demo.yaml")
    ap.add_argument("--vocab-size", type=int, default=16000)
    ap.add_argument("--seq-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median counts)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--k", type=int, default=64, help="top-k of the teacher cache")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--score-models", nargs="*", default=[], help="trained model folders to score")
    ap.add_argument("--score-suites", nargs="*", default=[], help="suite folders of <paradigm>.jsonl")
    ap.add_argument("--convention", default="babylm-2025", help="scoring convention (default babylm-2025)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    res = {"device": str(device), "threads": torch.get_num_threads(), "native_bf16": native_bf16(),
           "batch_size": args.batch_size, "seq_length": args.seq_length,
           "train_step_speedup": {}, "forward_speedup": {}, "topk_overlap": {},
           "kl_per_token": {}, "decisions_differ": {}, "detail": {}}
    print(f"{device}, {res['threads']} threads, native bf16: {res['native_bf16']}, "
          f"batch {args.batch_size} x {args.seq_length}")
    print(f"{'preset':<14}{'params':>12}{'step fp32 s':>13}{'step bf16 s':>13}{'train x':>9}"
          f"{'fwd x':>8}{'top-k kept':>12}{'KL/token':>11}{'pairs differ':>14}")
    for name in args.presets:
        preset = find_preset(name)
        tr = train_speedup(preset, args, sync)
        fw = forward_agreement(preset, args, device, sync)
        res["train_step_speedup"][name] = tr["speedup"]
        res["forward_speedup"][name] = fw["speedup"]
        for key in ("topk_overlap", "kl_per_token", "decisions_differ"):
            res[key][name] = fw[key]
        res["detail"][name] = {"train": tr, "forward": fw}
        print(f"{name:<14}{tr['params']:>12,}{tr['step_s']['fp32']:>13.3f}{tr['step_s']['bf16']:>13.3f}"
              f"{tr['speedup']:>8.2f}x{fw['speedup']:>7.2f}x{fw['topk_overlap']:>12.4f}"
              f"{fw['kl_per_token']:>11.2e}{fw['decisions_differ']:>13.1%} ({fw['pairs']})")
    if args.score_models:
        res["scorer"] = []
        print(f"\n{'model':<28}{'suite':<22}{'pairs':>8}{'fp32 s':>9}{'bf16 s':>9}{'x':>7}"
              f"{'acc fp32':>10}{'acc bf16':>10}{'decisions differ':>18}")
    for model_dir in args.score_models:
        for suite_dir in args.score_suites:
            r = scorer_agreement(model_dir, suite_dir, args.convention)
            res["scorer"].append(r)
            print(f"{r['model']:<28}{r['suite']:<22}{r['pairs']:>8}{r['seconds']['fp32']:>9.1f}"
                  f"{r['seconds']['bf16']:>9.1f}{r['speedup']:>6.2f}x{100 * r['accuracy']['fp32']:>10.2f}"
                  f"{100 * r['accuracy']['bf16']:>10.2f}{r['decisions_differ']:>18}")
    if args.json:
        write_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
