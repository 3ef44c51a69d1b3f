"""Result tables, seed-aware verdicts, paper tables and figures, from synthetic evaluation
outputs in the formats eval_blimp and finetune write (known answers by construction)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from babydistill.common import UserError
from babydistill.report import figures, stats, tables
from slurm_cluster import unavailable_reason


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


def write_finetune(d, model, task, metric, score):
    d.mkdir(parents=True, exist_ok=True)
    f = d / f"{task}.{model}.json"
    f.write_text(json.dumps({"model": model, "task": task, "metric": metric, "score": score}))
    return str(f)


def outcomes(rng, p: float, n: int) -> list[int]:
    return list((rng.random(n) < p).astype(int))


CATS = {"agr_1": "agreement", "agr_2": "agreement", "island": "islands"}


@pytest.fixture
def results(tmp_path):
    rng = np.random.default_rng(0)
    strong = {p: outcomes(rng, 0.9, 400) for p in CATS}
    weak = {p: outcomes(rng, 0.6, 400) for p in CATS}
    same = {p: list(c) for p, c in weak.items()}
    same["agr_1"][0] = 1 - same["agr_1"][0]  # one pair differs: no real difference
    files = [write_blimp(tmp_path, "student", "demo", strong, CATS),
             write_blimp(tmp_path, "baseline", "demo", weak, CATS),
             write_blimp(tmp_path, "twin", "demo", same, CATS)]
    return tmp_path, files, strong, weak


# ------------------------------------------------------------------------ zero-shot table


def test_zero_shot_table_macro_and_pooled_categories(tmp_path):
    # agreement: 2 paradigms of unequal size, so macro (mean of 0.5 and 1.0) != pooled
    cats = {"agr_1": "agreement", "agr_2": "agreement", "island": "islands"}
    correct = {"agr_1": [1, 0] * 50, "agr_2": [1] * 300, "island": [1, 1, 1, 0] * 25}
    f = write_blimp(tmp_path, "m", "blimp", correct, cats)
    blimp = stats.load_blimp([f])
    macro = tables.zero_shot_table(blimp, ["m"], "macro").set_index(["suite", "level", "row"])
    pooled = tables.zero_shot_table(blimp, ["m"], "pooled").set_index(["suite", "level", "row"])
    assert macro.loc[("blimp", "category", "agreement"), "m"] == "75.0"
    assert pooled.loc[("blimp", "category", "agreement"), "m"] == "87.5"  # 350 / 400
    # suite average: macro over 3 paradigms; pooled: mean of the 2 categories
    assert macro.loc[("blimp", "average", "all"), "m"] == f"{100 * (0.5 + 1 + 0.75) / 3:.1f}"
    assert pooled.loc[("blimp", "average", "all"), "m"] == f"{100 * (0.875 + 0.75) / 2:.1f}"
    assert macro.loc[("blimp", "paradigm", "agr_1"), "m"] == "50.0"


def test_seeds_fold_into_mean_sd_and_count(tmp_path):
    files = [write_blimp(tmp_path, f"student@{s}", "demo", {"agr_1": [1] * k + [0] * (10 - k)},
                         {"agr_1": "agreement"}) for s, k in ((1, 6), (2, 8))]
    table = tables.zero_shot_table(stats.load_blimp(files), ["student"])
    row = table[(table["level"] == "average")]
    assert list(table.columns) == ["suite", "level", "row", "student"]
    assert row["student"].item() == "70.0 ± 14.1 (n=2)"


# ---------------------------------------------------------------------------- verdicts


def test_bootstrap_separates_real_from_null_differences(results):
    _, files, strong, weak = results
    a, b, twin = (stats.load_pairs(f) for f in files)
    real = stats.paired_bootstrap(a, b)
    assert real["holds"] and real["low"] > 0
    assert real["diff"] == pytest.approx(
        np.mean([np.mean(strong[p]) - np.mean(weak[p]) for p in CATS]))
    null = stats.paired_bootstrap(twin, b)
    assert not null["holds"] and null["low"] <= 0 <= null["high"]


SEED_PARADIGMS = {f"p{i}": f"cat{i % 3}" for i in range(6)}


def seeded_world(tmp_path, name, accs: dict[int, float], rng, n=400):
    """One model per seed; each seed's pairs drawn at that seed's accuracy."""
    return [write_blimp(tmp_path, f"{name}@{s}", "blimp",
                        {p: outcomes(rng, acc, n) for p in SEED_PARADIGMS}, SEED_PARADIGMS)
            for s, acc in accs.items()]


def test_two_level_bootstrap_null_gap_with_seed_noise_does_not_hold(tmp_path):
    """Seeds differ by several points; student and baseline come from the same distribution.
    Pairs alone (1 seed each) would call the seed noise a difference; seeds drawn too do not."""
    rng = np.random.default_rng(1)
    base = seeded_world(tmp_path, "base", {1: 0.66, 2: 0.70, 3: 0.74}, rng)
    stud = seeded_world(tmp_path, "stud", {1: 0.73, 2: 0.65, 3: 0.71}, rng)
    files = stats.load_blimp(base + stud).drop_duplicates("model").set_index("model")["file"]
    draws = stats.PairDraws({m: stats.load_pairs(f) for m, f in files.items()})
    w = pd.Series(1.0, index=draws.paradigms)
    v = draws.compare(["stud@1", "stud@2", "stud@3"], ["base@1", "base@2", "base@3"], w)
    assert v.paired_seeds and (v.n_a, v.n_b) == (3, 3)
    assert not v.holds and v.low < 0 < v.high
    assert "3 seeds" in v.text() and v.text().endswith("n.s.")
    # the same student seed 1 against baseline seed 1 alone: a 7-point gap, and pairs say so
    one = draws.compare(["stud@1"], ["base@1"], w)
    assert one.holds and "1 seed," in one.text()


def test_two_level_bootstrap_real_gap_holds(tmp_path):
    rng = np.random.default_rng(2)
    base = seeded_world(tmp_path, "base", {1: 0.64, 2: 0.70, 3: 0.74}, rng)
    stud = seeded_world(tmp_path, "stud", {1: 0.70, 2: 0.75, 3: 0.80}, rng)
    blimp = stats.load_blimp(base + stud)
    summary = tables.summary_table(blimp, pd.DataFrame(columns=["model", "task", "metric", "score"]),
                                   ["base", "stud"], [("stud", "base")])
    cell = summary.loc["stud", "blimp: vs base"]
    assert cell.endswith("holds") and "3 seeds" in cell
    diff = float(cell.split()[0])
    observed = np.mean([blimp[blimp.model == f"stud@{s}"].acc.mean()
                        - blimp[blimp.model == f"base@{s}"].acc.mean() for s in (1, 2, 3)])
    assert diff == pytest.approx(100 * observed, abs=0.05)
    assert summary.loc["stud", "blimp"].endswith("(n=3)")


def test_seeded_student_against_unseeded_baseline(tmp_path):
    """student@1..3 vs one baseline: seeds drawn on the student's side only."""
    rng = np.random.default_rng(3)
    base = [write_blimp(tmp_path, "base", "blimp",
                        {p: outcomes(rng, 0.6, 400) for p in SEED_PARADIGMS}, SEED_PARADIGMS)]
    stud = seeded_world(tmp_path, "stud", {1: 0.80, 2: 0.82, 3: 0.78}, rng)
    summary = tables.summary_table(stats.load_blimp(base + stud),
                                   pd.DataFrame(columns=["model", "task", "metric", "score"]),
                                   ["base", "stud"], [("stud", "base")])
    cell = summary.loc["stud", "blimp: vs base"]
    assert "3 vs 1 seeds" in cell and cell.endswith("holds")


