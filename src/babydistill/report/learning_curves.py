"""Learning curves by words seen: accuracy of every checkpoint of every trained model (rule
``learning_curves``), from the JSON :mod:`babydistill.eval.revisions` writes per model.

Owns: the table ``learning_curves`` (one row per model and revision, fewest words first:
its role, words seen, with its teachers', step, epochs, and each suite's macro accuracy in
%; ``.csv``, ``.md``, ``.tex``, ``.html`` as :func:`babydistill.report.tables.write_table`
writes them) and the figure ``learning_curves`` (``.png``, ``.pdf``): accuracy against the
model's own words seen (log scale), a row of panels per suite and a column per role --
teachers, baselines and students side by side on one accuracy scale, each model in its
colour of every other figure (:class:`babydistill.report.figures.Palette`), chance dashed.
A role is the config's (:func:`babydistill.config.model_roles`).

    python -m babydistill.report.learning_curves --revisions FILE [FILE ...] \\
        --models M [M ...] --roles JSON --tables DIR --figures DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from babydistill.common import UserError, cli, read_json, setup_logging
from babydistill.report.figures import Palette, _plt, save_figure
from babydistill.report.tables import write_table

ROLES = ("teacher", "baseline", "student")
CAPTION = ("Learning curves: the fast evaluation of every checkpoint (revisions/chck_<N>, "
           "then main, the final weights), macro accuracy (%) per suite; words seen are the "
           "model's own whitespace words, 'with teachers' adds the words its teachers saw.")


def curve_rows(results: list[dict], roles: dict[str, str]) -> pd.DataFrame:
    """One row per (model, revision) of the eval_revisions results, in the given order."""
    rows = []
    for res in results:
        for rev in res["revisions"]:
            row = {"model": res["model"], "role": roles.get(res["model"], ""),
                   "revision": rev["revision"], "words_seen": rev["words_seen"],
                   "words_with_teachers": rev["total_words_seen"], "step": rev["step"],
                   "epochs": rev["epochs"]}
            row.update({suite: round(100 * s["accuracy"], 1) for suite, s in rev["suites"].items()})
            rows.append(row)
    return pd.DataFrame(rows)


def words_label(x: float) -> str:
    """50K, 1M, 1.5M: a tick's words seen as the revision names count them."""
    if x >= 1e6:
        return f"{x / 1e6:g}M"
    return f"{x / 1e3:g}K" if x >= 1e3 else f"{x:g}"


def learning_curves_figure(df: pd.DataFrame, models: list[str], palette: Palette, out: Path) -> None:
    """Panels of accuracy against words seen: a row per suite, a column per role present."""
    plt = _plt()
    from matplotlib import ticker

    suites = [c for c in df.columns if c not in ("model", "role", "revision", "words_seen",
                                                 "words_with_teachers", "step", "epochs")]
    roles = [r for r in ROLES if (df["role"] == r).any()] or [""]
    fig, axes = plt.subplots(len(suites), len(roles), figsize=(4.2 * len(roles) + 2.5,
                                                               3.4 * len(suites)),
                             squeeze=False, sharex=True, sharey=True)
    for i, suite in enumerate(suites):
        for j, role in enumerate(roles):
            ax = axes[i][j]
            for model in models:
                part = df[(df["model"] == model) & (df["role"] == role)]
                if len(part):
                    ax.plot(part["words_seen"], part[suite], marker="o", ms=3, lw=1.2,
                            color=palette(model), label=model)
            ax.axhline(50, color="grey", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1, 2, 5)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: words_label(x)))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())  # 3x10^5 labels collide
            ax.grid(alpha=0.3)
            ax.set_title(f"{suite}: {role}s" if role else suite, fontsize=10)
            ax.set(xlabel="words seen", ylabel="accuracy (%)" if j == 0 else None)
            handles, labels = ax.get_legend_handles_labels()
            if handles and i == len(suites) - 1:  # below the last row, clear of the data
                ax.legend(handles, labels, fontsize=7, loc="upper center", ncol=2,
                          bbox_to_anchor=(0.5, -0.3), frameon=False)
    fig.tight_layout()
    save_figure(fig, out, "learning_curves")
    plt.close(fig)


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m babydistill.report.learning_curves",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--revisions", nargs="+", required=True, metavar="FILE",
                    help="eval_revisions JSONs, one per model")
    ap.add_argument("--models", nargs="+", required=True, help="the models in table order")
    ap.add_argument("--roles", default="{}", help="JSON {model: teacher|baseline|student}")
    ap.add_argument("--tables", required=True, help="folder of learning_curves.{csv,md,tex,html}")
    ap.add_argument("--figures", required=True, help="folder of learning_curves.{png,pdf}")
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    try:
        roles = json.loads(args.roles)
    except json.JSONDecodeError as e:
        raise UserError(f"--roles: not JSON ({e})") from None
    by_model = {}
    for path in args.revisions:
        res = read_json(path)
        if not isinstance(res, dict) or not isinstance(res.get("revisions"), list):
            raise UserError(f"{path}: not an eval_revisions result (no revisions list); "
                            "write it with python -m babydistill.eval.revisions")
        by_model[res["model"]] = res
    if missing := [m for m in args.models if m not in by_model]:
        raise UserError(f"--models {missing[0]}: none of the --revisions files is its result")
    df = curve_rows([by_model[m] for m in args.models], roles)
    write_table(df, Path(args.tables), "learning_curves", CAPTION)
    learning_curves_figure(df, args.models, Palette(args.models), Path(args.figures))


if __name__ == "__main__":
    main()
