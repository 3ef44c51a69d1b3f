"""The numbers behind the result tables and figures (:mod:`babydistill.report.tables`,
:mod:`babydistill.report.figures`): reading the evaluation outputs, category and suite scores
(paradigm weights, ``macro`` or ``pooled``), seeds folded into ``mean ± sd`` cells, and the
seed-aware verdicts (the two-level paired bootstrap over seeds and pairs, the t-interval over
seeds); the method is described in the tables' module docstring.

Defaults (the bootstrap's replicates, the category scores) are the schema's ``tables:``
defaults. Seeds and peers are read through :mod:`babydistill.config.names`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from babydistill.common import UserError, read_json
from babydistill.config import names, specs

_TABLES = specs.schema()["properties"]["tables"]["properties"]
_DEFAULTS = specs.section_defaults("tables")
BOOTSTRAP_SAMPLES = _DEFAULTS["bootstrap_samples"]
CATEGORY_SCORES = _DEFAULTS["category_scores"]  # the default mode
SCORE_MODES = tuple(_TABLES["category_scores"]["enum"])  # ("macro", "pooled")


LEGACY_CONVENTION = "babylm-2024"

# ------------------------------------------------------------------------------ loading


def load_blimp(files: list[str]) -> pd.DataFrame:
    """Long table: model, suite, category, paradigm, acc, n, file."""
    rows = []
    for f in files:
        r = read_json(f)
        try:
            # results written before conventions were named were scored as babylm-2024
            convention = r.get("convention", LEGACY_CONVENTION)
            for paradigm, p in r["paradigms"].items():
                rows.append({"model": r["model"], "suite": r["suite"],
                             "category": p.get("category") or "other", "paradigm": paradigm,
                             "acc": float(p["acc"]), "n": int(p.get("n", 1)), "file": f,
                             "convention": convention, "ties": int(p.get("ties", 0))})
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{f}: not an eval_blimp result (model, suite, paradigms)") from None
    if not rows:
        raise UserError("tables: no BLiMP results given (--blimp)")
    return pd.DataFrame(rows)


def scoring_text(blimp: pd.DataFrame) -> str:
    """What made the zero-shot numbers, for a caption: each suite's convention and its ties
    (pairs whose two sentences scored the same; every pipeline gives a tie to the good one)."""
    parts = []
    for suite, df in blimp.groupby("suite", sort=False):
        conventions = ", ".join(dict.fromkeys(df["convention"]))
        ties = int(df["ties"].sum())
        pairs = int(df["n"].sum())
        parts.append(f"{suite}: {conventions}, {ties:,} ties in {pairs:,} pairs")
    return "Scored as the BabyLM pipelines score (" + "; ".join(parts) + ")."


def load_finetune(files: list[str]) -> pd.DataFrame:
    rows = []
    for f in files:
        r = read_json(f)
        score = math.nan if r.get("skipped") else float(r["score"])
        rows.append({"model": r["model"], "task": r["task"], "metric": r.get("metric", ""),
                     "score": score})
    return pd.DataFrame(rows, columns=["model", "task", "metric", "score"])


def load_pairs(blimp_json: str) -> pd.DataFrame:
    """The per-pair TSV beside a BLiMP result (``X.json`` -> ``X.pairs.tsv``)."""
    path = Path(blimp_json).with_suffix(".pairs.tsv")
    if not path.is_file():
        raise UserError(f"{path}: per-pair results not found (written by eval_blimp)")
    df = pd.read_csv(path, sep="\t", dtype={"pair_id": str})
    return df[["paradigm", "pair_id", "correct"]]


# ------------------------------------------------------------------------ category scores


def paradigm_weights(paradigms: pd.DataFrame, mode: str, category: str | None = None) -> pd.Series:
    """Weights over paradigms (summing to 1) whose weighted mean of paradigm accuracies is the
    suite average (``category=None``) or that category's score, under ``mode``."""
    if mode not in SCORE_MODES:
        raise UserError(f"tables.category_scores: {mode!r} is not one of {', '.join(SCORE_MODES)}")
    p = paradigms.drop_duplicates("paradigm").set_index("paradigm")
    if category is not None:
        p = p[p["category"] == category]
    if mode == "macro":
        w = pd.Series(1.0, index=p.index)
    else:  # pooled: n_p / N_category within a category, categories weighted equally
        w = p["n"] / p.groupby("category")["n"].transform("sum")
    return w / w.sum()


