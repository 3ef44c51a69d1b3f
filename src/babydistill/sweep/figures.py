"""A sweep's figure and parameter importances (called by :mod:`babydistill.sweep.results`).

- ``parallel_coordinates.{png,pdf}``: BabyLlama-2's sweep figure (W&B's parallel
  coordinates): an axis per parameter of the space, then the objective; one line per trial,
  coloured by its objective (the colour bar; the best end bright), pruned trials as thin
  grey dashes up to their last parameter. Each parameter axis spans the space's range, on a
  log scale where the space's is log, choices evenly spaced; ticks show the values.
- ``importances``: fANOVA importance of each parameter for the objective over the completed
  trials (``optuna.importance``; seeded), at least two of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from babydistill.report.figures import save_figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axis(dist: dict) -> tuple:
    """(to [0, 1], tick positions, tick labels) of one space entry's axis."""
    if dist["type"] == "categorical":
        n = len(dist["choices"])
        pos = [i / (n - 1) for i in range(n)]
        return (lambda v: pos[dist["choices"].index(v)]), pos, [str(c) for c in dist["choices"]]
    log = dist["log"]
    lo, hi = (math.log10(dist["low"]), math.log10(dist["high"])) if log else (dist["low"], dist["high"])

    def scale(v):
        return ((math.log10(v) if log else v) - lo) / (hi - lo)

    ticks = np.linspace(lo, hi, 3)
    values = [10 ** t if log else t for t in ticks]
    return scale, [0.0, 0.5, 1.0], [f"{v:.3g}" for v in values]


def parallel_coordinates(study: optuna.Study, spec: dict, out: Path, name: str) -> None:
    """Draw the sweep's parallel-coordinates figure into ``out/name.{png,pdf}``."""
    plt = _plt()
    from matplotlib import cm, colors

    keys = list(spec["space"])
    axes = {k: _axis(spec["space"][k]) for k in keys}
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    values = [t.value for t in done]
    vmin, vmax = (min(values), max(values)) if values else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    # the best trials bright: viridis for a maximized objective, reversed for a minimized one
    cmap = plt.get_cmap("viridis" if spec["direction"] == "maximize" else "viridis_r")
    norm = colors.Normalize(vmin, vmax)
    fig, ax = plt.subplots(figsize=(1.3 * (len(keys) + 1) + 1.5, 4.2))
    xs = list(range(len(keys) + 1))
    for t in trials:
        if t.state.name == "PRUNED" and all(k in t.params for k in keys):
            ax.plot(xs[:-1], [axes[k][0](t.params[k]) for k in keys], color="0.6", lw=0.8,
                    ls="--", zorder=1)
    for t in sorted(done, key=lambda t: t.value, reverse=spec["direction"] == "minimize"):
        ys = [axes[k][0](t.params[k]) for k in keys] + [norm(t.value)]
        ax.plot(xs, ys, color=cmap(norm(t.value)), lw=1.6, zorder=2)  # the best drawn last
    for x, k in enumerate(keys):
        ax.axvline(x, color="0.3", lw=0.8, zorder=0)
        _, pos, labels = axes[k]
        for p, label in zip(pos, labels):
            ax.text(x + 0.04, p, label, fontsize=7, va="center", ha="left", color="0.2")
    ax.axvline(xs[-1], color="0.3", lw=0.8, zorder=0)
    for p in (0.0, 0.5, 1.0):
        ax.text(xs[-1] + 0.04, p, f"{vmin + p * (vmax - vmin):.4g}", fontsize=7, va="center")
    names = [f"{k} (log)" if spec["space"][k].get("log") else k for k in keys]
    ax.set_xticks(xs, [*names, spec["objective"]], rotation=30, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.2, xs[-1] + 0.5)
    ax.set_ylim(-0.05, 1.05)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    n_pruned = sum(t.state.name == "PRUNED" for t in trials)
    ax.set_title(f"sweep {spec['name']}: {len(done)} completed, {n_pruned} pruned "
                 "(grey dashes)", fontsize=9)
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
    bar.set_label(f"{spec['objective']} ({spec['direction']}d)", fontsize=8)
    save_figure(fig, out, name)
    plt.close(fig)


def importances(study: optuna.Study, spec: dict) -> pd.DataFrame:
    """fANOVA importance per parameter (completed trials; empty below two of them)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(done) < 2:
        return pd.DataFrame({"parameter": list(spec["space"]), "importance": ""})
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=spec["seed"])
    imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return pd.DataFrame({"parameter": list(imp), "importance": [f"{v:.3f}" for v in imp.values()]})


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "sweep.figures", "python -m babydistill.sweep.results")
