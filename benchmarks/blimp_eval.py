"""Benchmark: our batched BLiMP scorer vs lm-eval 0.4.13, same model, same pairs, one run.

Prints, for each backend, the wall time of scoring the pairs end to end (loading the
model from its directory included; for lm-eval also building its tasks and requests),
pairs/second and accuracy, then the number of identical decisions and the largest
log-likelihood difference. Each time is the best of ``--repeat`` runs.

Usage::

    python benchmarks/blimp_eval.py [--model DIR] [--suite-dir /work/shared/data/blimp]
        [--paradigms adjunct_island,...] [--limit 200] [--batch-size 64] [--threads 1]
        [--repeat 1] [--json OUT]

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
from babydistill.eval_blimp import load_model, run_lmeval
from babydistill.scorer import Paradigm, load_suite, score_suite, summarize

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PARADIGMS = "adjunct_island,determiner_noun_agreement_1,irregular_past_participle_adjectives,wh_vs_that_with_gap"


def random_model(out: Path, paradigms: list[Paradigm], preset: str = "llama-tiny", vocab: int = 2000) -> Path:
    """A randomly initialised demo preset + a tokenizer trained on the suite's sentences."""
    from babydistill.models import build_model
    from babydistill.tokenizer import to_transformers, train_tokenizer

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



@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="saved HF model dir (default: a random llama-tiny)")
    ap.add_argument("--suite-dir", default="/work/shared/data/blimp")
    ap.add_argument("--paradigms", default=DEFAULT_PARADIGMS, help="comma-separated; 'all' for every file")
    ap.add_argument("--limit", type=int, default=200, help="pairs per paradigm")
    ap.add_argument("--batch-size", type=int, default=64, help="the same for both backends")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is steadiest on a shared machine")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    paradigms = load_suite(args.suite_dir, args.limit)
    if args.paradigms != "all":
        wanted = args.paradigms.split(",")
        paradigms = [p for p in paradigms if p.name in wanted]
    n = sum(len(p.pairs) for p in paradigms)
    with tempfile.TemporaryDirectory(prefix="blimp_bench_") as tmp:
        model_dir = Path(args.model) if args.model else random_model(Path(tmp) / "rand", paradigms)

        def fast():
            model, tok = load_model(model_dir)
            return score_suite(model, tok, paradigms, args.batch_size)

        def lmeval():
            good, bad = run_lmeval(model_dir, "bench", paradigms, Path(tmp) / "work", args.batch_size)
            return summarize(paradigms, good, bad)

        t_lm, (s_lm, rows_lm) = best_of(args.repeat, lmeval)
        t_fast, (s_fast, rows_fast) = best_of(args.repeat, fast)

    same = sum(a[4] == b[4] for a, b in zip(rows_lm, rows_fast))
    diff = max(abs(a[2] - b[2]) + abs(a[3] - b[3]) for a, b in zip(rows_lm, rows_fast))
    res = {
        "model": str(args.model or "random llama-tiny"), "paradigms": [p.name for p in paradigms],
        "n_pairs": n, "batch_size": args.batch_size, "threads": args.threads,
        "lmeval": {"seconds": t_lm, "pairs_per_s": n / t_lm, "accuracy": s_lm["accuracy"]},
        "fast": {"seconds": t_fast, "pairs_per_s": n / t_fast, "accuracy": s_fast["accuracy"]},
        "speedup": t_lm / t_fast, "identical_decisions": same, "max_ll_diff": diff,
    }
    print(f"{n} pairs from {len(paradigms)} paradigms, batch {args.batch_size}, {args.threads} threads")
    print(f"{'backend':8s} {'seconds':>8s} {'pairs/s':>9s} {'accuracy':>9s}")
    for k in ("lmeval", "fast"):
        print(f"{k:8s} {res[k]['seconds']:8.2f} {res[k]['pairs_per_s']:9.1f} {res[k]['accuracy']:9.4f}")
    print(f"speedup {res['speedup']:.2f}x; identical decisions {same}/{n}; max |ll diff| {diff:.2e}")
    if args.json:
        write_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
