"""Result tables from the workflow's own evaluation outputs (the `tables` stage), and the
seed-aware verdicts behind their significance marks.

Reads the per-model JSON files written by ``eval_blimp`` and ``finetune`` (and the per-pair TSVs
beside the BLiMP ones), and writes, under ``--out``:

- ``tables/zero_shot``: accuracy per suite, category and paradigm, a column per model;
- ``tables/finetune``: the fine-tuning score per task;
- ``tables/summary``: the suite averages and the fine-tuning macro average per model, and, for
  each distilled student with a baseline, the difference with its 95% interval (see below);
- ``tables/provenance``: model directory, config spec digest and code commit per model;
- ``tables/budget``: per model, its words-seen ledger (own and teachers' words, epochs) against
  a BabyLM challenge's rules (``--challenge``, else ``--tables-config``'s ``challenge``);
- ``tables/paper/<name>``: each table of config ``tables.paper`` laid out as the papers print it
  (``kind: zero_shot`` Table 1, ``finetune`` Table 2 with the unstable-task dagger,
  ``hyperparameters`` Table 3 rendered from ``eval.finetune.tasks``);

each as ``.csv``, ``.md`` (readable row labels), ``.tex`` (a booktabs table that compiles; needs
``\\usepackage{booktabs}``) and ``.html`` (shown inline by ``snakemake --report``). Figures are
drawn by :mod:`babydistill.report.figures`; the numbers (scores, seeds folded into cells,
verdicts) come from :mod:`babydistill.report.stats`.

Category scores: ``macro`` (a category is the mean of its paradigms, the suite average the mean
of all paradigms; BabyLM 2024) or ``pooled`` (all pairs of a category together, the suite
average the mean of the categories; the 2023 pipeline, whose task files were categories). Each
table's caption says which.

Seeds: a run trained with ``seeds:`` gives models ``<run>@<seed>``; a cell shows the mean ± sd
over seeds and the number of seeds, ``84.3 ± 0.5 (n=3)``. Verdicts (student minus baseline):

- zero-shot: a two-level paired bootstrap. Each replicate draws the seeds with replacement
  (paired by seed when both sides have the same seeds, independently otherwise), then the pairs
  within each paradigm (the same pairs for every model: paired), and takes the mean difference
  over the drawn seeds. With one seed on each side only pairs are drawn and the cell says
  "1 seed". The difference "holds" when the 95% percentile interval excludes zero.
- fine-tuning: one score per model and task, so only seeds vary: a t-interval over seeds (paired
  differences when both sides have the same seeds, Welch otherwise); one seed gives no interval.
"""

from __future__ import annotations

import argparse
import json
import re
from html import escape
from pathlib import Path
from typing import Iterable

import pandas as pd

from babydistill.common import UserError, atomic_write_text, cli, read_json, setup_logging
from babydistill.config import challenge
from babydistill.config.names import base_name, seed_label, split_peer
from babydistill.report import figures
from babydistill.report.stats import (BOOTSTRAP_SAMPLES, CATEGORY_SCORES, SCORE_MODES, Verdict,
                                      finetune_macro, fold_seeds, instances_by_run, load_blimp,
                                      load_finetune, mean_sd, model_scores, paradigm_weights,
                                      scoring_text, suite_draws, t_interval)

MODE_TEXT = {
    "macro": "category = mean over its paradigms, suite average = mean over paradigms",
    "pooled": "category = all its pairs pooled (2023 pipeline), suite average = mean over categories",
}


def humanize(name: str) -> str:
    return str(name).replace("_", " ")


# ------------------------------------------------------------------------------ tables


def zero_shot_table(blimp: pd.DataFrame, models: list[str], mode: str = CATEGORY_SCORES) -> pd.DataFrame:
    """Per suite: the suite average, each category, each paradigm; flat label columns."""
    scores = model_scores(blimp, mode)
    parts = []
    for suite, df in blimp.groupby("suite", sort=False):
        s = scores[scores["suite"] == suite]
        avg = s[s["category"] == "average"].assign(level="average", row="all")
        cats = s[s["category"] != "average"].assign(level="category",
                                                    row=lambda d: d["category"].map(humanize))
        par = df.assign(level="paradigm", row=df["paradigm"])
        for part in (avg, cats, par):
            parts.append(part.assign(suite=suite)[["suite", "level", "row", "model", "acc"]])
    table = fold_seeds(pd.concat(parts), ["suite", "level", "row"], "acc", models)
    return table.reset_index()


