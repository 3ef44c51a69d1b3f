"""The package's layers: a module imports only its own layer and the layers below it.

Every ``import`` / ``from ... import`` in every module is read from the AST, function bodies
included (a lazy import is still a dependency); only imports under ``if TYPE_CHECKING:``
are exempt (annotations, never run). The order is the one docs/architecture.md draws.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import babydistill

PKG = Path(babydistill.__file__).resolve().parent
# bottom to top; "common" is layer 0, the package's own __init__/__main__ sit above all
LAYERS = ["common", "config", "data", "models", "eval", "train", "distill", "report", "sweep"]
RANK = {name: i for i, name in enumerate(LAYERS)}
# entries above the layers, like __main__: `python -m babydistill.export` (issue 22's CLI
# name) runs babydistill.report.export and holds no code of its own
ENTRIES = {"export"}


def layer_of(module: str) -> str | None:
    """``babydistill.<layer>...`` -> its layer; None for the package root itself."""
    parts = module.split(".")
    if parts[0] != "babydistill":
        return None
    if len(parts) == 1 or parts[1] in ENTRIES:
        return None
    return parts[1] if parts[1] in RANK else None


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip.update(id(n) for n in ast.walk(child))
    return skip


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _type_checking_nodes(tree)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from babydistill import config" names a submodule: judge each name
            if mod == "babydistill":
                found += [(node.lineno, f"babydistill.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, mod))
    return found


def violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        own = layer_of(module_name(path))
        if own is None:  # babydistill/__init__.py, __main__.py: the top, may list anything
            continue
        for line, mod in imports_of(path):
            if mod.split(".")[:2] in (["babydistill", e] for e in ENTRIES):
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: layer {own} imports the "
                           f"entry {mod} (above every layer)")
                continue
            other = layer_of(mod)
            if other is not None and RANK[other] > RANK[own]:
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: layer {own} imports {mod} "
                           f"(layer {other}, above it)")
    return bad


def test_every_subpackage_is_a_layer():
    subpackages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert subpackages == set(LAYERS) - {"common"}
    flat = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__"} - ENTRIES
    assert flat == {"common"}, f"modules outside the layers: {sorted(flat - {'common'})}"


def test_an_entry_only_runs_a_stage():
    """An entry above the layers is a shim: one import of a stage's main, nothing else."""
    for name in ENTRIES:
        tree = ast.parse((PKG / f"{name}.py").read_text(encoding="utf-8"))
        defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert not defs, f"babydistill/{name}.py defines {[d.name for d in defs]}"
        assert [m for _, m in imports_of(PKG / f"{name}.py")] == [f"babydistill.report.{name}"]


def test_no_module_imports_a_higher_layer():
    bad = violations()
    assert not bad, "\n".join(bad)


def test_the_check_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The walker itself: an import inside a function body and a relative one both count,
    a TYPE_CHECKING import does not."""
    fake = tmp_path / "babydistill"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    src = fake / "data" / "x.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from babydistill.report import tables\n"
        "def f():\n    from babydistill.train.trainer import Trainer\n"
        "from ..eval import scorer\n"
        "from babydistill import report\n"
    )
    monkeypatch.setattr(__import__(__name__), "PKG", fake)
    mods = [m for _, m in imports_of(src)]
    assert "babydistill.train.trainer" in mods
    assert "babydistill.eval" in mods  # "from ..eval import scorer", resolved
    assert "babydistill.report" in mods
    assert "babydistill.report.tables" not in mods


@pytest.mark.parametrize("module, layer", [("babydistill.common", "common"),
                                           ("babydistill.eval.scorer", "eval"),
                                           ("babydistill", None), ("torch.nn", None)])
def test_layer_of(module, layer):
    assert layer_of(module) == layer
