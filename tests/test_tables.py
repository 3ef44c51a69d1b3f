"""Result tables, the paired bootstrap, and figures, from hand-made evaluation outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from babydistill import tables


def write_blimp(d, model, suite, correct: dict[str, list[int]], categories: dict[str, str]):
    """An eval_blimp JSON + pairs TSV with the given per-pair outcomes."""
    d.mkdir(parents=True, exist_ok=True)
    paradigms = {p: {"acc": float(np.mean(c)), "n": len(c), "category": categories[p]}
                 for p, c in correct.items()}
    js = d / f"{suite}.{model}.json"
    js.write_text(json.dumps({"model": model, "suite": suite, "paradigms": paradigms}))
    rows = [{"paradigm": p, "pair_id": str(i), "ll_good": -1.0, "ll_bad": -2.0 if c else -0.5,
             "correct": c} for p, cs in correct.items() for i, c in enumerate(cs)]
    pd.DataFrame(rows).to_csv(js.with_suffix(".pairs.tsv"), sep="\t", index=False)
    return str(js)


CATS = {"agr_1": "agreement", "agr_2": "agreement", "island": "islands"}


@pytest.fixture
def results(tmp_path):
    rng = np.random.default_rng(0)
    strong = {p: list((rng.random(400) < 0.9).astype(int)) for p in CATS}
    weak = {p: list((rng.random(400) < 0.6).astype(int)) for p in CATS}
    same = {p: list(c) for p, c in weak.items()}
    same["agr_1"][0] = 1 - same["agr_1"][0]  # one pair differs: no real difference
    files = [write_blimp(tmp_path, "student", "demo", strong, CATS),
             write_blimp(tmp_path, "baseline", "demo", weak, CATS),
             write_blimp(tmp_path, "twin", "demo", same, CATS)]
    return tmp_path, files, strong, weak


def test_zero_shot_table_aggregates_categories_and_suite(results):
    _, files, strong, _ = results
    table = tables.zero_shot_table(tables.load_blimp(files), ["student", "baseline", "twin"])
    assert list(table.columns) == ["student", "baseline", "twin"]
    agreement = np.mean([np.mean(strong["agr_1"]), np.mean(strong["agr_2"])])
    assert table.loc[("demo", "category", "agreement"), "student"] == f"{100 * agreement:.1f}"
    overall = np.mean([np.mean(c) for c in strong.values()])  # macro over paradigms
    assert table.loc[("demo", "suite", "average"), "student"] == f"{100 * overall:.1f}"
    assert table.loc[("demo", "paradigm", "island"), "student"] == \
        f"{100 * np.mean(strong['island']):.1f}"


def test_seeds_fold_into_mean_and_sd(tmp_path):
    files = [write_blimp(tmp_path, f"student@{s}", "demo", {"agr_1": [1] * k + [0] * (10 - k)},
                         {"agr_1": "agreement"}) for s, k in ((1, 6), (2, 8))]
    table = tables.zero_shot_table(tables.load_blimp(files), ["student"])
    assert table.loc[("demo", "suite", "average"), "student"] == "70.0 ± 14.1"


def test_bootstrap_separates_real_from_null_differences(results):
    _, files, strong, weak = results
    a, b, twin = (tables.load_pairs(f) for f in files)
    real = tables.paired_bootstrap(a, b)
    assert real["holds"] and real["low"] > 0
    assert real["diff"] == pytest.approx(
        np.mean([np.mean(strong[p]) - np.mean(weak[p]) for p in CATS]))
    null = tables.paired_bootstrap(twin, b)
    assert not null["holds"] and null["low"] <= 0 <= null["high"]


def test_cli_writes_tables_and_figures(results):
    d, files, _, _ = results
    ft = []
    for model, score in (("student", 0.41), ("baseline", 0.30)):
        f = d / f"cola.{model}.json"
        f.write_text(json.dumps({"model": model, "task": "cola", "metric": "mcc", "score": score}))
        ft.append(str(f))
    skipped = d / "rte.student.json"
    skipped.write_text(json.dumps({"model": "student", "task": "rte", "metric": "acc",
                                   "skipped": True, "reason": "no train file"}))
    metrics = d / "metrics.csv"
    pd.DataFrame({"step": [1, 2, 3], "loss": [5.0, 4.0, 3.5],
                  "eval_loss": [None, 4.2, None]}).to_csv(metrics, index=False)
    out = d / "out"
    tables.main(["--blimp", *files, "--finetune", *ft, str(skipped), "--models", "student",
                 "baseline", "twin", "--compare", "student=baseline", "twin=baseline",
                 "--metrics", f"student={metrics}", "--out", str(out)])
    summary = pd.read_csv(out / "tables" / "summary.csv", index_col=0, dtype=str)
    assert summary.loc["student", "demo: vs baseline"].endswith("holds")
    assert summary.loc["twin", "demo: vs baseline"].endswith("n.s.")
    assert summary.loc["student", "finetune (macro)"] == "41.0"
    finetune = (out / "tables" / "finetune.md").read_text()
    assert "cola (mcc)" in finetune and "rte (acc)" in finetune and "–" in finetune
    assert "\\begin{table}" in (out / "tables" / "zero_shot.tex").read_text()
    for name in ("zero_shot", "finetune", "training_curves"):
        png = (out / "figures" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"


def test_missing_pairs_file_is_one_line(results, tmp_path):
    _, files, _, _ = results
    lone = tmp_path / "lone" / "x.json"
    lone.parent.mkdir()
    lone.write_text("{}")
    with pytest.raises(tables.UserError, match="per-pair results not found"):
        tables.load_pairs(str(lone))


def test_training_curves_blimp_panel_only_when_recorded(tmp_path, monkeypatch):
    """A third panel (BLiMP accuracy per epoch) appears when a metrics.csv has blimp_acc."""
    figs = []
    monkeypatch.setattr(tables, "_save_figure", lambda fig, out, name: figs.append(fig))
    plain = tmp_path / "plain.csv"
    pd.DataFrame({"step": [1, 2, 2], "epoch": [0.5, 1.0, 1.0], "loss": [5.0, 4.0, None],
                  "eval_loss": [None, None, 4.2]}).to_csv(plain, index=False)
    curve = tmp_path / "curve.csv"
    pd.DataFrame({"step": [0, 1, 2, 2, 2], "epoch": [0.0, 0.5, 1.0, 1.0, 1.0],
                  "loss": [None, 5.0, 4.0, None, None], "eval_loss": [None, None, None, 4.1, None],
                  "blimp_acc": [0.5, None, None, None, 0.75]}).to_csv(curve, index=False)
    tables.training_curves({"a": plain}, tmp_path)
    tables.training_curves({"a": plain, "b": curve}, tmp_path)
    assert [len(f.axes) for f in figs] == [2, 3]
    (line,) = figs[1].axes[2].get_lines()  # only b recorded BLiMP
    assert list(line.get_xdata()) == [0.0, 1.0] and list(line.get_ydata()) == [50.0, 75.0]
    train_b = figs[1].axes[0].get_lines()[1]  # rows without a train loss leave no gaps
    assert list(train_b.get_ydata()) == [5.0, 4.0]