def finetune_table(ft: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    if ft.empty:
        return pd.DataFrame(columns=["task", "metric"])
    table = fold_seeds(ft.assign(metric=ft["metric"].str.upper()), ["task", "metric"], "score", models)
    return table.reset_index()


def _with_peers(comparisons: list[tuple[str, str]], bases: list[str]) -> list[tuple[str, str]]:
    """A WML run without a model of its own compares each of its peers (``<run>-peerK``)."""
    out = []
    for student, baseline in comparisons:
        peers = [b for b in bases if (p := split_peer(b)) and p[0] == student]
        out += [(p, baseline) for p in peers] if student not in bases and peers else [(student, baseline)]
    return out


def summary_table(blimp: pd.DataFrame, ft: pd.DataFrame, models: list[str],
                  comparisons: list[tuple[str, str]], mode: str = CATEGORY_SCORES,
                  samples: int = BOOTSTRAP_SAMPLES) -> pd.DataFrame:
    """A row per model: suite averages, fine-tuning macro average, and per student/baseline
    comparison the seed-aware verdict per suite (and over fine-tuning when seeds allow)."""
    scores = model_scores(blimp, mode)
    avg = scores[scores["category"] == "average"]
    rows = fold_seeds(avg.rename(columns={"suite": "row"}), ["row"], "acc", models)
    macro = finetune_macro(ft) if not ft.empty else pd.Series(dtype=float)
    if not macro.empty:
        m = macro.rename("score").reset_index().assign(row="finetune (macro)")
        rows = pd.concat([rows, fold_seeds(m, ["row"], "score", models)])
    rows = rows.T
    rows.index.name = "model"
    blimp_inst = instances_by_run(blimp["model"])
    comparisons = _with_peers(comparisons, list(blimp_inst))
    for suite, df in blimp.groupby("suite", sort=False):
        scored = set(df["model"])
        for student, baseline in comparisons:
            a, b = blimp_inst.get(student, []), blimp_inst.get(baseline, [])
            a, b = [m for m in a if m in scored], [m for m in b if m in scored]
            if not (a and b) or student not in rows.index:
                continue
            v = suite_draws(blimp, suite, samples).compare(a, b, paradigm_weights(df, mode))
            rows.loc[student, f"{suite}: vs {baseline}"] = v.text()
    ft_inst = instances_by_run(macro.index) if not macro.empty else {}
    for student, baseline in comparisons:
        a, b = ft_inst.get(student, []), ft_inst.get(baseline, [])
        if a and b and (len(a) >= 2 or len(b) >= 2):
            v = t_interval({seed_label(m) or "-": macro[m] for m in a},
                           {seed_label(m) or "-": macro[m] for m in b})
            rows.loc[student, f"finetune: vs {baseline}"] = v.text()
    return rows.fillna("")


def _in_model_order(df: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(models)}  # seeds of a model after one another
    rank = df["model"].map(lambda m: order.get(base_name(m), len(order)))
    df = df.assign(_rank=rank).sort_values(["_rank", "model"], kind="stable")
    return df.drop(columns="_rank").set_index("model")


BUDGET_COLUMNS = ["epochs", "words seen", "teachers' words", "total words", "data words",
                  "cap", "of cap (%)", "within"]


def _budget_row(name: str, led: dict, rules: dict, cap: int) -> dict:
    own, total = led.get("words_seen"), led.get("total_words_seen")
    teachers = led.get("ancillary") or {}
    epochs = [float(led.get("epochs") or 0)] + [float(t.get("epochs") or 0) for t in teachers.values()]
    within = ("" if total is None else
              "yes" if total <= cap and max(epochs) <= rules["max_epochs"] else "no")
    return {"model": name, "epochs": _fmt_num(led.get("epochs")), "words seen": _fmt_num(own),
            "teachers' words": _fmt_num(None if total is None or own is None else total - own),
            "total words": _fmt_num(total), "data words": _fmt_num(led.get("data_words")),
            "cap": f"{cap:,}", "of cap (%)": "" if total is None else f"{100 * total / cap:.2f}",
            "within": within}


def _fmt_num(x) -> str:
    if x is None:
        return ""
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def budget_table(models: list[str], metrics: list[str], challenge_name: str) -> pd.DataFrame:
    """model -> its words-seen ledger (``train_summary.json`` beside each ``--metrics``
    file): epochs, words seen, its teachers' words and the total, against ``challenge_name``'s
    words-seen cap (10 epochs x the data budget; babydistill.config.challenge). "within":
    the total under the cap and no epoch count (its own, its teachers') over 10."""
    rules, cap = challenge.CHALLENGES[challenge_name], challenge.words_cap(challenge_name)
    rows = []
    for item in metrics:
        name, path = item.split("=", 1)
        summary = Path(path).parent / "train_summary.json"
        led = read_json(summary).get("ledger") if summary.is_file() else None
        if led:
            rows.append(_budget_row(name, led, rules, cap))
    return _in_model_order(pd.DataFrame(rows, columns=["model", *BUDGET_COLUMNS]), models)


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
    return _in_model_order(df, models)


# ------------------------------------------------------------------------- paper tables


def resolve_models(wanted: list[str], available: list[str], where: str) -> list[str]:
    """Column names (base names) for a table's ``models``: a model with results, or a WML run
    whose peers came out as ``<run>-peer1..N`` (expanded to its peers, in order)."""
    bases = list(dict.fromkeys(base_name(m) for m in available))
    out = []
    for name in wanted:
        if name in bases:
            out.append(name)
            continue
        peers = sorted((b for b in bases if (p := split_peer(b)) and p[0] == name),
                       key=lambda b: split_peer(b)[1])
        if not peers:
            raise UserError(f"{where}: no results for model {name!r} "
                            f"(models with results: {', '.join(bases)})")
        out += peers
    return out


def _mark_cell(text: str, verdict: Verdict | None) -> str:
    return text + ("*" if verdict is not None and verdict.holds else "")


def paper_zero_shot(blimp: pd.DataFrame, spec: dict, name: str, mode: str,
                    samples: int = BOOTSTRAP_SAMPLES, swept: dict | None = None,
                    distilled: Iterable[str] = ()) -> tuple[pd.DataFrame, str]:
    """Baby Llama Table 1 layout: rows suite x (categories, average), a column per model;
    ``*`` where the seed-aware verdict against ``reference`` holds. When ``reference`` is a
    sweep's best run (``swept``: run -> {sweep, base}; BabyLlama-2's tuned baseline), each
    ``distilled`` student also gets a column with its difference from it."""
    where = f"tables.paper.{name}"
    suites = spec.get("suites") or list(dict.fromkeys(blimp["suite"]))
    missing = [s for s in suites if s not in set(blimp["suite"])]
    if missing:
        raise UserError(f"{where}.suites: no results for suite {missing[0]!r} "
                        f"(suites: {', '.join(dict.fromkeys(blimp['suite']))})")
    models = resolve_models(spec["models"], list(blimp["model"]), f"{where}.models")
    reference = spec.get("reference")
    if reference and reference not in models:
        raise UserError(f"{where}.reference: {reference!r} is not one of the table's models")
    tuned = (swept or {}).get(reference)
    students = [m for m in models if tuned and m != reference and m in set(distilled)]
    full = blimp
    blimp = blimp[blimp["model"].map(base_name).isin(models) & blimp["suite"].isin(suites)]
    inst = instances_by_run(blimp["model"])
    scores = model_scores(blimp, mode)
    rows = []
    for suite in suites:
        df = blimp[blimp["suite"] == suite]
        s = scores[scores["suite"] == suite]
        draws = suite_draws(full, suite, samples) if reference else None
        for cat in [*dict.fromkeys(df["category"]), None]:
            label = "average" if cat is None else humanize(cat)
            row = {"suite": suite, "category": label}
            key = cat or "average"
            weights = paradigm_weights(df, mode, cat) if reference else None
            for model in models:
                vals = s[(s["model"].map(base_name) == model) & (s["category"] == key)]["acc"]
                v = (draws.compare(inst[model], inst[reference], weights)
                     if reference and model != reference and model in inst else None)
                row[model] = _mark_cell(mean_sd(vals), v)
                if model in students:
                    row[f"{model} vs {reference}"] = v.text() if v is not None else ""
            rows.append(row)
    table = pd.DataFrame(rows)
    n_seeds = max(len(v) for v in inst.values())
    caption = (spec.get("caption") or f"Zero-shot accuracy (%) of {', '.join(models)}.")
    caption += f" Category scores: {mode} ({MODE_TEXT[mode]})."
    caption += _seed_caption(n_seeds)
    if reference:
        caption += (f" * the difference from {reference} holds: its 95% interval excludes zero ("
                    + ("two-level paired bootstrap: seeds, then pairs within paradigms"
                       if n_seeds > 1 else "paired bootstrap over pairs within paradigms, 1 seed")
                    + ").")
    if tuned:
        caption += _swept_caption(reference, tuned, len(inst.get(reference, [])), students)
    return table, caption


def _swept_caption(reference: str, tuned: dict, n_seeds: int, students: list[str]) -> str:
    """The caption's account of a swept reference (BabyLlama-2: the student against the best
    tuned baseline, so the gain is not a tuning gap)."""
    text = (f" {reference}: the best trial of sweep {tuned['sweep']} (over {tuned['base']}), "
            f"retrained with {n_seeds} seed{'s' if n_seeds != 1 else ''}.")
    if students:
        text += (f" Columns '<student> vs {reference}': mean difference over seeds (points) "
                 "with its 95% interval, 'holds' when it excludes zero.")
    return text


def _seed_caption(n_seeds: int) -> str:
    if n_seeds > 1:
        return " Cells: mean ± sd over seeds (n = number of seeds)."
    return " 1 seed per model."


def paper_finetune(ft: pd.DataFrame, spec: dict, name: str,
                   unstable_default: list[str]) -> tuple[pd.DataFrame, str]:
    """Baby Llama Table 2 layout: a row per task with its metric, a column per model, and a
    flag column (†) for tasks marked unstable; ``*`` where the t-interval over seeds against
    ``reference`` excludes zero."""
    where = f"tables.paper.{name}"
    if ft.empty or ft["score"].isna().all():
        raise UserError(f"{where}: no fine-tuning results (eval.finetune.tasks)")
    models = resolve_models(spec["models"], list(ft["model"]), f"{where}.models")
    reference = spec.get("reference")
    if reference and reference not in models:
        raise UserError(f"{where}.reference: {reference!r} is not one of the table's models")
    unstable = set(spec.get("unstable", unstable_default) or [])
    tasks = spec.get("tasks") or list(dict.fromkeys(ft["task"]))
    ft = ft[ft["model"].map(base_name).isin(models)]
    inst = instances_by_run(ft["model"])
    rows = []
    for task in tasks:
        t = ft[ft["task"] == task]
        if t.empty:
            raise UserError(f"{where}.tasks: no fine-tuning results for task {task!r}")
        row = {"task": task, "metric": str(t["metric"].iloc[0]).upper(),
               "unstable": "†" if task in unstable else ""}
        score = t.set_index("model")["score"]
        for model in models:
            mine = [m for m in inst.get(model, []) if m in score.index]
            v = None
            if reference and model != reference:
                ref = [m for m in inst.get(reference, []) if m in score.index]
                v = t_interval({seed_label(m) or "-": score[m] for m in mine},
                               {seed_label(m) or "-": score[m] for m in ref})
            row[model] = _mark_cell(mean_sd(score[mine]), v)
        rows.append(row)
    n_seeds = max(len(v) for v in inst.values())
    caption = spec.get("caption") or f"Fine-tuning scores (×100) of {', '.join(models)}."
    caption += " † a task marked unstable in config (tables.paper." + name + ".unstable)."
    caption += _seed_caption(n_seeds)
    if reference:
        caption += (f" * the difference from {reference} holds: its 95% t-interval over seeds "
                    "excludes zero (needs >= 2 seeds).")
    return pd.DataFrame(rows), caption


HYPERPARAMETER_COLUMNS = {"lr": "max LR", "batch_size": "batch size", "epochs": "max epochs",
                          "patience": "patience", "eval_every": "eval every (steps)",
                          "seed": "seed"}


def _sci(value: float) -> str:
    """4e-05 -> ``4e-5``, 2.5e-04 -> ``2.5e-4`` (as the papers print learning rates)."""
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def paper_hyperparameters(tasks: dict, spec: dict, name: str) -> tuple[pd.DataFrame, str]:
    """Baby Llama Table 3: the fine-tuning hyperparameters per task, from eval.finetune.tasks."""
    if not tasks:
        raise UserError(f"tables.paper.{name}: eval.finetune.tasks is empty")
    rows = []
    for task in spec.get("tasks") or tasks:
        if task not in tasks:
            raise UserError(f"tables.paper.{name}.tasks: {task!r} is not in eval.finetune.tasks")
        row = {"task": task}
        for key, col in HYPERPARAMETER_COLUMNS.items():
            v = tasks[task].get(key, "")
            row[col] = _sci(v) if key == "lr" and v != "" else v
        rows.append(row)
    caption = spec.get("caption") or "Fine-tuning hyperparameters per task (from eval.finetune.tasks)."
    return pd.DataFrame(rows), caption


# ------------------------------------------------------------------------------ writing

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}", "±": r"$\pm$", "†": r"\textdagger{}",
                 "–": "--", "×": r"$\times$", "≥": r"$\geq$"}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in LATEX_SPECIAL))


