"""Layer 0: the small pieces every layer shares: one-line user errors, atomic writes,
logging, progress bars, file digests, and where the package and the checkout are.

Each stage module exposes ``main(argv=None)`` wrapped by :func:`cli`, so a bad input
ends in one line on stderr (``error: <file/key>: <what to do>``) and exit code 2,
never a traceback from deep inside a library.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from tqdm import tqdm

log = logging.getLogger("babydistill")

# The one home of "where things are": the package (its data files: the schema, the default
# config) and, in a source checkout, the repository root (src/babydistill -> the checkout).
PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]


def in_checkout() -> bool:
    """True when babydistill runs from a source checkout (an editable install, the tests),
    False for an installed wheel, where only the package's own data files exist."""
    return (REPO_ROOT / "Snakefile").is_file() and (REPO_ROOT / "src" / "babydistill").is_dir()


class UserError(Exception):
    """An error the user can fix (bad input file, bad config key); printed as one line.
    ``exit_code``: the process's exit status under :func:`cli` (a subclass may say another,
    e.g. a preempted trainer's 143)."""

    exit_code = 2


# Flags in /proc/cpuinfo of CPUs that multiply bf16 natively: x86's AVX512-BF16 and AMX-BF16,
# Arm's BF16 extension ("bf16" in the Features line).
_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
PRECISION_ENV = "BABYDISTILL_CPU_BF16"


