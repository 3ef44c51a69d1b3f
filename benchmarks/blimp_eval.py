"""Benchmark: our batched BLiMP scorer vs lm-eval 0.4.13, same model, same pairs, one run.

Prints, for each backend, the wall time of scoring the pairs end to end (loading the
model from its directory included; for lm-eval also building its tasks and requests),
pairs/second and accuracy, then the number of identical decisions and the largest
log-likelihood difference. Each time is the best of ``--repeat`` runs. The fast scorer is
timed twice, under babylm-2024 (the convention lm-eval's decisions are compared in) and
babylm-2025 (no prefix, first token unscored), and the ratio of the two is printed.

Usage::

    python benchmarks/blimp_eval.py [--model DIR] [--suite-dir ../shared/data/blimp]
        [--paradigms all|adjunct_island,...] [--limit N] [--lmeval-limit 5 --lmeval-limit 20]
        [--batch-size 64] [--threads 1] [--repeat 1] [--clock wall|cpu] [--json OUT]

Default: every pair of every paradigm for both backends. lm-eval is ~10x slower, so on the
whole of BLiMP (67,000 pairs) give ``--lmeval-limit`` sizes: lm-eval then runs on the first
N pairs per paradigm, its time on all pairs is the straight line through those runs (fixed
start-up + seconds per pair), and decisions are compared on the pairs both scored.

Without ``--model`` a random ``llama-tiny`` (workflow/demo.yaml's preset) is built with a
project tokenizer trained on the benchmark sentences, in a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml

from timing import best_of

from babydistill.common import cli, write_json
from babydistill.eval.blimp import load_model, run_lmeval
from babydistill.eval.scorer import Paradigm, load_suite, score_suite, summarize

REPO = Path(__file__).resolve().parents[1]


def random_model(out: Path, paradigms: list[Paradigm], preset: str = "llama-tiny", vocab: int = 2000) -> Path:
    """A randomly initialised demo preset + a tokenizer trained on the suite's sentences."""
    from babydistill.models.build import build_model
    from babydistill.data.tokenizer import to_transformers, train_tokenizer

    text = out / "text.txt"
    out.mkdir(parents=True, exist_ok=True)
    text.write_text("\n".join(s for par in paradigms for p in par.pairs for s in (p.good, p.bad)), encoding="utf-8")
    tok = train_tokenizer([text], vocab_size=vocab, min_frequency=2)
    cfg = yaml.safe_load((REPO / "workflow" / "demo.yaml").read_text())["models"][preset]
    torch.manual_seed(0)
    model_dir = out / "model"
    build_model(cfg, tok.get_vocab_size(), preset).save_pretrained(model_dir)
    to_transformers(tok).save_pretrained(model_dir)
    return model_dir