def latex_escape(text) -> str:
    s = str(text)
    s = s.replace(">=", "≥")
    return _LATEX_RE.sub(lambda m: LATEX_SPECIAL[m.group()], s)


def to_latex(df: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table (\\usepackage{booktabs}) with every cell and the caption escaped."""
    cols = list(df.columns)
    numeric = [bool(df[c].astype(str).str.match(r"^[-+]?[\d.]").all()) if len(df) else False
               for c in cols]
    align = "".join("r" if n else "l" for n in numeric)
    lines = ["% generated by babydistill.report.tables; needs \\usepackage{booktabs}",
             "\\begin{table}[ht]", "\\centering", "\\small",
             f"\\caption{{{latex_escape(caption)}}}", f"\\label{{{label}}}",
             f"\\begin{{tabular}}{{{align}}}", "\\toprule",
             " & ".join(latex_escape(c) for c in cols) + " \\\\", "\\midrule"]
    for _, row in df.iterrows():
        lines.append(" & ".join(latex_escape("" if pd.isna(v) else v) for v in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def write_table(df: pd.DataFrame, out: Path, name: str, caption: str,
                index: bool = False) -> None:
    """``name``.csv, .md, .tex and .html; ``index=True`` keeps the index as the first column."""
    if index:
        df = df.reset_index()
    df = df.fillna("").rename_axis(columns=None)  # no stray header row in HTML
    stem = Path(name).name
    atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    # disable_numparse: cells are printed as written ("80.0", "4e-5"), not re-formatted
    md = df.to_markdown(index=False, disable_numparse=True) if len(df.columns) else "(empty)"
    atomic_write_text(out / f"{name}.md", f"{caption}\n\n{md}\n")
    atomic_write_text(out / f"{name}.tex", to_latex(df, caption, f"tab:{stem}"))
    html = df.to_html(index=False, border=0, classes="babydistill")
    atomic_write_text(out / f"{name}.html",
                      f"<!doctype html>\n<meta charset=\"utf-8\">\n<title>{stem}</title>\n"
                      f"<p>{escape(caption)}</p>\n{html}\n")


# --------------------------------------------------------------------------------- CLI


def _pairs_arg(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"{flag} {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def _json_arg(text: str | None, flag: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"{flag}: not valid JSON") from None
    if not isinstance(value, dict):
        raise UserError(f"{flag}: expected a JSON object")
    return value


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m babydistill.report.tables", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blimp", nargs="+", required=True,
                    help="eval_blimp JSON files, each suite scored with its own convention")
    ap.add_argument("--paper-blimp", nargs="*", default=[],
                    help="eval_blimp JSON files scored with another convention, for the "
                         "tables.paper entries that name one")
    ap.add_argument("--finetune", nargs="*", default=[], help="finetune JSON files")
    ap.add_argument("--metrics", nargs="*", default=[],
                    help="NAME=PATH of each model's training metrics.csv (the train_summary.json "
                         "beside it gives the budget table)")
    ap.add_argument("--distilled", nargs="*", default=[],
                    help="models trained with a distillation objective (KD, WML): their train "
                         "loss gets its own panel")
    ap.add_argument("--wml-weights", nargs="*", default=[],
                    help="RUN=PATH of a WML run's wml_weights.csv (step,w1..wN), if written")
    ap.add_argument("--models", nargs="+", required=True, help="column order")
    ap.add_argument("--compare", nargs="*", default=[],
                    help="STUDENT=BASELINE runs (base names) for the verdicts")
    ap.add_argument("--provenance", nargs="*", default=[],
                    help="NAME=PATH of each model's provenance.json")
    ap.add_argument("--tables-config", default=None,
                    help="the config's tables: section as JSON (category_scores, paper tables)")
    ap.add_argument("--finetune-tasks", default=None,
                    help="the config's eval.finetune.tasks as JSON (for hyperparameter tables)")
    ap.add_argument("--challenge", default=None, metavar="NAME",
                    help="the BabyLM track the budget table holds the models to (default: "
                         "--tables-config's challenge, the config's challenge:; none: "
                         "strict-small-2026, for reference)")
    ap.add_argument("--out", required=True, help="folder for tables/ and figures/")
    return ap


def _write_tables(blimp: pd.DataFrame, ft: pd.DataFrame, models: list[str],
                  comparisons: list[tuple[str, str]], mode: str, samples: int,
                  provenance: list[str], tables: Path) -> None:
    """tables/zero_shot, finetune, summary and provenance."""
    write_table(zero_shot_table(blimp, models, mode), tables, "zero_shot",
                f"Zero-shot accuracy (%) per suite, category and paradigm. Category scores: {mode} "
                f"({MODE_TEXT[mode]}). {scoring_text(blimp)}")
    write_table(finetune_table(ft, models), tables, "finetune",
                "Fine-tuning scores (×100) on the validation sets: MCC, F1 or accuracy per task.")
    write_table(summary_table(blimp, ft, models, comparisons, mode, samples), tables, "summary",
                f"Summary: suite averages (%, {mode}: {MODE_TEXT[mode]}) and the fine-tuning macro "
                "average (×100). Student minus baseline: mean difference over seeds with the 95% "
                "interval of a two-level paired bootstrap (seeds drawn with replacement, then "
                "pairs within paradigms; pairs only with 1 seed); fine-tuning: a t-interval over "
                f"seeds. 'holds' when the interval excludes zero. {scoring_text(blimp)}", index=True)
    write_table(provenance_table(models, provenance), tables, "provenance",
                "Where each column comes from: model directory, config spec and code commit.",
                index=True)


def _write_budget(models: list[str], metrics: list[str], name: str, tables: Path) -> None:
    """tables/budget: every trained model's ledger against a challenge's rules."""
    track = name or "strict-small-2026"
    held = f"the config's challenge {track}" if name else \
        f"{track}, for reference (the config names no challenge)"
    write_table(budget_table(models, metrics, track), tables, "budget",
                f"Words seen (whitespace words, as the BabyLM data statistics count them) and "
                f"epochs per model; a student's total adds its teachers' training words (the "
                f"rules count ancillary models' data). Held to {held}: at most "
                f"{challenge.CHALLENGES[track]['max_epochs']} epochs and "
                f"{challenge.words_cap(track):,} words seen in all.", index=True)


def _draw_figures(args: argparse.Namespace, blimp: pd.DataFrame, ft: pd.DataFrame,
                  models: list[str], mode: str, samples: int, palette: figures.Palette,
                  figs: Path) -> None:
    """figures/zero_shot, finetune, training_curves and (when a WML run wrote them) wml_weights."""
    figures.zero_shot_figure(blimp, models, mode, palette, figs, "zero_shot", samples=samples)
    figures.finetune_figure(ft, models, palette, figs, "finetune")
    metrics = {k: Path(v) for k, v in _pairs_arg(args.metrics, "--metrics").items()
               if Path(v).is_file()}
    distilled = {base_name(d) for d in args.distilled}
    distilled |= {base_name(m) for m in metrics  # WML peers <run>-peerK train with their run
                  if (p := split_peer(base_name(m))) and p[0] in distilled}
    figures.training_curves(metrics, distilled, palette, figs)
    weights: dict[str, Path] = {}
    for item in args.wml_weights:  # candidates in order: the first that exists is the run's
        run, _, path = item.partition("=")
        if run not in weights and Path(path).is_file():
            weights[run] = Path(path)
    figures.wml_weights_figure(weights, palette, figs)


def _as_scored(blimp: pd.DataFrame, convention: str | None, name: str) -> pd.DataFrame:
    """The zero-shot rows of a paper table: every suite under ``convention`` (its paper's
    pipeline; the results given by --blimp and --paper-blimp together), or each suite under
    its own convention when the table names none."""
    if not convention:
        return blimp[blimp["own"]]
    rows = blimp[blimp["convention"] == convention]
    if rows.empty:
        raise UserError(f"tables.paper.{name}.convention: no results scored as {convention} "
                        "(the workflow scores the suites of such a table with it: rerun it)")
    return rows.drop_duplicates(["model", "suite", "paradigm"])


def _paper_table(kind: str | None, name: str, spec: dict, cfg: dict, args: argparse.Namespace,
                 blimp: pd.DataFrame, ft: pd.DataFrame, mode: str, samples: int,
                 palette: figures.Palette, figs: Path) -> tuple[pd.DataFrame, str]:
    """One table of tables.paper (and its figure, for zero_shot and finetune)."""
    if kind == "zero_shot":
        blimp = _as_scored(blimp, spec.get("convention"), name)
        table, caption = paper_zero_shot(blimp, spec, name, spec.get("category_scores", mode),
                                         samples, swept=cfg.get("sweep_best"),
                                         distilled={base_name(d) for d in args.distilled})
        caption += " " + scoring_text(blimp[blimp["suite"].isin(set(table["suite"]))])
        figures.zero_shot_figure(
            blimp[blimp["model"].map(base_name).isin(table.columns)
                  & blimp["suite"].isin(set(table["suite"]))],
            [c for c in table.columns if c not in ("suite", "category") and " vs " not in c],
            spec.get("category_scores", mode), palette, figs / "paper", name,
            samples=samples, draws_from=blimp)
    elif kind == "finetune":
        table, caption = paper_finetune(ft, spec, name, cfg.get("unstable", []))
        cols = [c for c in table.columns if c not in ("task", "metric", "unstable")]
        figures.finetune_figure(ft[ft["task"].isin(set(table["task"]))], cols, palette,
                                figs / "paper", name)
    elif kind == "hyperparameters":
        table, caption = paper_hyperparameters(_json_arg(args.finetune_tasks,
                                                         "--finetune-tasks"), spec, name)
    else:
        raise UserError(f"tables.paper.{name}.kind: {kind!r} is not zero_shot, finetune "
                        "or hyperparameters")
    return table, caption


@cli
def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    setup_logging()
    out = Path(args.out)
    cfg = _json_arg(args.tables_config, "--tables-config")
    mode = cfg.get("category_scores", CATEGORY_SCORES)
    if mode not in SCORE_MODES:
        raise UserError(f"tables.category_scores: {mode!r} is not one of {', '.join(SCORE_MODES)}")
    samples = int(cfg.get("bootstrap_samples", BOOTSTRAP_SAMPLES))
    own = load_blimp(args.blimp)
    scored = pd.concat([own.assign(own=True)]
                       + ([load_blimp(args.paper_blimp).assign(own=False)] if args.paper_blimp else []),
                       ignore_index=True)
    ft = load_finetune(args.finetune)
    comparisons = [(base_name(s), base_name(b)) for s, b in _pairs_arg(args.compare, "--compare").items()]
    tables, figs = out / "tables", out / "figures"
    models = list(dict.fromkeys(base_name(m) for m in args.models))
    palette = figures.Palette(models)  # asked in this order: figures' colours depend on it

    _write_tables(own, ft, models, comparisons, mode, samples, args.provenance, tables)
    track = args.challenge or cfg.get("challenge") or ""
    if track and track not in challenge.CHALLENGES:
        raise UserError(f"--challenge: {track!r} is not one of {', '.join(challenge.CHALLENGES)}")
    _write_budget(models, args.metrics, track, tables)
    _draw_figures(args, own, ft, models, mode, samples, palette, figs)
    for name, spec in (cfg.get("paper") or {}).items():
        table, caption = _paper_table(spec.get("kind"), name, spec, cfg, args, scored, ft, mode,
                                      samples, palette, figs)
        write_table(table, tables / "paper", name, caption)
    print(json.dumps({"tables": str(tables), "figures": str(figs)}))

if __name__ == "__main__":
    main()