def test_t_interval_over_seeds():
    real = stats.t_interval({"1": 0.40, "2": 0.42, "3": 0.41}, {"1": 0.30, "2": 0.31, "3": 0.29})
    assert real.paired_seeds and real.holds and real.diff == pytest.approx(0.11)
    null = stats.t_interval({"1": 0.40, "2": 0.30, "3": 0.35}, {"1": 0.33, "2": 0.38, "3": 0.34})
    assert not null.holds and null.low < 0 < null.high
    welch = stats.t_interval({"1": 0.40, "2": 0.42}, {"7": 0.30, "8": 0.31, "9": 0.29})
    assert not welch.paired_seeds and welch.holds
    # one seed against three: the single run is taken to vary like the three (dof 2)
    b = {"1": 0.30, "2": 0.32, "3": 0.31}
    mixed = stats.t_interval({"-": 0.40}, b)
    half = 4.302653 * np.std(list(b.values()), ddof=1) * np.sqrt(1 + 1 / 3)
    assert (mixed.low, mixed.high) == pytest.approx((0.09 - half, 0.09 + half))
    assert mixed.seeds_text() == "1 vs 3 seeds"
    single = stats.t_interval({"-": 0.4}, {"-": 0.3})
    assert not single.holds and single.text() == "+10.0, 1 seed: no interval"


