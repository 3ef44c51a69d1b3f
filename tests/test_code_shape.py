"""The code's shape: no function or method in src/ is longer than MAX_LINES lines.

A function's length is read from the AST: from its ``def`` line to its last line
(decorators aside; nested functions count within the function that holds them, and on
their own too). A long function is split into named pieces, never allowed to grow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import babydistill

PKG = Path(babydistill.__file__).resolve().parent
MAX_LINES = 80

def long_functions(root: Path = PKG, limit: int = MAX_LINES) -> dict[str, int]:
    """``"<path under root>:<qualified name>" -> lines`` for each function over ``limit``."""
    found: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()

        def walk(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{prefix}{child.name}"
                    lines = child.end_lineno - child.lineno + 1
                    if lines > limit:
                        found[f"{rel}:{name}"] = lines
                    walk(child, f"{name}.")
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.")
                else:
                    walk(child, prefix)

        walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), "")
    return found


def test_no_function_over_the_limit():
    offenders = long_functions()
    assert not offenders, (f"functions over {MAX_LINES} lines (split them into named pieces): "
                           + ", ".join(f"{k} ({v})" for k, v in sorted(offenders.items())))


def test_the_check_sees_methods_and_nested_functions(tmp_path):
    """The walk finds a long method and a long nested function by name, and counts a
    function of exactly MAX_LINES lines as fine."""
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_LINES))
    short = "\n".join(f"    y{i} = {i}" for i in range(MAX_LINES - 1))
    (tmp_path / "m.py").write_text(f"class A:\n    def m(self):\n{body}\n\n\n"
                                   f"def outer():\n    def inner():\n{body}\n\n\n"
                                   f"def fits():\n{short}\n")
    assert long_functions(tmp_path) == {"m.py:A.m": MAX_LINES + 1, "m.py:outer": MAX_LINES + 2,
                                        "m.py:outer.inner": MAX_LINES + 1}
