"""MSGS: the five control and six ambiguous tasks come from the BabyLM 2023 filter_data.zip
layout (filter-data/msgs_filtered/<task>.{train,validation}.json) into the glue-layout folder
the fine-tuning stage reads, as msgs_<task>.{train,valid}.jsonl. The real files are not on
these machines: the fixtures are hand-made in that layout."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from babydistill.data.download import main

REPO = Path(__file__).resolve().parents[1]
CONTROL = ["main_verb_control", "control_raising_control", "syntactic_category_control",
           "lexical_content_the_control", "relative_position_control"]
AMBIGUOUS = ["main_verb_lexical_content_the", "main_verb_relative_token_position",
             "syntactic_category_lexical_content_the", "syntactic_category_relative_position",
             "control_raising_lexical_content_the", "control_raising_relative_token_position"]


def msgs_record(i: int, split: str) -> dict:
    # ambiguous training data: the linguistic and surface labels agree; validation: they differ
    ling = i % 2
    surface = ling if split == "train" else 1 - ling
    return {"sentence": f"the dog that barks is happy {i}.", "label": ling, "linguistic_feature_label": ling,
            "surface_feature_label": surface, "linguistic_feature_type": "main_verb",
            "surface_feature_type": "lexical_content", "condition": "mixed" if split == "train" else "test"}


def make_filter_data_zip(path: Path, as_array: str = AMBIGUOUS[0]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for task in CONTROL + AMBIGUOUS:
            for split in ("train", "validation", "test"):
                recs = [msgs_record(i, split) for i in range(4)]
                text = (json.dumps(recs) if task == as_array and split == "validation"
                        else "".join(json.dumps(r) + "\n" for r in recs))
                z.writestr(f"filter-data/msgs_filtered/{task}.{split}.json", text)
        z.writestr("filter-data/glue_filtered/cola.train.json", "{}\n")  # a sibling folder, not MSGS
    return path


def make_glue_dir(d: Path) -> Path:
    (d / "glue_filtered").mkdir(parents=True)
    for split in ("train", "valid"):
        (d / "glue_filtered" / f"cola.{split}.jsonl").write_text('{"sentence": "a b", "label": 1}\n')
    return d


def test_msgs_tasks_join_the_glue_folder(tmp_path):
    zip_path = make_filter_data_zip(tmp_path / "filter_data.zip")
    out = main(["glue", "--dir", str(make_glue_dir(tmp_path / "eval")), "--subdir", "glue_filtered",
                "--msgs-url", zip_path.as_uri(), "--msgs-subdir", "msgs_filtered", "--out", str(tmp_path / "glue")])
    names = sorted(p.name for p in out.iterdir())
    want = sorted(f"msgs_{t}.{s}.jsonl" for t in CONTROL + AMBIGUOUS for s in ("train", "valid", "test"))
    assert names == sorted(want + ["cola.train.jsonl", "cola.valid.jsonl"])
    # every line one record; the JSON-array file unrolled; the validation data disambiguates
    for task in CONTROL + AMBIGUOUS:
        recs = [json.loads(x) for x in (out / f"msgs_{task}.valid.jsonl").read_text().splitlines()]
        assert [r["label"] for r in recs] == [0, 1, 0, 1] and all("sentence" in r for r in recs)
        assert all(r["linguistic_feature_label"] != r["surface_feature_label"] for r in recs)


def test_config_names_all_eleven_msgs_tasks_and_their_source():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    tasks = cfg["eval"]["finetune"]["tasks"]
    assert {f"msgs_{t}" for t in CONTROL + AMBIGUOUS} <= set(tasks)
    assert cfg["eval"]["finetune"]["msgs"]["subdir"] == "msgs_filtered"


def test_no_msgs_folder_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("other/readme.txt", "x")
    with pytest.raises(SystemExit):
        main(["glue", "--dir", str(make_glue_dir(tmp_path / "eval")), "--msgs-dir", str(bad),
              "--out", str(tmp_path / "glue")])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "MSGS" in err and "\n" not in err
    assert not (tmp_path / "glue").exists()


def test_msgs_folder_found_without_subdir(tmp_path):
    """filter_data.zip also holds *.train.json under glue_filtered: msgs_filtered is taken first."""
    zip_path = make_filter_data_zip(tmp_path / "filter_data.zip")
    out = main(["glue", "--dir", str(make_glue_dir(tmp_path / "eval")), "--msgs-dir", str(zip_path),
                "--out", str(tmp_path / "glue")])
    assert len(list(out.glob("msgs_*.jsonl"))) == 33