def test_summary_compares_seeded_students_and_finetune(tmp_path):
    rng = np.random.default_rng(4)
    files = (seeded_world(tmp_path, "base", {1: 0.60, 2: 0.62}, rng)
             + seeded_world(tmp_path, "stud", {1: 0.80, 2: 0.81}, rng))
    ft = [write_finetune(tmp_path, f"{m}@{s}", "cola", "mcc", score)
          for m, s, score in (("base", 1, 0.20), ("base", 2, 0.22), ("stud", 1, 0.30),
                              ("stud", 2, 0.33))]
    summary = tables.summary_table(stats.load_blimp(files), stats.load_finetune(ft),
                                   ["base", "stud"], [("stud", "base")])
    assert list(summary.index) == ["base", "stud"]
    assert summary.loc["stud", "finetune (macro)"] == "31.5 ± 2.1 (n=2)"
    assert "2 seeds" in summary.loc["stud", "finetune: vs base"]
    assert summary.loc["stud", "blimp: vs base"].endswith("holds")
    assert summary.loc["base", "blimp: vs base"] == ""


# ------------------------------------------------------------------------ paper tables


def paper_world(tmp_path):
    """baseline, two teachers, an ensemble, a student with 2 seeds, WML peers; 2 suites."""
    rng = np.random.default_rng(5)
    supp = {"hypernym": "hypernym", "qa_easy": "qa_congruence"}
    acc = {"baseline": 0.60, "teacher-a": 0.75, "teacher-b": 0.70, "ensemble": 0.76,
           "student@1": 0.80, "student@2": 0.79, "wml-peer1": 0.65, "wml-peer2": 0.62}
    files = []
    for m, a in acc.items():
        files.append(write_blimp(tmp_path, m, "blimp_filtered",
                                 {p: outcomes(rng, a, 300) for p in CATS}, CATS))
        files.append(write_blimp(tmp_path, m, "supplement",
                                 {p: outcomes(rng, a, 200) for p in supp}, supp))
    ft = []
    for m, a in acc.items():
        if m == "ensemble":
            continue
        ft.append(write_finetune(tmp_path, m, "cola", "mcc", a - 0.5))
        ft.append(write_finetune(tmp_path, m, "wsc", "acc", 0.6))
        ft.append(write_finetune(tmp_path, m, "msgs_main_verb_control", "mcc", a - 0.3))
    return files, ft


PAPER = {
    "category_scores": "macro",
    "bootstrap_samples": 300,  # fewer replicates: the tests check layout, not precision
    "paper": {
        "table1": {"kind": "zero_shot", "models": ["baseline", "teacher-a", "teacher-b",
                                                   "ensemble", "student"],
                   "reference": "baseline", "category_scores": "pooled",
                   "caption": "Baby Llama Table 1: 100% of pairs"},
        "table2": {"kind": "finetune", "models": ["baseline", "student"], "unstable": ["wsc"],
                   "reference": "baseline"},
        "table3": {"kind": "hyperparameters"},
        "wml": {"kind": "zero_shot", "models": ["wml", "student"], "suites": ["blimp_filtered"]},
    },
}
TASKS = {"cola": {"lr": 4e-5, "batch_size": 64, "epochs": 3, "patience": 10, "eval_every": 20,
                  "seed": 12},
         "wsc": {"lr": 5e-7, "batch_size": 1, "epochs": 10, "patience": 1000,
                 "eval_every": 2000, "seed": 12}}


def run_cli(tmp_path, files, ft, models, config=PAPER, extra=()):
    out = tmp_path / "out"
    tables.main(["--blimp", *files, "--finetune", *ft, "--models", *models,
                 "--compare", "student=baseline", "wml=baseline", "--tables-config", json.dumps(config),
                 "--finetune-tasks", json.dumps(TASKS), "--out", str(out), *extra])
    return out


MODELS = ["baseline", "teacher-a", "teacher-b", "student@1", "student@2", "wml-peer1",
          "wml-peer2", "ensemble"]


