"""provenance.json: traces a model directory to its spec, inputs and code commit."""

from __future__ import annotations

import json
import subprocess

import pytest

from babydistill import provenance, tables
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