def cpu_bf16_native(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 natively (read from ``cpuinfo``; False where it cannot
    be read, e.g. macOS). ``$BABYDISTILL_CPU_BF16`` = 1 or 0 overrides the detection (the tests
    pin 0, so that a run's numbers do not depend on the machine that runs them)."""
    forced = os.environ.get(PRECISION_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise UserError(f"${PRECISION_ENV}={forced!r}: use 1 (bf16 on this CPU), 0 (fp32) or unset it")
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and _BF16_CPU_FLAGS & set(value.split()):
            return True
    return False


def resolve_precision(precision: str, device_type: str) -> str:
    """``training.precision`` on a device: ``auto`` is bf16 autocast on CUDA and on CPUs with
    native bf16 (:func:`cpu_bf16_native`), fp32 elsewhere; fp32 and bf16 are themselves."""
    if precision != "auto":
        return precision
    if device_type == "cuda" or (device_type == "cpu" and cpu_bf16_native()):
        return "bf16"
    return "fp32"


def cli(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a stage's ``main`` so user errors print one line and exit 2 (or the
    error's own ``exit_code``)."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> Any:
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(e.exit_code) from None
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            print(f"error: {disk_full_message(e)}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


def disk_full_message(e: OSError, path: str | os.PathLike | None = None, need: int | None = None) -> str:
    """One line for a full disk (or quota): the path, what is free there, what was needed.
    The outputs are atomic, so whatever was complete before (the last checkpoint) is still
    there."""
    where = Path(path or e.filename or ".")
    probe = where if where.is_dir() else where.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    needed = f", {need / 2**20:,.0f} MiB needed" if need else ""
    return (f"{where}: no space left on the device ({free / 2**20:,.0f} MiB free{needed}); "
            f"free some space (df -h {probe}) and run again: completed outputs are kept")


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


_HOST = socket.gethostname().replace(".", "-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that killed writers of ``path`` left beside it
    (``.<name>.<host>.<pid>.*.tmp`` of this host whose process is gone); a live writer's,
    or another host's (a shared filesystem), are left alone. Returns what was removed."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.{_HOST}.*.tmp"):
        pid = tmp.name[len(f".{path.name}.{_HOST}."):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    if removed:
        log.info("removed %d temporary folder(s) a killed job left beside %s", len(removed), path)
    return removed


def temp_beside(path: str | os.PathLike) -> Path:
    """A new temporary folder beside ``path`` (``.<name>.<host>.<pid>.*.tmp``), after
    removing those killed writers left there (:func:`remove_stale_temps`)."""
    path = Path(path)
    remove_stale_temps(path)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp",
                                 dir=path.parent))


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of an output: ``.<name>.lock`` beside it (outside the output itself, so
    a finished output holds nothing but its own files)."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (an output or checkpoint folder) for the block.

    Two processes must never build or train into the same folder at once (an orphaned job
    still running when a rerun starts, two runs given one --checkpoint-dir). The lock is an
    ``flock`` on :func:`lock_path`: the kernel releases it when the holder exits, however it
    dies, so it is never stale; a second process gets one line naming the holder's PID and
    host. flock works on local filesystems and on NFS (Linux emulates it with fcntl locks).
    The holder deletes the lock file when the block ends (so finished outputs leave nothing
    beside them; a process killed leaves an unlocked one, reused next time); a process that
    locked a file just deleted so sees it is no longer the path's and tries again.
    """
    import fcntl

    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{path}: {holder} is writing this {what} now; wait for it to end "
                            f"(or stop it), then run again") from None
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break  # locked the file that is at the path now
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder deleted it as we locked it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # while still holding it: no one else can hold this file now
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Works for a file or a directory: whatever the caller creates at the yielded path
    replaces ``path`` in one rename, so a killed job never leaves a half-written output
    that looks complete. On error the temporary is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    target = tmp / path.name
    try:
        try:
            yield target
        except OSError as e:  # a write that failed for want of space: name the output
            if e.errno in (errno.ENOSPC, errno.EDQUOT) and not e.filename:
                raise OSError(e.errno, e.strerror, str(path)) from e
            raise
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


def text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines of a UTF-8 text file (jsonl suites and
    task files); a byte that is not UTF-8 is one line naming file:line, not a
    UnicodeDecodeError."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{number}: not UTF-8 (byte {e.start} of the line); "
                                "re-save the file as UTF-8") from None
            if line.strip():
                yield number, line


def parse_json_arg(text: str, name: str) -> Any:
    """Parse a JSON command-line argument (rules pass config sections this way)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{name}: not valid JSON ({e.msg})") from None


# File digests: the one home (provenance records them; run identities are built from them).

def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of one file's content (what ``sha256sum`` prints), read in 16 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def file_digests(path: str | os.PathLike, known: dict | None = None) -> dict[str, dict]:
    """``name -> {"size", "mtime_ns", "sha256"}`` of a file, or of every file under a
    folder (names relative to it, sorted). A digest in ``known`` (an earlier answer the
    caller kept) is reused while its file's size and modification time are unchanged."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    known = known if isinstance(known, dict) else {}
    out = {}
    for f in files:
        name = str(f.relative_to(p)) if p.is_dir() else f.name
        st = f.stat()
        entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        old = known.get(name)
        fresh = (isinstance(old, dict) and old.get("sha256")
                 and all(old.get(k) == v for k, v in entry.items()))
        out[name] = {**entry, "sha256": old["sha256"] if fresh else file_sha256(f)}
    return out


def file_digest(path: str | os.PathLike) -> str:
    """One SHA-256 for a file (its content's) or a folder (over its files' names, sizes
    and content digests, see :func:`file_digests`)."""
    if not Path(path).is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for name, d in file_digests(path).items():
        h.update(f"{name}:{d['size']}:{d['sha256']};".encode())
    return h.hexdigest()


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


# Progress bars: every stage's, the trainer's and the evaluation's.

class _LineWriter:
    """A file for tqdm when stderr is a log file: each redraw becomes one plain line
    instead of a carriage-return overwrite, so a log holds readable lines only."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def quiet_library_bars() -> None:
    """Turn off the progress bars of transformers, datasets and the hub ("Writing model
    shards", "Map", ...): in a log file each is a run of carriage-return redraws."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
    # datasets reads this when it is imported; importing it here only to switch its bars
    # off would cost every stage 0.4 s (only fine-tuning uses datasets).
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def progress_bar(total: int, desc: str | None = None, initial: int = 0, disable: bool = False,
                 unit: str = "step") -> tqdm:
    """A tqdm bar on stderr: live on a terminal; in a log file a plain line at most every
    30 s (and at the start and end). Set postfixes with ``refresh=False`` -- a refreshing
    ``set_postfix`` redraws on every call whatever ``mininterval`` says."""
    tty = sys.stderr.isatty()
    if not tty:
        quiet_library_bars()
    if tty:
        return tqdm(total=total, desc=desc, initial=initial, unit=unit, disable=disable,
                    file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    # miniters=1 turns off tqdm's monitor thread refreshes (it only touches dynamic miniters)
    return tqdm(total=total, desc=desc, initial=initial, unit=unit, disable=disable,
                file=_LineWriter(sys.stderr), ncols=100, ascii=True, mininterval=30, miniters=1)
