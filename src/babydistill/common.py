"""Small pieces every stage shares: one-line user errors, atomic writes, logging.

Each stage module exposes ``main(argv=None)`` wrapped by :func:`cli`, so a bad input
ends in one line on stderr (``error: <file/key>: <what to do>``) and exit code 2,
never a traceback from deep inside a library.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger("babydistill")


class UserError(Exception):
    """An error the user can fix (bad input file, bad config key); printed as one line."""


def cli(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a stage's ``main`` so user errors print one line and exit 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> Any:
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log to stderr, and to ``log_file`` too when given (its folder is created)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )


def require_file(path: str | os.PathLike, what: str = "input", hint: str = "") -> Path:
    """Return ``path`` as a Path, or raise a one-line UserError if it is not a file."""
    p = Path(path)
    if not p.is_file():
        msg = f"{p}: {what} not found"
        raise UserError(msg + (f"; {hint}" if hint else ""))
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Works for a file or a directory: whatever the caller creates at the yielded path
    replaces ``path`` in one rename, so a killed job never leaves a half-written output
    that looks complete. On error the temporary is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    p = require_file(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None


def parse_json_arg(text: str, name: str) -> Any:
    """Parse a JSON command-line argument (rules pass config sections this way)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{name}: not valid JSON ({e.msg})") from None


def library_help(doc: str | None, module: str, runs_inside: str) -> None:
    """``python -m babydistill.<module> --help`` for a module with no stage of its own:
    print its docstring and the stage CLIs it runs inside, so no ``--help`` is silent."""
    import argparse

    ap = argparse.ArgumentParser(
        prog=f"python -m babydistill.{module}", description=doc,
        epilog=f"This module has no command of its own; it runs inside {runs_inside}.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args()
    ap.print_help()


if __name__ == "__main__":
    library_help(__doc__, "common", "every python -m babydistill.<stage>")