def test_paper_tables_contents(tmp_path):
    files, ft = paper_world(tmp_path)
    out = run_cli(tmp_path, files, ft, MODELS)
    t1 = pd.read_csv(out / "tables" / "paper" / "table1.csv", dtype=str, keep_default_na=False)
    assert list(t1.columns) == ["suite", "category", "baseline", "teacher-a", "teacher-b",
                                "ensemble", "student"]
    assert list(t1["suite"].unique()) == ["blimp_filtered", "supplement"]
    assert list(t1[t1.suite == "supplement"]["category"]) == ["hypernym", "qa congruence", "average"]
    blimp = stats.load_blimp(files)
    scores = stats.model_scores(blimp, "pooled")
    s1 = scores[(scores.model == "student@1") & (scores.suite == "blimp_filtered")
                & (scores.category == "agreement")].acc.item()
    s2 = scores[(scores.model == "student@2") & (scores.suite == "blimp_filtered")
                & (scores.category == "agreement")].acc.item()
    cell = t1[(t1.suite == "blimp_filtered") & (t1.category == "agreement")]["student"].item()
    sd = np.std([100 * s1, 100 * s2], ddof=1)
    assert cell == f"{50 * (s1 + s2):.1f} ± {sd:.1f} (n=2)*"  # 20 points above: marked
    assert not t1["baseline"].str.endswith("*").any()  # the reference itself is never marked
    md = (out / "tables" / "paper" / "table1.md").read_text()
    assert "pooled" in md and "two-level paired bootstrap" in md and "('" not in md

    t2 = pd.read_csv(out / "tables" / "paper" / "table2.csv", dtype=str, keep_default_na=False)
    assert list(t2.columns) == ["task", "metric", "unstable", "baseline", "student"]
    assert dict(zip(t2.task, t2.unstable)) == {"cola": "", "wsc": "†",
                                               "msgs_main_verb_control": ""}
    assert dict(zip(t2.task, t2.metric))["cola"] == "MCC"
    assert t2.set_index("task").loc["cola", "baseline"] == "10.0"
    # teachers are left out of Table 2; seeds of the student fold into one column
    assert t2.set_index("task").loc["cola", "student"].startswith("29.5 ± 0.7 (n=2)")

    t3 = pd.read_csv(out / "tables" / "paper" / "table3.csv", dtype=str)
    assert list(t3.task) == ["cola", "wsc"]
    assert t3.set_index("task").loc["wsc", "patience"] == "1000"
    assert t3.set_index("task").loc["cola", "max LR"] == "4e-5"
    assert tables._sci(2.5e-4) == "2.5e-4"

    summary = pd.read_csv(out / "tables" / "summary.csv", index_col=0, dtype=str,
                          keep_default_na=False)
    # the WML run has no model of its own: each peer is compared with the baseline
    assert "wml" not in summary.index
    for peer in ("wml-peer1", "wml-peer2"):
        assert "1 seed," in summary.loc[peer, "blimp_filtered: vs baseline"]
    wml = pd.read_csv(out / "tables" / "paper" / "wml.csv", dtype=str)
    assert list(wml.columns) == ["suite", "category", "wml-peer1", "wml-peer2", "student"]
    for name in ("table1", "table2", "wml"):
        assert (out / "figures" / "paper" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_student_against_the_best_swept_baseline(tmp_path):
    """BabyLlama-2's table: a sweep's best run (retrained, 3 seeds) as the reference; the
    distilled student gets a column with its seed-aware difference from it, teachers not."""
    rng = np.random.default_rng(11)
    files = []
    for name, accs in {"tuned": {1: 0.62, 2: 0.64, 3: 0.63}, "student": {1: 0.78, 2: 0.80, 3: 0.79},
                       "teacher": {1: 0.70}}.items():
        for s, acc in accs.items():
            files.append(write_blimp(tmp_path, f"{name}@{s}", "blimp",
                                     {p: outcomes(rng, acc, 300) for p in CATS}, CATS))
    table = {"kind": "zero_shot", "models": ["teacher", "tuned", "student"], "reference": "tuned"}
    base = {"bootstrap_samples": 300, "paper": {"bl2": table}}
    swept = {**base, "sweep_best": {"tuned": {"sweep": "smol", "base": "smol-nodistill"}}}
    common = ["--blimp", *files, "--models", "teacher", "tuned", "student",
              "--distilled", "student@1", "student@2", "student@3"]
    tables.main([*common, "--tables-config", json.dumps(swept), "--out", str(tmp_path / "a")])
    tables.main([*common, "--tables-config", json.dumps(base), "--out", str(tmp_path / "b")])
    a = pd.read_csv(tmp_path / "a/tables/paper/bl2.csv", dtype=str, keep_default_na=False)
    b = pd.read_csv(tmp_path / "b/tables/paper/bl2.csv", dtype=str, keep_default_na=False)
    assert list(a.columns) == [*b.columns, "student vs tuned"]
    assert a[list(b.columns)].equals(b)  # without the sweep's run: the table as before
    avg = a[a.category == "average"].iloc[0]
    assert avg["tuned"].endswith("(n=3)") and avg["student"].endswith("(n=3)*")
    cell = avg["student vs tuned"]
    assert "3 seeds" in cell and cell.endswith("holds")
    blimp = stats.load_blimp(files)
    observed = np.mean([blimp[blimp.model == f"student@{s}"].acc.mean()
                        - blimp[blimp.model == f"tuned@{s}"].acc.mean() for s in (1, 2, 3)])
    assert float(cell.split()[0]) == pytest.approx(100 * observed, abs=0.05)
    md = (tmp_path / "a/tables/paper/bl2.md").read_text()
    assert "tuned: the best trial of sweep smol (over smol-nodistill), retrained with 3 seeds" in md
    assert "sweep" not in (tmp_path / "b/tables/paper/bl2.md").read_text()


def test_paper_table_errors_name_the_key(tmp_path, capsys):
    files, ft = paper_world(tmp_path)
    bad = {"paper": {"t": {"kind": "zero_shot", "models": ["baseline", "nosuch"]}}}
    with pytest.raises(SystemExit):
        run_cli(tmp_path, files, ft, MODELS, bad)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: tables.paper.t.models: no results for model 'nosuch'")
    assert "\n" not in err
    bad = {"paper": {"t": {"kind": "zero_shot", "models": ["baseline"], "reference": "student"}}}
    with pytest.raises(SystemExit):
        run_cli(tmp_path, files, ft, MODELS, bad)
    assert "tables.paper.t.reference: 'student' is not one of" in capsys.readouterr().err


def test_tables_stage_is_deterministic(tmp_path):
    """The same results in, the same bytes out: the bootstrap is seeded."""
    files, ft = paper_world(tmp_path)
    first = run_cli(tmp_path, files, ft, MODELS)
    again = tmp_path / "again"
    shutil.copytree(first, again)
    shutil.rmtree(first)
    stats._DRAWS.clear()  # the bootstrap is drawn again, not reused
    run_cli(tmp_path, files, ft, MODELS)
    written = sorted(p.relative_to(first) for p in (first / "tables").rglob("*") if p.is_file())
    assert len(written) >= 30
    assert [str(p) for p in written
            if (first / p).read_bytes() != (again / p).read_bytes()] == []


def test_latex_escapes_and_compiles(tmp_path):
    files, ft = paper_world(tmp_path)
    out = run_cli(tmp_path, files, ft, MODELS,
                  extra=["--provenance", "student@1=/nonexistent"])
    texs = sorted((out / "tables").rglob("*.tex"))
    assert {t.stem for t in texs} >= {"summary", "zero_shot", "finetune", "provenance",
                                      "table1", "table2", "table3", "wml"}
    t1 = (out / "tables" / "paper" / "table1.tex").read_text()
    assert r"100\% of pairs" in t1 and r"$\pm$" in t1 and r"blimp\_filtered" in t1
    engine = shutil.which("pdflatex")
    if engine is None:
        pytest.skip("no LaTeX engine installed (Debian: texlive-latex-base texlive-latex-recommended)")
    for tex in texs:
        doc = tmp_path / "doc" / f"{tex.stem}.tex"
        doc.parent.mkdir(exist_ok=True)
        doc.write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n"
                       "\\usepackage{booktabs}\n\\begin{document}\n"
                       f"\\input{{{tex}}}\n\\end{{document}}\n")
        r = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name],
                           cwd=doc.parent, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{tex.name}:\n{r.stdout[-2000:]}"


