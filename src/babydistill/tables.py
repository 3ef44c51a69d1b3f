"""Result tables and figures from the workflow's own evaluation outputs (the `tables` stage).

Reads the per-model JSON files written by ``eval_blimp`` and ``finetune`` (and the per-pair TSVs
beside the BLiMP ones), and writes, under ``--out``:

- ``tables/zero_shot.{csv,md,tex}``: accuracy per suite, category and paradigm, a column per model
  (the papers' Table 1);
- ``tables/finetune.{csv,md,tex}``: the fine-tuning score per task (Table 2);
- ``tables/summary.{csv,md,tex}``: macro averages per suite and over fine-tuning tasks, plus, for
  each distilled student with a baseline, the difference and whether it holds under a paired,
  paradigm-stratified bootstrap over BLiMP pairs (95%);
- ``figures/zero_shot.{png,pdf}``, ``figures/finetune.{png,pdf}``: parallel-coordinate plots (one
  line per model across categories / tasks), ``figures/training_curves.{png,pdf}`` from each
  model's ``metrics.csv`` (train/eval loss, plus BLiMP accuracy per epoch when recorded).

With several seeds of a model (names ``<model>@<seed>``), cells show mean ± standard deviation.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .common import UserError, atomic_path, atomic_write_text, cli, read_json, setup_logging

BOOTSTRAP_SAMPLES = 2000


def base_name(model: str) -> str:
    """``student@2`` -> ``student``: seeds of one model share a column."""
    return model.split("@", 1)[0]


def load_blimp(files: list[str]) -> pd.DataFrame:
    """Long table: model, suite, category, paradigm, acc."""
    rows = []
    for f in files:
        r = read_json(f)
        for paradigm, p in r["paradigms"].items():
            rows.append({"model": r["model"], "suite": r["suite"],
                         "category": p.get("category") or "other", "paradigm": paradigm,
                         "acc": float(p["acc"])})
    if not rows:
        raise UserError("tables: no BLiMP results given (--blimp)")
    return pd.DataFrame(rows)


def load_finetune(files: list[str]) -> pd.DataFrame:
    rows = []
    for f in files:
        r = read_json(f)
        score = math.nan if r.get("skipped") else float(r["score"])
        rows.append({"model": r["model"], "task": r["task"], "metric": r.get("metric", ""),
                     "score": score})
    return pd.DataFrame(rows, columns=["model", "task", "metric", "score"])


def _mean_sd(values: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return "–"
    if len(v) == 1:
        return f"{100 * v.iloc[0]:.1f}"
    return f"{100 * v.mean():.1f} ± {100 * v.std(ddof=1):.1f}"


def _wide(long: pd.DataFrame, index: list[str], value: str, models: list[str]) -> pd.DataFrame:
    """Rows ``index``, a column per model (seeds folded into mean ± sd)."""
    long = long.assign(column=long["model"].map(base_name))
    table = long.groupby(index + ["column"], sort=False)[value].apply(_mean_sd).unstack("column")
    return table.reindex(columns=[m for m in models if m in table.columns])


def zero_shot_table(blimp: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Per suite: each paradigm, each category (macro over its paradigms), the suite average."""
    parts = []
    for suite, df in blimp.groupby("suite", sort=False):
        per_paradigm = df.assign(row=df["paradigm"], level="paradigm")
        per_category = (df.groupby(["model", "category"], as_index=False)["acc"].mean()
                        .assign(row=lambda d: d["category"], level="category"))
        overall = (df.groupby("model", as_index=False)["acc"].mean()
                   .assign(row="average", level="suite"))
        for part in (overall, per_category, per_paradigm):
            parts.append(part.assign(suite=suite)[["suite", "level", "row", "model", "acc"]])
    return _wide(pd.concat(parts), ["suite", "level", "row"], "acc", models)