def model_scores(blimp: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Long: model, suite, category ("average" for the suite), acc."""
    out = []
    for (model, suite), df in blimp.groupby(["model", "suite"], sort=False):
        acc = df.set_index("paradigm")["acc"]
        for cat in [None, *dict.fromkeys(df["category"])]:
            w = paradigm_weights(df, mode, cat)
            out.append({"model": model, "suite": suite, "category": cat or "average",
                        "acc": float((acc[w.index] * w).sum())})
    return pd.DataFrame(out)


# ------------------------------------------------------------------------ seeds


def instances_by_run(models: pd.Series | list[str]) -> dict[str, list[str]]:
    """{base name: [instances]} in first-seen order."""
    out: dict[str, list[str]] = {}
    for m in dict.fromkeys(models):
        out.setdefault(names.base_name(m), []).append(m)
    return out


def mean_sd(values, scale: float = 100.0) -> str:
    """``84.3`` for one value, ``84.3 ± 0.5 (n=3)`` over seeds, ``–`` for none."""
    v = pd.Series(values, dtype=float).dropna()
    if v.empty:
        return "–"
    if len(v) == 1:
        return f"{scale * v.iloc[0]:.1f}"
    return f"{scale * v.mean():.1f} ± {scale * v.std(ddof=1):.1f} (n={len(v)})"


def fold_seeds(long: pd.DataFrame, index: list[str], value: str, models: list[str]) -> pd.DataFrame:
    """Rows ``index``, a column per model (seeds folded into mean ± sd)."""
    long = long.assign(column=long["model"].map(names.base_name))
    table = long.groupby(index + ["column"], sort=False)[value].apply(mean_sd).unstack("column")
    return table.reindex(columns=[m for m in models if m in table.columns])


def finetune_macro(ft: pd.DataFrame) -> pd.Series:
    """Macro over tasks per model instance (skipped tasks left out)."""
    return ft.dropna(subset=["score"]).groupby("model")["score"].mean()


# ---------------------------------------------------------------------------- verdicts


@dataclass
class Verdict:
    diff: float
    low: float
    high: float
    n_a: int
    n_b: int
    paired_seeds: bool

    @property
    def holds(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def seeds_text(self) -> str:
        if self.n_a == self.n_b:
            return f"{self.n_a} seed" + ("s" if self.n_a > 1 else "")
        return f"{self.n_a} vs {self.n_b} seeds"

    def text(self, scale: float = 100.0) -> str:
        if math.isnan(self.low):
            return f"{scale * self.diff:+.1f}, {self.seeds_text()}: no interval"
        return (f"{scale * self.diff:+.1f} [{scale * self.low:+.1f}, {scale * self.high:+.1f}], "
                f"{self.seeds_text()}, {'holds' if self.holds else 'n.s.'}")


def _seed_groups(instances: list[str]) -> dict[str, str]:
    """{seed label: instance} ('-' for an unseeded model)."""
    return {names.seed_label(m) or "-": m for m in instances}


def _seed_plan(a: list[str], b: list[str]) -> tuple[list[str], list[str], bool]:
    """Instances of each side in seed order, and whether seeds are paired (same labels, >= 2)."""
    ga, gb = _seed_groups(a), _seed_groups(b)
    paired = set(ga) == set(gb) and len(ga) >= 2
    la = sorted(ga)
    lb = la if paired else sorted(gb)
    return [ga[s] for s in la], [gb[s] for s in lb], paired


class PairDraws:
    """Bootstrap replicates of per-paradigm accuracies for a set of models on one suite.

    Every replicate resamples the pairs within each paradigm once, for all models together
    (paired over pairs); any weighting of paradigms (suite average, one category, macro or
    pooled) is then a matrix product away.
    """

    def __init__(self, pairs: dict[str, pd.DataFrame], samples: int = BOOTSTRAP_SAMPLES,
                 seed: int = 0):
        self.models = list(pairs)
        merged = None
        for m, df in pairs.items():
            d = df.drop_duplicates(["paradigm", "pair_id"]).rename(columns={"correct": m})
            merged = d if merged is None else merged.merge(d, on=["paradigm", "pair_id"])
        if merged is None or merged.empty:
            raise UserError("bootstrap: the models share no scored pairs")
        rng = np.random.default_rng(seed)
        self.paradigms = sorted(merged["paradigm"].unique())
        self.samples = samples
        obs, boot = [], []
        for p in self.paradigms:
            x = merged.loc[merged["paradigm"] == p, self.models].to_numpy(float).T  # (models, n)
            n = x.shape[1]
            # pairs drawn with replacement, as counts per pair: (samples, n)
            draw = rng.integers(0, n, size=(samples, n)) + n * np.arange(samples)[:, None]
            counts = np.bincount(draw.ravel(), minlength=samples * n).reshape(samples, n)
            obs.append(x.mean(axis=1))
            boot.append(x @ counts.T / n)  # (models, samples)
        self.observed = np.stack(obs, axis=1)  # (models, paradigms)
        self.boot = np.stack(boot, axis=1)  # (models, paradigms, samples)
        self.seed_rng_seed = seed + 1

    def weighted(self, weights: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(observed (models,), replicates (models, samples)) of a weighted paradigm mean."""
        w = weights.reindex(self.paradigms).fillna(0.0).to_numpy()
        if w.sum() <= 0:
            raise UserError("bootstrap: no shared pairs in the paradigms asked for")
        w = w / w.sum()
        return self.observed @ w, np.einsum("mps,p->ms", self.boot, w)

    def _rows(self, instances: list[str]) -> list[int]:
        return [self.models.index(m) for m in instances]

    def compare(self, a: list[str], b: list[str], weights: pd.Series) -> Verdict:
        """Two-level paired bootstrap of mean(a seeds) - mean(b seeds)."""
        a, b, paired = _seed_plan(a, b)
        obs, reps = self.weighted(weights)
        ia, ib = self._rows(a), self._rows(b)
        rng = np.random.default_rng(self.seed_rng_seed)
        cols = np.arange(self.samples)
        if paired:
            d = reps[ia] - reps[ib]  # (seeds, samples)
            draw = rng.integers(0, len(ia), size=(self.samples, len(ia)))
            stat = d[draw, cols[:, None]].mean(axis=1)
        else:
            da = rng.integers(0, len(ia), size=(self.samples, len(ia)))
            db = rng.integers(0, len(ib), size=(self.samples, len(ib)))
            stat = (reps[ia][da, cols[:, None]].mean(axis=1)
                    - reps[ib][db, cols[:, None]].mean(axis=1))
        low, high = np.percentile(stat, [2.5, 97.5])
        diff = float(obs[ia].mean() - obs[ib].mean())
        return Verdict(diff, float(low), float(high), len(ia), len(ib), paired)

    def interval(self, instances: list[str], weights: pd.Series) -> tuple[float, float, float]:
        """(mean, low, high) of one model's score: seeds drawn, then pairs (or pairs only)."""
        obs, reps = self.weighted(weights)
        rows = self._rows(instances)
        rng = np.random.default_rng(self.seed_rng_seed)
        draw = rng.integers(0, len(rows), size=(self.samples, len(rows)))
        stat = reps[rows][draw, np.arange(self.samples)[:, None]].mean(axis=1)
        low, high = np.percentile(stat, [2.5, 97.5])
        return float(obs[rows].mean()), float(low), float(high)


_DRAWS: dict[tuple, PairDraws] = {}


def suite_draws(blimp: pd.DataFrame, suite: str, samples: int = BOOTSTRAP_SAMPLES) -> PairDraws:
    """The bootstrap replicates of every model scored on ``suite``, built once per process and
    shared by the summary, the paper tables and the figures (the pair draws do not depend on
    which models are in: the same rng stream resamples each paradigm's pairs)."""
    files = blimp[blimp["suite"] == suite].drop_duplicates("model").set_index("model")["file"]
    key = (suite, samples, tuple((m, f, Path(f).with_suffix(".pairs.tsv").stat().st_mtime_ns)
                                 for m, f in files.items()))
    if key not in _DRAWS:
        _DRAWS[key] = PairDraws({m: load_pairs(f) for m, f in files.items()}, samples)
    return _DRAWS[key]


def paired_bootstrap(a: pd.DataFrame, b: pd.DataFrame, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = 0) -> dict:
    """One model against another (one seed each): macro difference, pairs resampled within
    paradigms; kept for callers that hold two pair tables."""
    draws = PairDraws({"a": a, "b": b}, samples, seed)
    v = draws.compare(["a"], ["b"], pd.Series(1.0, index=draws.paradigms))
    return {"diff": v.diff, "low": v.low, "high": v.high, "holds": v.holds}


def t_interval(a: dict[str, float], b: dict[str, float]) -> Verdict:
    """Mean difference over seeds (a - b) with a 95% t-interval: paired by seed when both have
    the same seeds, Welch otherwise; a side with one seed is taken to vary like the other side
    (the interval of a new observation against a sample)."""
    from scipy import stats

    a = {k: v for k, v in a.items() if not math.isnan(v)}
    b = {k: v for k, v in b.items() if not math.isnan(v)}
    if not a or not b:
        return Verdict(math.nan, math.nan, math.nan, len(a), len(b), False)
    xa, xb = np.array([a[k] for k in sorted(a)]), np.array([b[k] for k in sorted(b)])
    diff = float(xa.mean() - xb.mean())
    paired = set(a) == set(b) and len(a) >= 2
    if paired:
        d = xa - xb
        se, dof = d.std(ddof=1) / math.sqrt(len(d)), len(d) - 1
    else:
        sa = xa.var(ddof=1) if len(xa) > 1 else (xb.var(ddof=1) if len(xb) > 1 else 0.0)
        sb = xb.var(ddof=1) if len(xb) > 1 else sa
        va, vb = sa / len(xa), sb / len(xb)
        se = math.sqrt(va + vb)
        if len(xa) > 1 and len(xb) > 1:  # Welch-Satterthwaite
            denom = va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1)
            dof = se**4 / denom if denom > 0 else min(len(xa), len(xb)) - 1
        else:  # the spread comes from one side only (0 when neither has two seeds)
            dof = max(len(xa), len(xb)) - 1
    if dof <= 0:  # one seed on each side: nothing to estimate the spread from
        return Verdict(diff, math.nan, math.nan, len(xa), len(xb), paired)
    half = float(stats.t.ppf(0.975, dof)) * se
    return Verdict(diff, diff - half, diff + half, len(xa), len(xb), paired)


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "report.stats", "python -m babydistill.report.tables")