def test_markdown_and_html_tables_are_readable(tmp_path):
    files, ft = paper_world(tmp_path)
    out = run_cli(tmp_path, files, ft, MODELS)
    for md in (out / "tables").rglob("*.md"):
        text = md.read_text()
        assert "('" not in text, md.name  # no raw tuples as row labels
    zs = (out / "tables" / "zero_shot.md").read_text()
    assert "| suite " in zs and "| blimp_filtered | category | agreement " in zs
    for name in ("summary", "zero_shot", "finetune"):
        html = (out / "tables" / f"{name}.html").read_text()
        assert "<table" in html and "student" in html
        assert html.count("<tr") == len(pd.read_csv(out / "tables" / f"{name}.csv")) + 1


# ----------------------------------------------------------------------------- figures


def test_cli_writes_tables_and_figures(results):
    d, files, _, _ = results
    ft = [write_finetune(d, m, "cola", "mcc", s) for m, s in (("student", 0.41), ("baseline", 0.30))]
    skipped = d / "rte.student.json"
    skipped.write_text(json.dumps({"model": "student", "task": "rte", "metric": "acc",
                                   "skipped": True, "reason": "no train file"}))
    metrics = d / "metrics.csv"
    pd.DataFrame({"step": [1, 2, 3], "epoch": [0.3, 0.6, 1.0], "loss": [5.0, 4.0, 3.5],
                  "eval_loss": [None, 4.2, None]}).to_csv(metrics, index=False)
    out = d / "out"
    tables.main(["--blimp", *files, "--finetune", *ft, str(skipped), "--models", "student",
                 "baseline", "twin", "--compare", "student=baseline", "twin=baseline",
                 "--metrics", f"student={metrics}", "--out", str(out)])
    summary = pd.read_csv(out / "tables" / "summary.csv", index_col=0, dtype=str)
    assert summary.loc["student", "demo: vs baseline"].endswith("holds")
    assert "1 seed" in summary.loc["student", "demo: vs baseline"]
    assert summary.loc["twin", "demo: vs baseline"].endswith("n.s.")
    assert summary.loc["student", "finetune (macro)"] == "41.0"
    finetune = (out / "tables" / "finetune.md").read_text()
    assert "| cola   | MCC " in finetune and "| rte    | ACC " in finetune and "–" in finetune
    assert "\\begin{table}" in (out / "tables" / "zero_shot.tex").read_text()
    for name in ("zero_shot", "finetune", "training_curves"):
        png = (out / "figures" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    assert not (out / "figures" / "wml_weights.png").exists()  # no WML run wrote weights
    # no train_summary.json beside the metrics: an empty budget, held to strict-small for reference
    assert "strict-small-2026, for reference" in (out / "tables" / "budget.md").read_text()


def test_missing_pairs_file_is_one_line(results, tmp_path):
    _, files, _, _ = results
    lone = tmp_path / "lone" / "x.json"
    lone.parent.mkdir()
    lone.write_text("{}")
    with pytest.raises(UserError, match="per-pair results not found"):
        stats.load_pairs(str(lone))


@pytest.fixture
def captured(monkeypatch):
    figs = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, out, name: figs.append(fig))
    return figs


