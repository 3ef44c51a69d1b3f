"""The papers' figures from the workflow's evaluation outputs and training logs (called by
:mod:`babydistill.report.tables`; the intervals from :mod:`babydistill.report.stats`).

- Zero-shot: Baby Llama's parallel-coordinates form, one line per model across categories (the
  lines only guide the eye), a panel per suite, axis labels without the suite prefix, a dashed
  chance line at 50%, and a 95% interval on each point (bootstrap over pairs within paradigms;
  with several seeds, seeds first, then pairs).
- Fine-tuning: the same form across tasks, (Super)GLUE and MSGS in separate panels, each axis
  labelled with its task's metric (MCC, F1, accuracy); 95% t-intervals over seeds when there
  are several (one score per run gives no interval).
- Training curves: train loss of plain-CE runs and of distillation runs (KD, WML; their losses
  carry the T²-scaled KL and sit on another scale) on separate panels, eval loss per epoch, and
  BLiMP accuracy per epoch when recorded.
- WML peer weights over steps, from a run's ``wml_weights.csv`` (``step,w1..wN``).

Every figure colours a model the same way (:class:`Palette`, keyed by model name) and puts its
legend outside the data. Each is written as ``.png`` and ``.pdf``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from babydistill.common import UserError, atomic_path
from babydistill.config.names import base_name, peer
from babydistill.report.stats import (BOOTSTRAP_SAMPLES, instances_by_run, paradigm_weights,
                                      suite_draws)

# Okabe-Ito first (colour-blind safe; its yellow, faint on white, last), then distinct tab10
# hues, then tab20's light shades for long model lists.
BASE_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
                "#9467BD", "#8C564B", "#7F7F7F", "#BCBD22", "#D62728", "#F0E442"]
METRIC_LABEL = {"mcc": "MCC", "f1": "F1", "acc": "accuracy"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class Palette:
    """One colour per model name, fixed by the run's model order, the same in every figure;
    names outside that order (e.g. WML peers) get the next free colour, in order of asking."""

    def __init__(self, models: list[str]):
        from matplotlib import colormaps

        light = [colormaps["tab20"](i) for i in range(1, 20, 2)]
        self._colours = BASE_COLOURS + light
        self._of: dict[str, object] = {}
        for m in models:
            self(m)

    def __call__(self, model: str):
        base = base_name(model)
        if base not in self._of:
            self._of[base] = self._colours[len(self._of) % len(self._colours)]
        return self._of[base]


def save_figure(fig, out: Path, name: str) -> None:
    for ext in ("png", "pdf"):
        # a fixed creation date keeps the PDF (and so the outputs) byte-identical across runs
        meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
        with atomic_path(out / f"{name}.{ext}") as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", dpi=150, metadata=meta)


def _legend_outside(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0, frameon=False)


def parallel_axes(ax, points: pd.DataFrame, axes: list[str], labels: list[str], models: list[str],
                  palette: Palette, chance: float | None = None) -> None:
    """``points``: model, axis, value, low, high (already in display units). Points of different
    models are dodged a little so their interval bars stay apart."""
    x = np.arange(len(axes))
    width = 0.35 if len(models) > 1 else 0.0
    for i, model in enumerate(models):
        p = points[points["model"] == model].set_index("axis").reindex(axes)
        if p["value"].isna().all():
            continue
        dx = (i / (len(models) - 1) - 0.5) * width if len(models) > 1 else 0.0
        y = p["value"].to_numpy(float)
        colour = palette(model)
        ax.plot(x + dx, y, color=colour, lw=1.0, alpha=0.7)
        err = np.vstack([y - p["low"].to_numpy(float), p["high"].to_numpy(float) - y])
        has_err = ~np.isnan(err).any(axis=0)
        ax.errorbar((x + dx)[has_err], y[has_err], yerr=err[:, has_err], fmt="none",
                    ecolor=colour, elinewidth=1.0, capsize=2)
        ax.plot(x + dx, y, "o", color=colour, ms=4, label=model)
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1.0, label="chance")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(axes) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def zero_shot_points(blimp: pd.DataFrame, models: list[str], mode: str, samples: int,
                     draws_from: pd.DataFrame | None = None) -> pd.DataFrame:
    """model, suite, axis (category), value, low, high (%). ``draws_from``: the full results,
    whose bootstrap replicates (shared with the tables) serve a subset of models."""
    rows = []
    for suite, df in blimp.groupby("suite", sort=False):
        draws = suite_draws(draws_from if draws_from is not None else blimp, suite, samples)
        inst = instances_by_run(df["model"])
        for cat in dict.fromkeys(df["category"]):
            w = paradigm_weights(df, mode, cat)
            for model in models:
                if model not in inst:
                    continue
                mean, low, high = draws.interval(inst[model], w)
                rows.append({"model": model, "suite": suite, "axis": cat,
                             "value": 100 * mean, "low": 100 * low, "high": 100 * high})
    return pd.DataFrame(rows)


def zero_shot_figure(blimp: pd.DataFrame, models: list[str], mode: str, palette: Palette,
                     out: Path, name: str, samples: int = BOOTSTRAP_SAMPLES,
                     draws_from: pd.DataFrame | None = None) -> None:
    """A panel per suite; categories on the x axis; one line per model."""
    plt = _plt()
    if blimp.empty:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
        save_figure(fig, out, name)
        plt.close(fig)
        return
    points = zero_shot_points(blimp, models, mode, samples, draws_from)
    suites = list(dict.fromkeys(blimp["suite"]))
    widths = [max(2.5, 0.45 * blimp[blimp["suite"] == s]["category"].nunique()) for s in suites]
    fig, axes = plt.subplots(1, len(suites), figsize=(sum(widths) + 2.5, 4.5), sharey=True,
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    n_seeds = blimp.groupby(blimp["model"].map(base_name))["model"].nunique().max()
    for ax, suite in zip(axes[0], suites):
        cats = list(dict.fromkeys(blimp[blimp["suite"] == suite]["category"]))
        parallel_axes(ax, points[points["suite"] == suite], cats,
                      [c.replace("_", " ") for c in cats], models, palette, chance=50.0)
        ax.set_title(suite, fontsize=10)
    axes[0][0].set_ylabel("accuracy (%)")
    interval = ("95% interval: bootstrap over seeds, then pairs; pairs only for 1 seed"
                if n_seeds > 1 else "95% interval: bootstrap over pairs")
    fig.suptitle(f"Zero-shot accuracy by category ({mode}; {interval})", fontsize=10)
    _legend_outside(fig, axes[0][-1])
    save_figure(fig, out, name)
    plt.close(fig)


def finetune_points(ft: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """model, axis (task), value, low, high (×100): mean over seeds, t-interval when >= 2."""
    from scipy import stats

    rows = []
    ft = ft.dropna(subset=["score"])
    for (task, model), g in ft.groupby([ft["task"], ft["model"].map(base_name)], sort=False):
        if model not in models:
            continue
        v = 100 * g["score"].to_numpy(float)
        mean, low, high = float(v.mean()), math.nan, math.nan
        if len(v) >= 2:
            half = float(stats.t.ppf(0.975, len(v) - 1)) * v.std(ddof=1) / math.sqrt(len(v))
            low, high = mean - half, mean + half
        rows.append({"model": model, "axis": task, "value": mean, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["model", "axis", "value", "low", "high"])


def finetune_figure(ft: pd.DataFrame, models: list[str], palette: Palette, out: Path,
                    name: str) -> None:
    """(Super)GLUE and MSGS tasks in separate panels; each tick names the task and its metric."""
    plt = _plt()
    scored = ft.dropna(subset=["score"])
    if scored.empty:  # e.g. every fine-tuning task skipped: say so rather than leave a gap
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
        save_figure(fig, out, name)
        plt.close(fig)
        return
    points = finetune_points(scored, models)
    tasks = list(dict.fromkeys(scored["task"]))
    metric = scored.drop_duplicates("task").set_index("task")["metric"]
    groups = [("(Super)GLUE", [t for t in tasks if not t.startswith("msgs")]),
              ("MSGS", [t for t in tasks if t.startswith("msgs")])]
    groups = [(g, ts) for g, ts in groups if ts]
    widths = [max(2.5, 0.7 * len(ts)) for _, ts in groups]
    fig, axes = plt.subplots(1, len(groups), figsize=(sum(widths) + 2.5, 4.5),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax, (group, ts) in zip(axes[0], groups):
        labels = [f"{t.removeprefix('msgs_')}\n({METRIC_LABEL.get(metric[t], metric[t])})"
                  for t in ts]
        parallel_axes(ax, points, ts, labels, models, palette)
        ax.set_title(group, fontsize=10)
        ax.set_ylabel("score (×100)")
    seeds = scored.groupby(scored["model"].map(base_name))["model"].nunique().max()
    note = "95% t-interval over seeds" if seeds > 1 else "1 seed: no interval"
    fig.suptitle(f"Fine-tuning by task ({note})", fontsize=10)
    _legend_outside(fig, axes[0][-1])
    save_figure(fig, out, name)
    plt.close(fig)


def training_curves(metrics: dict[str, Path], distilled: set[str], palette: Palette,
                    out: Path) -> None:
    """Panels: train loss of CE runs, train loss of distillation runs, eval loss per epoch, and
    BLiMP accuracy per epoch when any ``metrics.csv`` has ``blimp_acc`` values."""
    plt = _plt()
    frames = {model: pd.read_csv(path) for model, path in metrics.items()}
    is_kd = {m: base_name(m) in distilled for m in frames}
    blimp = {m: df.dropna(subset=["blimp_acc"]) for m, df in frames.items() if "blimp_acc" in df}
    blimp = {m: b for m, b in blimp.items() if not b.empty}
    panels = ["ce"] * any(not k for k in is_kd.values()) + ["kd"] * any(is_kd.values())
    panels += ["eval"] + ["blimp"] * bool(blimp)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 2.5, 3.8),
                             squeeze=False)
    ax_of = dict(zip(panels, axes[0]))
    for model, df in frames.items():  # seeds of a model share its colour
        colour = palette(model)
        tr = df.dropna(subset=["loss"])  # eval and BLiMP rows carry no train loss
        ax_of["kd" if is_kd[model] else "ce"].plot(tr["step"], tr["loss"], color=colour, lw=0.8)
        ev = df.dropna(subset=["eval_loss"]) if "eval_loss" in df else df.iloc[0:0]
        if not ev.empty:
            ax_of["eval"].plot(ev["epoch"], ev["eval_loss"], marker="o", ms=3, color=colour)
        if model in blimp:
            b = blimp[model]
            ax_of["blimp"].plot(b["epoch"], 100 * b["blimp_acc"], marker="o", color=colour)
    titles = {"ce": ("train loss: cross-entropy runs", "step", "loss (nats/token)"),
              "kd": ("train loss: distillation objective (KD, WML)", "step", "loss"),
              "eval": ("eval loss (dev cross-entropy)", "epoch", "loss (nats/token)"),
              "blimp": ("BLiMP accuracy (fast scorer)", "epoch", "accuracy (%)")}
    if "kd" in ax_of:  # KD losses of different T and reductions span decades
        kd_losses = pd.concat([frames[m]["loss"] for m in frames if is_kd[m]]).dropna()
        if len(kd_losses) and kd_losses.min() > 0 and kd_losses.max() / kd_losses.min() > 20:
            ax_of["kd"].set_yscale("log")
    for key, ax in ax_of.items():
        t, xl, yl = titles[key]
        ax.set_title(t, fontsize=10)
        ax.set(xlabel=xl, ylabel=yl)
        ax.grid(alpha=0.3)
    # one legend for every model, outside the panels
    handles = {m: plt.Line2D([], [], color=palette(m), lw=1.5) for m in
               dict.fromkeys(base_name(k) for k in frames)}
    fig.legend(handles.values(), handles.keys(), fontsize=8, loc="upper left",
               bbox_to_anchor=(1.0, 0.95), frameon=False)
    fig.tight_layout()
    save_figure(fig, out, "training_curves")
    plt.close(fig)


def read_wml_weights(path: Path) -> pd.DataFrame:
    """``step,w1..wN`` (a column per peer)."""
    df = pd.read_csv(path)
    peers = [c for c in df.columns if re.fullmatch(r"w\d+", c)]
    if "step" not in df.columns or not peers:
        raise UserError(f"{path}: expected columns step,w1..wN (WML peer weights)")
    return df[["step", *peers]]


def wml_weights_figure(weights: dict[str, Path], palette: Palette, out: Path) -> bool:
    """Peer weights over training steps, a panel per WML run; nothing when no run wrote them."""
    if not weights:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(weights), figsize=(4.5 * len(weights) + 1.5, 3.5),
                             squeeze=False)
    for ax, (run, path) in zip(axes[0], weights.items()):
        df = read_wml_weights(path)
        peers = [c for c in df.columns if c != "step"]
        for c in peers:  # peer k is model <run>-peerk: its colour in every figure
            ax.plot(df["step"], df[c], color=palette(peer(run, int(c[1:]))), label=f"peer {c[1:]}")
        ax.axhline(1 / len(peers), color="grey", ls="--", lw=1.0, label="uniform")
        ax.set(title=run, xlabel="step", ylabel="peer weight", ylim=(0, 1))
        ax.grid(alpha=0.3)
        _legend_outside(fig, ax)
    fig.tight_layout()
    save_figure(fig, out, "wml_weights")
    plt.close(fig)
    return True


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "report.figures", "python -m babydistill.report.tables")
