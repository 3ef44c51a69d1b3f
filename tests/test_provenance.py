"""provenance.json: traces a model directory to its spec, inputs and code commit."""

from __future__ import annotations

import argparse
import json
import os
import subprocess

import pytest

from babydistill.config import provenance

from babydistill.report import tables
from babydistill.common import UserError


def test_record_names_commit_spec_and_inputs(tmp_path, repo_root):
    model = tmp_path / "models" / "student"
    model.mkdir(parents=True)
    tokens = tmp_path / "train.json"
    tokens.write_text('{"n_tokens": 10}')
    tok_dir = tmp_path / "tokenizer"
    tok_dir.mkdir()
    (tok_dir / "tokenizer.json").write_text("{}")
    spec = {"name": "student", "train": {"lr": 1e-3}}
    provenance.main(["--model-dir", str(model), "--spec", json.dumps(spec),
                     "--input", str(tokens), "--input", str(tok_dir)])
    rec = json.loads((model / "provenance.json").read_text())
    head = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert rec["code"]["commit"] == (head or "unknown")
    assert rec["spec"] == spec and rec["model"] == "student"
    assert rec["versions"]["torch"].startswith("2.")
    # what `precision: auto` saw (conftest pins the detection off) and no summary: no precision
    assert rec["cpu_bf16_native"] is False and rec["precision"] is None
    (model / "train_summary.json").write_text('{"precision": "bf16"}')
    provenance.main(["--model-dir", str(model), "--spec", json.dumps(spec)])
    assert json.loads((model / "provenance.json").read_text())["precision"] == "bf16"
    first = rec["inputs"][str(tokens)]
    tokens.write_text('{"n_tokens": 11}')
    assert provenance.file_digest(tokens) != first  # a changed input shows
    assert provenance.file_digest(tok_dir) == rec["inputs"][str(tok_dir)]

    table = tables.provenance_table(["student", "absent"], [f"student={model}/provenance.json",
                                                            "absent=/nonexistent.json"])
    assert list(table.index) == ["student"]
    assert table.loc["student", "spec_sha256"] == rec["spec_sha256"][:12]


def test_missing_input_is_one_line(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(SystemExit) as e:
        provenance.main(["--model-dir", str(tmp_path / "m"), "--input", str(tmp_path / "nope")])
    assert e.value.code == 2
    with pytest.raises(UserError, match="model directory not found"):
        provenance.main.__wrapped__(["--model-dir", str(tmp_path / "absent")])


def test_stage_inputs_are_what_the_rules_recorded(tmp_path):
    """The stages record the inputs the model rules once passed to --input: PREFIX.json of
    the splits, the tokenizer, each teacher's provenance.json (also through a --cache)."""
    t = [tmp_path / "models" / n for n in ("t1", "t2")]
    for d in t:
        d.mkdir(parents=True)
        (d / "provenance.json").write_text("{}")
    ns = argparse.Namespace
    pre = ns(train="r/tokens/train", dev="r/tokens/select", tokenizer="r/tokenizer")
    assert provenance.stage_inputs(pre) == ["r/tokens/train.json", "r/tokens/select.json", "r/tokenizer"]
    live = ns(**vars(pre), teacher=[str(d) for d in t], cache=None)
    teachers = [f"{d}/provenance.json" for d in t]
    assert provenance.stage_inputs(live) == [*provenance.stage_inputs(pre), *teachers]
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "header.json").write_text(json.dumps({"teachers": [str(d) for d in t]}))
    cached = ns(**vars(pre), teacher=[], cache=str(cache))
    assert provenance.stage_inputs(cached) == provenance.stage_inputs(live)
    wml = ns(**vars(pre), teacher=[], cache=None)
    assert provenance.stage_inputs(wml) == provenance.stage_inputs(pre)
    ensemble = ns(teacher=[str(d) for d in t], tokenizer=None, out="x")
    assert provenance.stage_inputs(ensemble) == teachers


def test_record_model_writes_provenance_like_the_cli(tmp_path, monkeypatch):
    """record_model == `provenance --model-dir ...`: the same provenance.json (but its time
    stamp), and nothing else in the model folder (rule model_card writes the card apart)."""
    spec = {"name": "m", "model": {"arch": "llama"}, "seq_length": 16}
    tokens = tmp_path / "train.json"
    tokens.write_text("{}")
    dirs = []
    for name in ("a", "b"):
        d = tmp_path / name / "results" / "r" / "models" / "m"
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 40}))
        dirs.append(d)
    provenance.main(["--model-dir", str(dirs[0]), "--spec", json.dumps(spec), "--input", str(tokens)])
    assert provenance.record_model(dirs[1], json.dumps(spec), [str(tokens)]) == dirs[1] / "provenance.json"
    old, new = (json.loads((d / "provenance.json").read_text()) for d in dirs)
    for rec in (old, new):
        rec.pop("written"), rec.pop("model_dir")
    assert old == new
    assert sorted(p.name for p in dirs[1].iterdir()) == ["config.json", "provenance.json"]
    assert provenance.record_model(dirs[1], spec, []) and json.loads(
        (dirs[1] / "provenance.json").read_text())["spec"] == spec  # a dict spec too
    with pytest.raises(UserError, match="input not found"):
        provenance.record_model(dirs[1], "{}", [str(tmp_path / "nope")])
    monkeypatch.setitem(os.environ, "RANK", "1")  # torchrun: only rank 0 writes
    (dirs[1] / "provenance.json").unlink()
    assert provenance.record_model(dirs[1], "{}", []) is None
    assert not (dirs[1] / "provenance.json").exists()