def test_zero_shot_figure_form(results, captured):
    _, files, _, _ = results
    blimp = stats.load_blimp(files)
    pal = figures.Palette(["baseline", "student", "twin"])
    figures.zero_shot_figure(blimp, ["student", "baseline"], "macro", pal, None, "z", samples=200)
    (ax,) = captured[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["agreement", "islands"]
    chance = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [50.0, 50.0]
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.bbox.x1 - 1  # outside
    markers = {line.get_label(): line for line in ax.get_lines() if line.get_marker() == "o"}
    assert markers["student"].get_color() == pal("student")
    assert len(ax.collections) >= 2  # an interval bar set per model


def test_finetune_figure_splits_glue_and_msgs_with_metric_labels(tmp_path, captured):
    ft = stats.load_finetune([write_finetune(tmp_path, m, t, met, s) for m, t, met, s in (
        ("a@1", "cola", "mcc", 0.2), ("a@2", "cola", "mcc", 0.3), ("a@1", "mrpc", "f1", 0.7),
        ("a@2", "mrpc", "f1", 0.72), ("a@1", "msgs_main_verb_control", "mcc", 0.5))])
    figures.finetune_figure(ft, ["a"], figures.Palette(["a"]), None, "f")
    glue, msgs = captured[0].axes
    assert [t.get_text() for t in glue.get_xticklabels()] == ["cola\n(MCC)", "mrpc\n(F1)"]
    assert [t.get_text() for t in msgs.get_xticklabels()] == ["main_verb_control\n(MCC)"]
    assert glue.get_title() == "(Super)GLUE" and msgs.get_title() == "MSGS"


def test_training_curves_ce_and_kd_panels_apart(tmp_path, captured):
    plain = tmp_path / "plain.csv"
    pd.DataFrame({"step": [1, 2, 2], "epoch": [0.5, 1.0, 1.0], "loss": [5.0, 4.0, None],
                  "eval_loss": [None, None, 4.2]}).to_csv(plain, index=False)
    kd = tmp_path / "kd.csv"
    pd.DataFrame({"step": [0, 1, 2, 2, 2], "epoch": [0.0, 0.5, 1.0, 1.0, 1.0],
                  "loss": [None, 300.0, 200.0, None, None], "eval_loss": [None, None, None, 4.1, None],
                  "blimp_acc": [0.5, None, None, None, 0.75]}).to_csv(kd, index=False)
    pal = figures.Palette(["a", "b"])
    figures.training_curves({"a": plain}, set(), pal, tmp_path)
    figures.training_curves({"a": plain, "b@1": kd}, {"b"}, pal, tmp_path)
    assert [len(f.axes) for f in captured] == [2, 4]
    ce, kd_ax, ev, bl = captured[1].axes
    assert [list(line.get_ydata()) for line in ce.get_lines()] == [[5.0, 4.0]]
    assert [list(line.get_ydata()) for line in kd_ax.get_lines()] == [[300.0, 200.0]]
    assert kd_ax.get_lines()[0].get_color() == pal("b")
    assert ev.get_xlabel() == "epoch" and len(ev.get_lines()) == 2
    (line,) = bl.get_lines()
    assert list(line.get_xdata()) == [0.0, 1.0] and list(line.get_ydata()) == [50.0, 75.0]


def test_wml_weights_figure(tmp_path, captured):
    w = tmp_path / "wml_weights.csv"
    pd.DataFrame({"step": [0, 100, 200], "w1": [0.5, 0.6, 0.7],
                  "w2": [0.5, 0.4, 0.3]}).to_csv(w, index=False)
    pal = figures.Palette(["wml-peer1", "wml-peer2"])
    assert figures.wml_weights_figure({"wml": w}, pal, tmp_path)
    (ax,) = captured[0].axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["peer 1"].get_ydata()) == [0.5, 0.6, 0.7]
    assert lines["peer 2"].get_color() == pal("wml-peer2")
    # an instance wml@3: its peer 2 is model wml-peer2@3, coloured as wml-peer2 (not as wml)
    assert figures.wml_weights_figure({"wml@3": w}, pal, tmp_path)
    seeded = {line.get_label(): line for line in captured[1].axes[0].get_lines()}
    assert seeded["peer 2"].get_color() == pal("wml-peer2") != pal("wml")
    assert not figures.wml_weights_figure({}, pal, tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("step,x\n0,1\n")
    with pytest.raises(UserError, match="step,w1..wN"):
        figures.wml_weights_figure({"wml": bad}, pal, tmp_path)


def test_palette_is_fixed_by_model_name():
    a = figures.Palette(["x", "y", "z"])
    b = figures.Palette(["x", "y", "z"])
    assert a("y") == b("y") and a("y@3") == a("y") and len({a("x"), a("y"), a("z")}) == 3


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize("mutate, expected", [
    (lambda t: t["paper"]["baby-llama-table1"]["models"].append("nosuch"),
     "tables.paper.baby-llama-table1.models: 'nosuch' is not a pretrain, distill or ensemble run"),
    (lambda t: t["paper"]["baby-llama-table2"].update(unstable=["boolq"]),
     "tables.paper.baby-llama-table2.unstable: 'boolq' is not in eval.finetune.tasks"),
    (lambda t: t["paper"]["baby-llama-table1"].update(suites=["blimp"]),
     "tables.paper.baby-llama-table1.suites: 'blimp' is not in eval.blimp.suites"),
    (lambda t: t["paper"]["baby-llama-table1"].update(reference="llama-tiny-x"),
     "tables.paper.baby-llama-table1.reference"),
    (lambda t: t.update(category_scores="median"), "tables.category_scores: 'median' is not valid"),
    (lambda t: t["paper"]["baby-llama-table2"].pop("models"), "'models' is a required property"),
])
def test_tables_config_mistakes_name_the_key(repo_root, mutate, expected):
    from babydistill import config
    cfg = config.load_yaml(repo_root / "workflow" / "demo.yaml")
    config.validate(cfg)
    mutate(cfg["tables"])
    with pytest.raises(UserError, match=None) as e:
        config.validate(cfg)
    assert expected in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------- determinism


@pytest.mark.slow
@pytest.mark.skipif(unavailable_reason() is None,
                    reason="SLURM runs here: test_slurm_demo reruns the DAG from scratch and "
                           "compares every table byte for byte (one DAG run fewer in CI)")
def test_two_demo_runs_write_byte_identical_tables(demo_small, tmp_path_factory):
    """The shrunk demo DAG run twice from scratch: every table (summary, zero-shot, fine-tuning,
    provenance, the paper tables; CSV, Markdown, LaTeX, HTML) is byte for byte the same."""
    from e2e import RUN, compare_tables, run_snakemake

    second = tmp_path_factory.mktemp("demo_small_again")
    run_snakemake(second, "--cores", "2")
    files, different = compare_tables(*(d / "results" / RUN / "tables" for d in (demo_small, second)))
    assert {"summary.csv", "summary.md", "summary.tex"} <= files
    assert any(f.startswith("paper/") for f in files)
    assert not different, f"tables differ between two runs: {different}"


def test_provenance_rows_follow_the_model_order_with_seeds(tmp_path):
    items = []
    for name in ("b@2", "a", "b@1"):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps({"model_dir": f"results/x/models/{name}", "spec_sha256": "f" * 64,
                                 "code": {"commit": "c" * 40, "dirty": name == "a"}}))
        items.append(f"{name}={p}")
    table = tables.provenance_table(["a", "b"], items + ["c=/nonexistent"])
    assert list(table.index) == ["a", "b@1", "b@2"]
    assert table.loc["a", "commit"] == "c" * 12 + " (dirty)"


