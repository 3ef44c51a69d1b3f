"""The fast evaluation of every checkpoint (eval.revisions), the learning curves
(report.learning_curves) and the official results layout (report.export, `python -m
babydistill.export`), on tiny model folders shaped as the training stages write them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from babydistill import config as bdconfig
from babydistill.config import challenge
from babydistill.eval import blimp as eval_blimp
from babydistill.eval import revisions
from babydistill.eval.scorer import load_suite, score_suite
from babydistill.report import export, learning_curves
from test_scorer import make_tiny_model

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TEACHER_WORDS = 7000  # the ancillary words of the final ledger (a student's teachers')

GOOD_BAD = [("The cats are sleeping on the mat.", "The cats is sleeping on the mat."),
            ("Every dog that barks has eaten the bones.", "Every dog that barks have eaten the bones."),
            ("Who should Derek hug after shocking Richard?", "Who should Derek hug Richard after shocking?"),
            ("She doesn't have a dog.", "She don't have a dog."),
            ("What did you get?", "What did you got?"),
            ("David should quit.", "David should quits."),
            ("The dog is eating.", "The dog are eating."),
            ("Sarah has no mammal.", "Sarah have no mammal.")]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture(scope="module")
def suites(tmp_path_factory) -> dict[str, Path]:
    """A BLiMP-format suite (one paradigm with BLiMP's field/UID keys, one without, as the
    supplement's files) and an EWoK-format one, 8 items per file."""
    d = tmp_path_factory.mktemp("suites")
    _write_jsonl(d / "mini" / "agreement.jsonl",
                 [{"sentence_good": g, "sentence_bad": b, "field": "morphology", "UID": "agreement",
                   "linguistics_term": "agreement"} for g, b in GOOD_BAD])
    _write_jsonl(d / "mini" / "turn_taking.jsonl",
                 [{"sentence_good": b, "sentence_bad": g} for g, b in GOOD_BAD])
    _write_jsonl(d / "ewok_mini" / "social-relations.jsonl",
                 [{"Context1": g, "Context2": b, "Target1": "The cats are happy.",
                   "Target2": "The cats are sad.", "Domain": "social-relations", "ContextType": "x",
                   "ContextDiff": "y", "TargetDiff": "z"} for g, b in GOOD_BAD])
    return {"mini": d / "mini", "ewok_mini": d / "ewok_mini"}


def _revision(model_dir: Path, name: str, words: int, seed: int) -> None:
    folder = make_tiny_model(model_dir / "revisions" / name, seed=seed)
    (folder / "revision.json").write_text(json.dumps(
        {"revision": name, "at_words": int(name[5:-1]) * 1000, "words_seen": words, "step": seed,
         "epochs": seed / 4, "tokens_seen": 256 * seed, "identity": "x"}))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """Final weights (seed 0) and two revisions with other weights, as Revisions writes them
    (listed out of order on purpose: chck_10K sorts before chck_3K by name)."""
    d = make_tiny_model(tmp_path_factory.mktemp("m") / "student-x", seed=0)
    _revision(d, "chck_10K", 10_040, 3)
    _revision(d, "chck_3K", 3_020, 1)
    (d / "train_summary.json").write_text(json.dumps(
        {"steps": 4, "ledger": {"words_seen": 12_500, "tokens_seen": 1024, "epochs": 1.0,
                                "total_words_seen": 12_500 + TEACHER_WORDS}}))
    return d


LIMITS = {"mini": 5, "ewok_mini": 4}


@pytest.fixture(scope="module")
def result(model_dir, suites, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("out") / "student-x.json"
    revisions.main(["--model", str(model_dir), "--suite", *(f"{k}={v}" for k, v in suites.items()),
                    "--limit", *(f"{k}={v}" for k, v in LIMITS.items()), "--out", str(out)])
    return json.loads(out.read_text()), out


def test_revisions_in_words_order_with_words_from_each_revision(result):
    res, _ = result
    assert [r["revision"] for r in res["revisions"]] == ["chck_3K", "chck_10K", "main"]
    assert [r["words_seen"] for r in res["revisions"]] == [3_020, 10_040, 12_500]
    assert [r["total_words_seen"] for r in res["revisions"]] == [
        w + TEACHER_WORDS for w in (3_020, 10_040, 12_500)]
    assert [r["step"] for r in res["revisions"]] == [1, 3, 4]
    assert res["convention"] == "babylm-2025" and res["backend"] == "fast"


def test_each_revision_scores_as_its_folder_scored_directly(result, model_dir, suites):
    res, _ = result
    for rev in res["revisions"]:
        folder = model_dir if rev["revision"] == "main" else model_dir / "revisions" / rev["revision"]
        model, tok = eval_blimp.load_model(folder)
        for name, path in suites.items():
            summary, rows = score_suite(model, tok, load_suite(path, LIMITS[name]),
                                        convention="babylm-2025")
            got = rev["suites"][name]
            assert got["accuracy"] == summary["accuracy"] and got["paradigms"] == summary["paradigms"]
            assert got["n_pairs"] == LIMITS[name] * len(list(path.glob("*.jsonl")))
            assert "".join(got["correct"].values()) == "".join(str(r[4]) for r in rows)
    # the weights differ per revision, so the decisions do somewhere
    assert len({json.dumps(r["suites"]["mini"]["correct"]) for r in res["revisions"]}) > 1


def test_a_folder_without_a_ledger_or_an_incomplete_revision_is_one_line(model_dir, suites, tmp_path,
                                                                         capsys):
    bare = make_tiny_model(tmp_path / "bare")
    with pytest.raises(SystemExit):
        revisions.main(["--model", str(bare), "--suite", f"mini={suites['mini']}", "--out",
                        str(tmp_path / "o.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train_summary.json" in err[0]
    (bare / "train_summary.json").write_text(json.dumps({"ledger": {"words_seen": 5}}))
    (bare / "revisions" / "chck_1K").mkdir(parents=True)
    with pytest.raises(SystemExit):
        revisions.main(["--model", str(bare), "--suite", f"mini={suites['mini']}", "--out",
                        str(tmp_path / "o.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "chck_1K: no revision.json" in err[0]


def test_learning_curves_one_row_per_model_and_revision(result, tmp_path):
    res, path = result
    teacher = {**res, "model": "teacher-x"}
    (tmp_path / "teacher-x.json").write_text(json.dumps(teacher))
    learning_curves.main(["--revisions", str(path), str(tmp_path / "teacher-x.json"),
                          "--models", "teacher-x", "student-x", "--roles",
                          json.dumps({"teacher-x": "teacher", "student-x": "student"}),
                          "--tables", str(tmp_path / "t"), "--figures", str(tmp_path / "f")])
    with open(tmp_path / "t" / "learning_curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["revision"]) for r in rows] == [
        (m, r) for m in ("teacher-x", "student-x") for r in ("chck_3K", "chck_10K", "main")]
    assert [r["role"] for r in rows] == ["teacher"] * 3 + ["student"] * 3
    assert [int(r["words_seen"]) for r in rows[:3]] == [3_020, 10_040, 12_500]
    assert [float(r["mini"]) for r in rows[3:]] == [
        round(100 * rev["suites"]["mini"]["accuracy"], 1) for rev in res["revisions"]]
    assert (tmp_path / "f" / "learning_curves.png").stat().st_size > 1000


# ---- the official collation, as babylm/evaluation-pipeline-2025 collate_preds.py @591121d
# reads a results folder (written here from reading it: _check_validity_of_dir,
# get_revision_fast_eval_metrics, _calculate_target_results, _check_size, collate_preds)

def official_accuracy(predictions_json: Path, data_dir: Path, key: str) -> dict[str, float]:
    """Per UID: zip the predictions with the lines of <data_dir>/<UID>.jsonl, right when the
    stripped ``pred`` equals the stripped good sentence / Target1."""
    preds = json.loads(predictions_json.read_text())
    out = {}
    for uid, entry in preds.items():
        items = entry["predictions"]
        assert all(set(p) >= {"id", "pred"} for p in items)
        assert [p["id"] for p in items] == [f"{uid}_{i}" for i in range(len(items))]
        lines = (data_dir / uid).with_suffix(".jsonl").read_text().splitlines()
        right = sum(p["pred"].strip() == json.loads(line)[key].strip() for p, line in zip(items, lines))
        out[uid] = right / len(items)
    return out


@pytest.fixture(scope="module")
def exported(result, model_dir, suites, tmp_path_factory):
    """python -m babydistill.export of the fixture model, with the full evaluation of main
    (eval_blimp's pairs TSVs, whole suites)."""
    res, path = result
    d = tmp_path_factory.mktemp("export")
    full = {}
    for name, suite in suites.items():
        full[name] = eval_blimp.main(["--model", str(model_dir), "--suite-dir", str(suite), "--suite",
                                      name, "--out", str(d / f"{name}.json"), "--pairs-out",
                                      str(d / f"{name}.tsv"), "--backend", "fast",
                                      "--convention", "babylm-2025"])
    results_dir = d / "results"
    export.main(["--revisions", str(path), "--suite", *(f"{k}={v}" for k, v in suites.items()),
                "--dataset", "mini=blimp", "ewok_mini=ewok",
                "--full", *(f"{k}={d / f'{k}.tsv'}" for k in suites), "--out",
                str(results_dir / "student-x")])
    return res, results_dir, full


def test_export_has_every_path_and_key_the_official_collation_reads(exported, suites):
    res, results_dir, full = exported
    model = results_dir / Path("student-x").stem  # args.model_path_or_name.stem
    for rev in res["revisions"]:  # the fast evaluation of each revision
        base = model / rev["revision"] / "zero_shot" / "causal"
        blimp = official_accuracy(base / "blimp" / "blimp_fast" / "predictions.json", suites["mini"],
                                  "sentence_good")
        ewok = official_accuracy(base / "ewok" / "ewok_fast" / "predictions.json",
                                 suites["ewok_mini"], "Target1")
        for got, name in ((blimp, "mini"), (ewok, "ewok_mini")):
            assert got == {p: v["acc"] for p, v in rev["suites"][name]["paradigms"].items()}
    base = model / "main" / "zero_shot" / "causal"  # the full evaluation of the final model
    assert official_accuracy(base / "blimp" / "blimp_filtered" / "predictions.json", suites["mini"],
                             "sentence_good") == {p: v["acc"] for p, v in full["mini"]["paradigms"].items()}
    assert official_accuracy(base / "ewok" / "ewok_filtered" / "predictions.json", suites["ewok_mini"],
                             "Target1") == {p: v["acc"] for p, v in full["ewok_mini"]["paradigms"].items()}
    collated = json.loads((model / "all_full_preds_and_fast_scores_causal.json").read_text())
    assert set(collated) == {"blimp", "ewok", "fast_eval_results"}
    assert collated["blimp"] == json.loads((base / "blimp" / "blimp_filtered" / "predictions.json").read_text())
    fast = collated["fast_eval_results"]
    assert set(fast) == {"blimp", "ewok"}
    assert fast["blimp"] == [{p: v["acc"] for p, v in r["suites"]["mini"]["paradigms"].items()}
                             for r in res["revisions"][:-1]]  # chck_* in order, not main


def test_export_manifest_names_what_the_collation_still_lacks(exported):
    _, results_dir, _ = exported
    manifest = json.loads((results_dir / "student-x" / "export.json").read_text())
    assert manifest["fast_eval_revisions"] == ["chck_3K", "chck_10K"]
    assert manifest["missing_revisions"][:2] == ["chck_1M", "chck_2M"]
    assert manifest["missing_revisions"][-1] == "chck_100M"  # strict-small's list
    missing = manifest["missing_files"]
    assert "main/zero_shot/causal/reading/predictions.json" in missing
    assert "main/finetune/wsc/predictions.json" in missing
    assert "main/zero_shot/causal/blimp/blimp_filtered/predictions.json" not in missing
    # 5 / 4 items per UID, not the official 200 / 100: named, one per UID and revision
    assert len(manifest["size_mismatches"]) == 3 * 3
    assert "blimp_fast/agreement: 5 items, the official collation asserts 200" in " ".join(
        manifest["size_mismatches"])


def test_fast_limits_datasets_and_roles_from_the_config():
    demo = bdconfig.load_yaml(REPO / "workflow" / "demo.yaml")
    assert challenge.official_dataset(demo, "demo") == "blimp"
    assert challenge.fast_limit(demo, "demo") == 200
    cfg = {"eval": {"blimp": {"suites": {"s": {"official": "ewok"}}}, "revisions": {}}}
    assert challenge.fast_limit(cfg, "s") == 100 and challenge.fast_limit(cfg, "supplement") == 50
    cfg["eval"]["revisions"]["limit"] = 7
    assert challenge.fast_limit(cfg, "s") == 7
    roles = bdconfig.model_roles(demo)
    assert roles["llama-tiny"] == roles["gpt2-tiny"] == "teacher"
    assert roles["student-tiny-nodistill"] == roles["student-tiny-curriculum"] == "baseline"
    assert roles["student-tiny-kd-topk"] == roles["student-tiny-wml-4peers-peer2"] == "student"
    assert "tiny-ensemble" not in roles
    assert bdconfig.export_track(demo) == "strict-small"
    assert bdconfig.export_track({"challenge": "strict-2026"}) == "strict"


# ---- an encoder (arch: roberta): the official mlm backend's folder ------------------------

@pytest.fixture(scope="module")
def encoder_revisions(suites, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny RobertaForMaskedLM folder with one revision, and its eval_revisions JSON."""
    from test_pll import make_tiny_mlm

    d = make_tiny_mlm(tmp_path_factory.mktemp("enc") / "roberta-x", seed=0)
    rev = make_tiny_mlm(d / "revisions" / "chck_3K", seed=1)
    (rev / "revision.json").write_text(json.dumps(
        {"revision": "chck_3K", "at_words": 3000, "words_seen": 3_020, "step": 1, "epochs": 0.25,
         "tokens_seen": 256, "identity": "x"}))
    (d / "train_summary.json").write_text(json.dumps(
        {"steps": 4, "ledger": {"words_seen": 12_500, "tokens_seen": 1024, "epochs": 1.0,
                                "total_words_seen": 12_500}}))
    out = d.parent / "roberta-x.json"
    revisions.main(["--model", str(d), "--suite", *(f"{k}={v}" for k, v in suites.items()),
                    "--limit", *(f"{k}={v}" for k, v in LIMITS.items()), "--out", str(out)])
    return d, out


def _export_args(path: Path, suites: dict, out: Path, *extra: str) -> list[str]:
    return ["--revisions", str(path), "--suite", *(f"{k}={v}" for k, v in suites.items()),
            "--dataset", "mini=blimp", "ewok_mini=ewok", "--out", str(out), *extra]


def test_export_of_an_encoder_goes_under_the_mlm_backend(encoder_revisions, suites, tmp_path):
    from transformers import AutoTokenizer

    model_dir, path = encoder_revisions
    res = json.loads(path.read_text())
    manifest = export.main(_export_args(path, suites, tmp_path / "results" / "roberta-x"))
    model = tmp_path / "results" / "roberta-x"
    assert manifest["backend"] == "mlm" and manifest["auto_class"] == "AutoModelForMaskedLM"
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert manifest["mask_token"] == {"token": "<mask>", "id": tok.mask_token_id} and tok.mask_token_id is not None
    for rev in res["revisions"]:
        base = model / rev["revision"] / "zero_shot" / "mlm"
        got = official_accuracy(base / "blimp" / "blimp_fast" / "predictions.json", suites["mini"],
                                "sentence_good")
        assert got == {p: v["acc"] for p, v in rev["suites"]["mini"]["paradigms"].items()}
    assert not (model / "main" / "zero_shot" / "causal").exists()
    assert (model / "all_full_preds_and_fast_scores_mlm.json").is_file()
    assert "main/zero_shot/mlm/reading/predictions.json" in manifest["missing_files"]


def test_export_backend_that_contradicts_the_folder_is_one_line(encoder_revisions, result, suites,
                                                                tmp_path, capsys):
    import shutil

    model_dir, path = encoder_revisions
    with pytest.raises(SystemExit):
        export.main(_export_args(path, suites, tmp_path / "a" / "roberta-x", "--backend", "causal"))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a masked LM (RobertaForMaskedLM); use --backend mlm or auto" in err[0]
    with pytest.raises(SystemExit):
        export.main(_export_args(result[1], suites, tmp_path / "b" / "student-x", "--backend", "mlm"))
    assert "is a causal LM" in capsys.readouterr().err
    # a masked LM whose tokenizer lost its mask token: the official mlm backend cannot mask
    bare = tmp_path / "bare" / "roberta-x"
    shutil.copytree(model_dir, bare, ignore=shutil.ignore_patterns("revisions"))
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (bare / name).is_file():
            cfg = json.loads((bare / name).read_text())
            cfg.pop("mask_token", None)
            (bare / name).write_text(json.dumps(cfg))
    res = {**json.loads(path.read_text()), "model_dir": str(bare)}
    (tmp_path / "bare.json").write_text(json.dumps(res))
    with pytest.raises(SystemExit):
        export.main(_export_args(tmp_path / "bare.json", suites, tmp_path / "c" / "roberta-x"))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokenizer has no mask token" in err[0]
    assert not (tmp_path / "c" / "roberta-x").exists()
