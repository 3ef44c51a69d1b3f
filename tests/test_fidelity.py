"""docs/fidelity.md against config.yaml: every row whose config key is one backticked key
and whose project cell is one backticked value must agree with the config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from babydistill import config as bdconfig
ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fidelity.md"
ONE_CODE = re.compile(r"^`([^`]+)`$")


def table_rows(text: str) -> list[dict[str, str]]:
    """Every row of every markdown table, as {header: cell}."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if header is None:
            header = cells
        elif not all(set(c) <= set("-: ") for c in cells):
            rows.append(dict(zip(header, cells)))
    return rows


def resolve(config: dict, key: str):
    """A dotted key of config.yaml; a run's training key falls back to `training:`."""
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        if i == 2 and parts[0] in ("pretrain", "distill") and len(parts) == 3:
            train = bdconfig.training_of(config, config[parts[0]][parts[1]])
            if part in train:
                return train[part]
        raise KeyError(key)
    return node


@pytest.fixture(scope="module")
def rows():
    return table_rows(DOC.read_text(encoding="utf-8"))


def checked_rows(rows):
    out = []
    for row in rows:
        key = ONE_CODE.match(row.get("config key", ""))
        value = ONE_CODE.match(row.get("project", ""))
        if key and value:
            out.append((row["detail"], key[1], yaml.safe_load(value[1])))
    return out


def test_table_parses_with_its_columns(rows):
    assert len(rows) > 80
    for row in rows:
        assert list(row) == ["detail", "reference value", "source", "config key", "project",
                             "match"], row
        assert row["source"] and row["match"], row


def test_config_yaml_equals_the_project_column(rows):
    config = bdconfig.load_yaml(ROOT / "config.yaml")
    checked = checked_rows(rows)
    numeric = [c for c in checked if isinstance(c[2], (int, float)) and not isinstance(c[2], bool)]
    assert len(checked) >= 70 and len(numeric) >= 50
    for detail, key, expected in checked:
        try:
            actual = resolve(config, key)
        except KeyError:
            pytest.fail(f"{detail}: config key {key} not in config.yaml")
        if isinstance(expected, float) or isinstance(actual, float):
            assert actual == pytest.approx(expected, rel=1e-12), (detail, key, actual, expected)
        else:
            assert actual == expected, (detail, key, actual, expected)


def test_every_mismatch_has_a_reason(rows):
    for row in rows:
        match = row["match"]
        if match.startswith("no"):
            assert len(match) > len("no: ") + 20, row["detail"]
        else:
            assert match.split()[0].rstrip(":(") in {"yes", "option", "n/a", "see"}, row


def test_a_changed_config_value_is_caught(rows):
    """The check can fail: a config whose student lr is the script's 2.5e-4 disagrees."""
    config = bdconfig.load_yaml(ROOT / "config.yaml")
    config["distill"]["baby-llama-58M"]["lr"] = 2.5e-4
    bad = [(d, k, v) for d, k, v in checked_rows(rows) if resolve(config, k) != v]
    assert [k for _, k, _ in bad] == ["distill.baby-llama-58M.lr"]