def test_table_defaults_are_the_schemas():
    from babydistill.config import specs

    t = specs.schema()["properties"]["tables"]["properties"]
    assert stats.BOOTSTRAP_SAMPLES == t["bootstrap_samples"]["default"]
    assert stats.CATEGORY_SCORES == t["category_scores"]["default"]
    assert stats.SCORE_MODES == tuple(t["category_scores"]["enum"]) == tuple(tables.MODE_TEXT)


def test_figures_and_stats_do_not_import_tables():
    """tables -> figures -> stats, never back (the circle tables <-> figures is gone)."""
    import ast
    import inspect

    for mod in (figures, stats):
        tree = ast.parse(inspect.getsource(mod))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "babydistill.report.tables" not in imported, mod.__name__
        assert not any(n.module == "babydistill.report" and any(a.name == "tables" for a in n.names)
                       for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)), mod.__name__


def test_budget_table_holds_ledgers_to_the_challenge(tmp_path):
    def model(name, words, epochs, ancillary=None):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.csv").write_text("step,loss\n")
        extra = sum(a["total_words_seen"] for a in (ancillary or {}).values())
        (d / "train_summary.json").write_text(json.dumps({"ledger": {
            "words_seen": words, "tokens_seen": words + 100, "epochs": epochs,
            "data_words": 10_000_000, "ancillary": ancillary or {},
            "total_words_seen": words + extra}}))
        return f"{name}={d / 'metrics.csv'}"

    teacher = {"words_seen": 60_000_000, "epochs": 6.0, "total_words_seen": 60_000_000}
    items = [model("student", 60_000_000, 6.0, {"teacher": teacher}),
             model("teacher", 60_000_000, 6.0), model("long", 150_000_000, 15.0),
             "old=/nonexistent/metrics.csv"]
    table = tables.budget_table(["teacher", "student", "long"], items, "strict-small-2026")
    assert list(table.index) == ["teacher", "student", "long"]
    assert table.loc["student", "teachers' words"] == "60,000,000"
    assert table.loc["student", "total words"] == "120,000,000"
    assert table.loc["student", "of cap (%)"] == "120.00"
    assert list(table["within"]) == ["yes", "no", "no"]
    strict = tables.budget_table(["teacher", "student", "long"], items, "strict-2026")
    assert list(strict["within"]) == ["yes", "yes", "no"]  # long: 15 epochs
    assert strict.loc["student", "cap"] == "1,000,000,000"