def lmeval_fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed seconds, seconds per pair) of lm-eval from (pairs, seconds) runs: a least-squares
    line through two or more subset sizes (one point: no fixed part)."""
    if len(points) == 1:
        return 0.0, points[0][1] / points[0][0]
    n = len(points)
    mx, my = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - slope * mx, slope


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="saved HF model dir (default: a random llama-tiny)")
    ap.add_argument("--suite-dir", default=str(REPO.parent / "shared" / "data" / "blimp"))
    ap.add_argument("--paradigms", default="all", help="comma-separated names, or 'all' (default)")
    ap.add_argument("--limit", type=int, default=None, help="pairs per paradigm (default: all)")
    ap.add_argument("--lmeval-limit", type=int, action="append", default=None,
                    help="run lm-eval on the first N pairs per paradigm only (repeat for several "
                         "sizes: its time on all pairs is then a straight-line fit); default: "
                         "lm-eval on the same pairs as the scorer")
    ap.add_argument("--batch-size", type=int, default=64, help="the same for both backends")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is steadiest on a shared machine")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="cpu: the process's CPU time (with --threads 1: steady on a loaded machine)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def pick(limit):
        pars = load_suite(args.suite_dir, limit)
        if args.paradigms != "all":
            wanted = args.paradigms.split(",")
            pars = [p for p in pars if p.name in wanted]
        return pars

    paradigms = pick(args.limit)
    n = sum(len(p.pairs) for p in paradigms)
    lm_limits = sorted(set(args.lmeval_limit or [args.limit]), key=lambda x: (x is not None, x or 0))
    with tempfile.TemporaryDirectory(prefix="blimp_bench_") as tmp:
        model_dir = Path(args.model) if args.model else random_model(Path(tmp) / "rand", pick(200))

        def fast(convention="babylm-2024"):
            model, tok = load_model(model_dir)
            return score_suite(model, tok, paradigms, args.batch_size, convention=convention)

        lm_runs = []  # (limit, paradigms, seconds, summary, rows)
        for lim in lm_limits:
            pars = pick(lim if args.limit is None or lim is None else min(lim, args.limit))

            def lmeval(pars=pars, lim=lim):
                good, bad = run_lmeval(model_dir, "bench", pars, Path(tmp) / f"work{lim}", args.batch_size)
                return summarize(pars, good, bad)

            t, (summ, rows) = best_of(args.repeat, lmeval, clock)
            lm_runs.append((lim, pars, t, summ, rows))
        t_fast, (s_fast, rows_fast) = best_of(args.repeat, fast, clock)
        t_2025, (s_2025, rows_2025) = best_of(args.repeat, lambda: fast("babylm-2025"), clock)

    fast_by_pair = {(r[0], r[1]): r for r in rows_fast}
    _, pars_lm, _, s_lm, rows_lm = lm_runs[-1]  # the largest lm-eval run: compare decisions
    both = [(a, fast_by_pair[(a[0], a[1])]) for a in rows_lm]
    same = sum(a[4] == b[4] for a, b in both)
    diff = max(abs(a[2] - b[2]) + abs(a[3] - b[3]) for a, b in both)
    points = [(sum(len(p.pairs) for p in pars), t) for _, pars, t, _, _ in lm_runs]
    fixed, per_pair = lmeval_fit(points)
    t_lm_all = fixed + per_pair * n  # lm-eval's time on the scorer's pairs (measured when equal)
    res = {
        "model": str(args.model or "random llama-tiny"), "n_paradigms": len(paradigms),
        "n_pairs": n, "batch_size": args.batch_size, "threads": args.threads, "clock": args.clock,
        "lmeval_runs": [{"pairs": p, "seconds": t} for p, t in points],
        "lmeval": {"seconds_all_pairs": t_lm_all, "fixed_seconds": fixed, "pairs_per_s": 1 / per_pair,
                   "accuracy_on_its_pairs": s_lm["accuracy"],
                   "extrapolated": points[-1][0] != n},
        "fast": {"seconds": t_fast, "pairs_per_s": n / t_fast, "accuracy": s_fast["accuracy"]},
        "speedup": t_lm_all / t_fast, "compared_pairs": len(both), "identical_decisions": same,
        "max_ll_diff": diff,
        "fast_babylm_2025": {"seconds": t_2025, "pairs_per_s": n / t_2025, "accuracy": s_2025["accuracy"],
                             "decisions_differing_from_2024": sum(a[4] != b[4] for a, b in zip(rows_fast, rows_2025)),
                             "time_vs_2024": t_2025 / t_fast},
    }
    print(f"{n} pairs from {len(paradigms)} paradigms, batch {args.batch_size}, {args.threads} threads")
    for p, t in points:
        print(f"lmeval   {t:8.2f} s on {p} pairs ({p / t:.1f} pairs/s)")
    how = "extrapolated: " + f"{fixed:.1f} s + {per_pair * 1e3:.2f} ms/pair" if res["lmeval"]["extrapolated"] else "measured"
    print(f"lmeval   {t_lm_all:8.2f} s on all {n} pairs ({how})")
    print(f"fast     {t_fast:8.2f} s on all {n} pairs ({n / t_fast:.1f} pairs/s), accuracy {s_fast['accuracy']:.4f}")
    print(f"speedup {res['speedup']:.2f}x; identical decisions {same}/{len(both)} (pairs both scored); "
          f"max |ll diff| {diff:.2e}")
    r25 = res["fast_babylm_2025"]
    print(f"fast     {t_2025:8.2f} s on all {n} pairs ({n / t_2025:.1f} pairs/s) under babylm-2025, accuracy "
          f"{s_2025['accuracy']:.4f}, {r25['decisions_differing_from_2024']} decisions differ from babylm-2024; "
          f"time babylm-2025 / babylm-2024 = {r25['time_vs_2024']:.2f}")
    if args.json:
        write_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
