"""BabyLlama-2's data: the 2024 layout, each cleaned train file split 95/5 by lines into a
train and a selection set, the selection set as the eval loss and dev kept for testing."""

from __future__ import annotations

import yaml

from babydistill.data.clean import clean_file
from babydistill.data.download import fetch_corpus
from babydistill.data.select_split import main, split_lines
from test_workflow import job_counts, snakemake

FIXTURE = __import__("pathlib").Path(__file__).parent / "fixtures" / "babylm_mini_2024"
SOURCES_2024 = ["bnc_spoken", "childes", "gutenberg", "open_subtitles", "simple_wiki", "switchboard"]


def test_split_lines_keeps_order_and_puts_the_last_share_in_selection():
    lines = [f"line {i}" for i in range(200)]
    train, select = split_lines("\n".join(lines) + "\n", 0.05)
    assert train == lines[:190] and select == lines[190:]
    # the authors' rounding: round((1 - f) * n) train lines
    train, select = split_lines("a\nb\nc\nd\ne\nf\ng\n", 0.05)  # round(6.65) = 7
    assert len(train) == 7 and select == []
    train, select = split_lines("\n".join(map(str, range(30))), 0.05)  # round(28.5) = 28
    assert len(train) == 28 and select == ["28", "29"]


def test_2024_fixture_downloads_cleans_and_splits_95_5(tmp_path):
    raw = fetch_corpus(tmp_path / "raw", dirs=[str(FIXTURE)], layout="2024")
    assert sorted(p.name for p in (raw / "train_10M").iterdir()) == \
        sorted(f"{s}.train" for s in SOURCES_2024)
    assert sorted(p.name for p in (raw / "dev").iterdir()) == sorted(f"{s}.dev" for s in SOURCES_2024)
    total = {"train": 0, "select": 0}
    for s in SOURCES_2024:
        clean = tmp_path / "clean" / f"{s}.txt"
        clean_file(s, "reference", raw / "train_10M" / f"{s}.train", clean)
        lines = clean.read_text(encoding="utf-8").splitlines()
        counts = main(["--fraction", "0.05", str(clean), str(tmp_path / "fit" / f"{s}.txt"),
                       str(tmp_path / "select" / f"{s}.txt")])
        fit = (tmp_path / "fit" / f"{s}.txt").read_text(encoding="utf-8").splitlines()
        sel = (tmp_path / "select" / f"{s}.txt").read_text(encoding="utf-8").splitlines()
        assert fit + sel == lines  # nothing lost, nothing reordered
        assert len(sel) == len(lines) - round(0.95 * len(lines)) >= 1
        assert counts["select_lines"] == len(sel)
        total["train"] += counts["train_words"]
        total["select"] += counts["select_words"]
    share = total["select"] / (total["train"] + total["select"])
    assert 0.03 < share < 0.08  # ~5% of the words, as 0.5M of 10M


def test_babyllama2_2024_variant_plans_the_selection_split(repo_root, tmp_path):
    cfg = yaml.safe_load((repo_root / "workflow/variants/babyllama2_2024.yaml").read_text())
    cfg["corpus"]["dir"] = str(FIXTURE)
    f = tmp_path / "v.yaml"
    f.write_text(yaml.safe_dump(cfg))
    r = snakemake(repo_root, "-n", "-p", "--cores", "8", "--resources", "gpu=1",
                  "--configfile", str(f), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout)
    assert counts["select_split"] == len(SOURCES_2024)
    assert counts["tokenize_split"] == 3  # train (95%), select (5%), dev (the test set)
    assert counts["pretrain"] == 3 and counts["distill"] == 1
    run = "results/babyllama2-2024"
    assert f"--dev {run}/tokens/select " in r.stdout and f"--dev {run}/tokens/dev " not in r.stdout
    assert f"--fraction 0.05 {run}/corpus/clean/train/childes.txt" in r.stdout
    assert "--layout 2024" in r.stdout
