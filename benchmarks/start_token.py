"""data.start_token side by side: a finished run's teachers retrained with ``<s>`` in front of
every chunk, then both versions scored under all three BabyLM conventions, in one run.

    python benchmarks/start_token.py                       # after `make demo`: results/demo
    python benchmarks/start_token.py --run-dir results/laptop --models llama-teacher gpt2-teacher --limit 100

Each model is retrained from its own ``provenance.json`` spec with ``"start_token": "chunk"``
and nothing else changed (same tokens, tokenizer, seed, schedule) into
``RUN_DIR/start_token/<model>``; the originals are read as they are. It prints one markdown
row per (model, start token): the best eval loss of the run (on the run's own eval chunks,
which with ``<s>`` hold 127 corpus tokens each, so the two losses are close but not over the
same targets) and the macro accuracy on each suite under babylm-2023, -2024 and -2025 (the
fast scorer). ``--json OUT`` writes the same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CONVENTIONS = ("babylm-2023", "babylm-2024", "babylm-2025")


def run(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if r.returncode:
        sys.exit(f"error: {' '.join(cmd[:4])} failed; see {log}")


def retrain(run_dir: Path, model: str, out: Path) -> Path:
    """The model retrained with <s> at every chunk start (skipped when already there)."""
    spec = json.loads((run_dir / "models" / model / "provenance.json").read_text())["spec"]
    spec["start_token"] = "chunk"
    dest = out / model
    if not (dest / "train_summary.json").is_file():
        run([sys.executable, "-m", "babydistill.train.pretrain", "--spec", json.dumps(spec),
             "--train", str(run_dir / "tokens" / "train"), "--dev", str(run_dir / "tokens" / "dev"),
             "--tokenizer", str(run_dir / "tokenizer"), "--out", str(dest),
             "--checkpoint-dir", str(out / "checkpoints" / model)], out / f"{model}.train.log")
    return dest


def score(model_dir: Path, suite_dir: Path, convention: str, out: Path, limit: int | None) -> float:
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file():
        run([sys.executable, "-m", "babydistill.eval.blimp", "--model", str(model_dir),
             "--suite-dir", str(suite_dir), "--suite", suite_dir.name, "--out", str(out),
             "--pairs-out", str(out.with_suffix(".pairs.tsv")), "--backend", "fast",
             "--convention", convention, *(["--limit", str(limit)] if limit else [])],
            out.with_suffix(".log"))
    return 100 * json.loads(out.read_text())["accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", default="results/demo", help="a finished run's results folder")
    ap.add_argument("--models", nargs="+", default=["llama-tiny", "gpt2-tiny"])
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--limit", type=int, default=None,
                    help="first N pairs per paradigm (the run's eval.blimp.limit: 100 for the laptop)")
    args = ap.parse_args()
    run_dir = Path(args.run_dir)
    suites = sorted(p for p in (run_dir / "data" / "suites").iterdir() if p.is_dir())
    out = run_dir / "start_token"
    evals = out / (f"eval-limit{args.limit}" if args.limit else "eval")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models:
        for start, model_dir in (("none", run_dir / "models" / model),
                                 ("chunk", retrain(run_dir, model, out))):
            summary = json.loads((model_dir / "train_summary.json").read_text())
            row = {"model": model, "start_token": start,
                   "eval_loss": round(summary["best_eval_loss"], 3)}
            for suite in suites:
                for c in CONVENTIONS:
                    row[f"{suite.name} {c}"] = round(score(
                        model_dir, suite, c, evals / start / suite.name / c / f"{model}.json",
                        args.limit), 1)
            rows.append(row)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