def finetune_table(ft: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    if ft.empty:
        return pd.DataFrame()
    ft = ft.assign(row=ft["task"] + " (" + ft["metric"] + ")")
    return _wide(ft, ["row"], "score", models)


def load_pairs(blimp_json: str) -> pd.DataFrame:
    """The per-pair TSV beside a BLiMP result (``X.json`` -> ``X.pairs.tsv``)."""
    path = Path(blimp_json).with_suffix(".pairs.tsv")
    if not path.is_file():
        raise UserError(f"{path}: per-pair results not found (written by eval_blimp)")
    df = pd.read_csv(path, sep="\t", dtype={"pair_id": str})
    return df[["paradigm", "pair_id", "correct"]]


def paired_bootstrap(a: pd.DataFrame, b: pd.DataFrame, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = 0) -> dict:
    """Difference in macro accuracy (a - b) over paradigms, resampling pairs within each paradigm.

    Both models are scored on the same resampled pairs (paired). Returns the observed difference
    and its 95% percentile interval; the difference "holds" when the interval excludes zero.
    """
    merged = a.merge(b, on=["paradigm", "pair_id"], suffixes=("_a", "_b"))
    if merged.empty:
        raise UserError("bootstrap: the two models share no scored pairs")
    rng = np.random.default_rng(seed)
    observed, boot = [], np.zeros(samples)
    groups = [g for _, g in merged.groupby("paradigm")]
    for g in groups:
        d = g["correct_a"].to_numpy(float) - g["correct_b"].to_numpy(float)
        observed.append(d.mean())
        idx = rng.integers(0, len(d), size=(samples, len(d)))
        boot += d[idx].mean(axis=1)
    boot /= len(groups)
    low, high = np.percentile(boot, [2.5, 97.5])
    diff = float(np.mean(observed))
    return {"diff": diff, "low": float(low), "high": float(high),
            "holds": bool(low > 0 or high < 0)}


def summary_table(blimp: pd.DataFrame, ft: pd.DataFrame, models: list[str],
                  comparisons: list[tuple[str, str]], blimp_files: list[str]) -> pd.DataFrame:
    suites = (blimp.groupby(["model", "suite"], as_index=False)["acc"].mean())
    rows = _wide(suites.rename(columns={"suite": "row"}), ["row"], "acc", models)
    if not ft.empty:
        macro = ft.groupby("model", as_index=False)["score"].mean().assign(row="finetune (macro)")
        rows = pd.concat([rows, _wide(macro, ["row"], "score", models)])
    rows = rows.T
    rows.index.name = "model"
    by_key = {(r["model"], r["suite"]): f for f, r in ((f, read_json(f)) for f in blimp_files)}
    for student, baseline in comparisons:
        for suite in blimp["suite"].unique():
            fa, fb = by_key.get((student, suite)), by_key.get((baseline, suite))
            if not (fa and fb) or student not in rows.index:
                continue
            res = paired_bootstrap(load_pairs(fa), load_pairs(fb))
            mark = "holds" if res["holds"] else "n.s."
            rows.loc[student, f"{suite}: vs {baseline}"] = (
                f"{100 * res['diff']:+.1f} [{100 * res['low']:+.1f}, {100 * res['high']:+.1f}] {mark}")
    return rows.fillna("")


def provenance_table(models: list[str], provenance: list[str]) -> pd.DataFrame:
    """model -> directory, config spec digest, git commit (from each provenance.json)."""
    rows = []
    for item in provenance:
        name, path = item.split("=", 1)
        if not Path(path).is_file():
            continue
        p = read_json(path)
        code = p.get("code", {})
        rows.append({"model": name, "model_dir": p.get("model_dir", ""),
                     "spec_sha256": p.get("spec_sha256", "")[:12],
                     "commit": (code.get("commit") or "")[:12] + (" (dirty)" if code.get("dirty") else "")})
    df = pd.DataFrame(rows, columns=["model", "model_dir", "spec_sha256", "commit"])
    order = {m: i for i, m in enumerate(models)}
    return df.sort_values("model", key=lambda s: s.map(order)).set_index("model")


def write_table(df: pd.DataFrame, out: Path, name: str, caption: str) -> None:
    atomic_write_text(out / f"{name}.csv", df.to_csv())
    atomic_write_text(out / f"{name}.md", f"{caption}\n\n{df.to_markdown()}\n")
    latex = df.to_latex(caption=caption, label=f"tab:{name}", escape=True)
    atomic_write_text(out / f"{name}.tex", latex)


def _save_figure(fig, out: Path, name: str) -> None:
    for ext in ("png", "pdf"):
        with atomic_path(out / f"{name}.{ext}") as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", dpi=150)


def parallel_plot(long: pd.DataFrame, axis: str, value: str, title: str, out: Path,
                  name: str) -> None:
    """One line per model across ``axis`` values (the papers' parallel-coordinates figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.6 * long[axis].nunique() + 3), 4.5))
    if long.empty:  # e.g. every fine-tuning task skipped: say so rather than leave a gap
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
        _save_figure(fig, out, name)
        plt.close(fig)
        return
    mean = long.assign(model=long["model"].map(base_name)).groupby(["model", axis])[value].mean()
    table = mean.unstack(axis)
    x = np.arange(table.shape[1])
    for model, row in table.iterrows():
        ax.plot(x, 100 * row.to_numpy(float), marker="o", label=model)
    ax.set_xticks(x, table.columns, rotation=45, ha="right")
    ax.set_ylabel(f"{value} (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save_figure(fig, out, name)
    plt.close(fig)


def training_curves(metrics: dict[str, Path], out: Path) -> None:
    """Train and eval loss per step; a third panel, BLiMP accuracy per epoch, when any
    ``metrics.csv`` has ``blimp_acc`` values (training with ``blimp_every_epoch: true``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = {model: pd.read_csv(path) for model, path in metrics.items()}
    blimp = {m: df.dropna(subset=["blimp_acc"]) for m, df in frames.items() if "blimp_acc" in df}
    blimp = {m: b for m, b in blimp.items() if not b.empty}
    fig, axes = plt.subplots(1, 3 if blimp else 2, figsize=(16.5 if blimp else 11, 4))
    ax_train, ax_eval = axes[:2]
    for model, df in frames.items():
        tr = df.dropna(subset=["loss"])  # eval and BLiMP rows carry no train loss
        ax_train.plot(tr["step"], tr["loss"], label=model, lw=0.8)
        ev = df.dropna(subset=["eval_loss"]) if "eval_loss" in df else df.iloc[0:0]
        if not ev.empty:
            ax_eval.plot(ev["step"], ev["eval_loss"], marker="o", label=model)
    ax_train.set(title="train loss", xlabel="step", ylabel="loss")
    ax_eval.set(title="eval loss", xlabel="step", ylabel="loss")
    if blimp:
        ax_blimp = axes[2]
        for model, b in blimp.items():
            ax_blimp.plot(b["epoch"], 100 * b["blimp_acc"], marker="o", label=model)
        ax_blimp.set(title="BLiMP accuracy (fast scorer)", xlabel="epoch", ylabel="accuracy (%)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save_figure(fig, out, "training_curves")
    plt.close(fig)


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m babydistill.tables", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blimp", nargs="+", required=True, help="eval_blimp JSON files")
    ap.add_argument("--finetune", nargs="*", default=[], help="finetune JSON files")
    ap.add_argument("--metrics", nargs="*", default=[],
                    help="NAME=PATH of each model's training metrics.csv")
    ap.add_argument("--models", nargs="+", required=True, help="column order")
    ap.add_argument("--compare", nargs="*", default=[],
                    help="STUDENT=BASELINE pairs for the bootstrap")
    ap.add_argument("--provenance", nargs="*", default=[],
                    help="NAME=PATH of each model's provenance.json")
    ap.add_argument("--out", required=True, help="folder for tables/ and figures/")
    args = ap.parse_args(argv)
    setup_logging()

    out = Path(args.out)
    blimp = load_blimp(args.blimp)
    ft = load_finetune(args.finetune)
    comparisons = [tuple(c.split("=", 1)) for c in args.compare]
    tables, figures = out / "tables", out / "figures"

    write_table(zero_shot_table(blimp, args.models), tables, "zero_shot",
                "Zero-shot accuracy (%) per suite, category and paradigm.")
    write_table(finetune_table(ft, args.models), tables, "finetune",
                "Fine-tuning scores (%) on the validation sets.")
    write_table(summary_table(blimp, ft, args.models, comparisons, args.blimp), tables, "summary",
                "Summary: macro averages (%); student minus baseline with a 95% paired bootstrap "
                "interval over BLiMP pairs.")
    per_category = blimp.groupby(["model", "suite", "category"], as_index=False)["acc"].mean()
    per_category["axis"] = per_category["suite"] + ": " + per_category["category"]
    parallel_plot(per_category, "axis", "acc", "Zero-shot accuracy by category", figures,
                  "zero_shot")
    parallel_plot(ft.dropna(), "task", "score", "Fine-tuning score by task", figures, "finetune")
    write_table(provenance_table(args.models, args.provenance), tables, "provenance",
                "Where each column comes from: model directory, config spec and code commit.")
    metrics = dict(m.split("=", 1) for m in args.metrics)
    training_curves({k: Path(v) for k, v in metrics.items() if Path(v).is_file()}, figures)
    print(json.dumps({"tables": str(tables), "figures": str(figures)}))


if __name__ == "__main__":
    main()
