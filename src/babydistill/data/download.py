"""Stage 1a: fetch the BabyLM corpus and the evaluation data into the project layout.

Owns getting data in: one shared fetch/unpack step (:func:`open_inputs`) takes release
zips by URL (http(s):// or file://, streamed to a temporary file with a progress bar) or
local directories, and three commands pick the expected files out of them and copy
them into OUT, which appears in one rename (a failure leaves no OUT at all):

* ``corpus``: ``<train_split>/<source>.train`` and ``<dev_split>/<source>.dev`` for each
  source, looked up in folders of those names anywhere inside the inputs
  (babylm_data.zip keeps them under ``babylm_data/babylm_10M/``). Layout 2023: the ten
  sources of babylm_data.zip (babylm_10M, babylm_dev). Layout 2024 (assumed from the
  2024 OSF release, osf.io/5mk3x): six sources (bnc_spoken, childes, gutenberg,
  open_subtitles, simple_wiki, switchboard) as ``train_10M/<source>.train`` and
  ``dev/<source>.dev``, which ship as separate zips (train_10M.zip, dev.zip): pass
  ``--url`` (or ``--dir``) once per zip.
* ``suite``: a BLiMP-format suite, a folder of ``<paradigm>.jsonl`` (BLiMP's GitHub zip:
  ``blimp-<commit>/data/``; BabyLM 2024 evaluation_data: ``blimp_filtered/``,
  ``supplement_filtered/``, chosen with ``--subdir``).
* ``glue``: glue_filtered-layout fine-tuning data, ``{task}.{train,valid}.jsonl``, and
  optionally (``--msgs-url``/``--msgs-dir``) the MSGS tasks of the BabyLM 2023 release
  (``filter-data/msgs_filtered/<task>.{train,validation}.json``: the five control tasks and
  the six ambiguous ones) renamed ``msgs_<task>.{train,valid}.jsonl``.

CLI::

  python -m babydistill.data.download corpus --layout 2023 (--url URL | --dir DIR) --out DIR
      [--train-split babylm_10M] [--dev-split babylm_dev] [--sources aochildes,cbt,...]
  python -m babydistill.data.download suite (--url URL | --dir DIR) --out DIR [--subdir NAME] [--glob '*.jsonl']
  python -m babydistill.data.download glue (--url URL | --dir DIR) --out DIR [--subdir NAME]

Every command also takes ``--sha256 HEX`` (once per ``--url``, in the same order) and
``--lock FILE``. A download whose SHA-256 differs from the given digest is refused with
one line. A URL given without a digest is checked against the digest recorded for it in
the lock file (JSON ``{url: sha256}``, the workflow keeps it at
``results/<run>/downloads.lock.json``); on its first download the digest seen is
recorded there, so a later download that differs (the file changed upstream, or was
damaged in transit) is refused instead of silently giving other data. A damaged zip (bad
CRC, truncated) is one line too, never a ``BadZipFile`` traceback.
      [--msgs-url URL | --msgs-dir DIR] [--msgs-subdir msgs_filtered]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from tqdm import tqdm

from babydistill.common import UserError, atomic_path, atomic_write_text, cli, setup_logging
from babydistill.data.clean import SOURCES_2023, SOURCES_2024

log = logging.getLogger("babydistill.data.download")

LAYOUTS = {
    "2023": {"sources": SOURCES_2023, "train_split": "babylm_10M", "dev_split": "babylm_dev"},
    "2024": {"sources": SOURCES_2024, "train_split": "train_10M", "dev_split": "dev"},
}
CHUNK = 1 << 20
SHA256_HEX = set("0123456789abcdef")


# ---------------------------------------------------------------------------------------
# Shared fetch/unpack: every input becomes a set of files addressed by relative posix paths.

@dataclass
class Inputs:
    """Files found in the inputs: relative posix path -> (zip archive or None, source)."""

    files: dict[str, tuple[zipfile.ZipFile | None, str]]
    described: str  # for error messages: the URLs / folders that were searched
    origins: dict[int, str] = field(default_factory=dict)  # id(archive) -> its URL / path

    def copy(self, rel: str, dest: Path) -> None:
        archive, src = self.files[rel]
        dest.parent.mkdir(parents=True, exist_ok=True)
        if archive is None:
            shutil.copyfile(src, dest)
            return
        try:
            with archive.open(src) as fin, open(dest, "wb") as fout:
                shutil.copyfileobj(fin, fout, CHUNK)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
            raise UserError(f"{self.origins.get(id(archive), 'archive')}: damaged zip archive "
                            f"({src}: {e}); download it again, or unpack it yourself and give "
                            "the folder as a local dir") from None


def _ignored(rel: str) -> bool:
    # macOS zip litter: __MACOSX/ folders and ._resource forks, .DS_Store
    parts = PurePosixPath(rel).parts
    return "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


def download(url: str, dest: Path) -> str:
    """Stream ``url`` to ``dest`` with a tqdm bar; return its SHA-256 (hex).

    One-line UserError on failure.
    """
    req = urllib.request.Request(url, headers={"User-Agent": "babydistill"})
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(req, timeout=60) as resp, open(dest, "wb") as out:
            total = resp.headers.get("Content-Length")
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      unit_divisor=1024, desc=f"download {Path(urllib.parse.urlparse(url).path).name}",
                      leave=False) as bar:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"{url}: download failed ({reason}); check the URL, or download it "
                        "yourself and give the unpacked folder as a local dir") from None
    return digest.hexdigest()


def check_sha256(value: str, where: str) -> str:
    v = value.strip().lower().removeprefix("sha256:")
    if len(v) != 64 or not set(v) <= SHA256_HEX:
        raise UserError(f"{where}: {value!r} is not a SHA-256 digest (64 hex digits)")
    return v


@contextlib.contextmanager
def download_lock(path: str | os.PathLike | None) -> Iterator[dict[str, str]]:
    """The lock file's ``{url: sha256}``, held exclusively; written back (atomically) on exit.

    Download jobs of one run may run at once; an flock on a sidecar file serialises them.
    """
    if path is None:
        yield {}
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".flock"), "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        recorded: dict[str, str] = {}
        if path.is_file():
            try:
                recorded = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}: not valid JSON ({e.msg}); fix it or delete it to "
                                "record the digests afresh") from None
            if not isinstance(recorded, dict):
                raise UserError(f"{path}: expected a JSON object {{url: sha256}}")
        before = dict(recorded)
        yield recorded
        if recorded != before:
            atomic_write_text(path, json.dumps(recorded, indent=2, sort_keys=True) + "\n")


def verify_download(url: str, got: str, expected: str | None, lock: dict[str, str],
                    lock_path: str | os.PathLike | None) -> None:
    """Refuse a download whose digest differs from config's or from the lock file's."""
    if expected:
        if got != expected:
            raise UserError(f"{url}: SHA-256 {got} does not match the configured sha256 "
                            f"{expected}; the file changed or was damaged: check the URL and "
                            "the digest")
    elif url in lock and lock[url] != got:
        raise UserError(f"{url}: SHA-256 {got} differs from {lock[url]} recorded in "
                        f"{lock_path} at its first download; the file changed upstream or "
                        "was damaged. If the new file is the one you want, set its sha256 in "
                        "the config or delete its entry in the lock file")
    if url not in lock:
        log.info("%s: sha256 %s recorded in %s", url, got, lock_path)
    lock[url] = got


@contextlib.contextmanager
def open_inputs(urls: Sequence[str] = (), dirs: Sequence[str | os.PathLike] = (),
                workdir: str | os.PathLike | None = None, sha256: Sequence[str] = (),
                lock: str | os.PathLike | None = None) -> Iterator[Inputs]:
    """Fetch/unpack every URL (a zip) and index every local dir; temporaries go on exit.

    Zip members are read in place (only the files asked for are ever extracted). A local
    dir may also be a .zip file. When two inputs hold the same path the first wins
    (local folders before URLs). ``sha256``: one expected digest per URL (or none);
    ``lock``: the lock file of first-seen digests (see the module docstring).
    """
    if sha256 and len(sha256) != len(urls):
        raise UserError(f"--sha256: give one digest per --url ({len(urls)} URLs, "
                        f"{len(sha256)} digests)")
    expected = [check_sha256(h, "sha256") for h in sha256] or [None] * len(urls)
    files: dict[str, tuple[zipfile.ZipFile | None, str]] = {}
    origins: dict[int, str] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".download.", dir=workdir)))
        archives: list[tuple[str, Path]] = []
        digests: list[str] = []
        for i, url in enumerate(urls):
            if "://" not in url:  # a bare path is taken as a local file
                url = Path(url).resolve().as_uri()
            log.info("fetching %s", url)
            dest = tmp / f"input{i}.zip"
            digests.append(download(url, dest))
            archives.append((url, dest))
        if urls:
            with download_lock(lock) as recorded:  # held only for the check, not the download
                for (url, _), got, want in zip(archives, digests, expected):
                    verify_download(url, got, want, recorded, lock)
        for d in dirs:
            d = Path(d)
            if d.is_file():
                archives.append((str(d), d))
            elif d.is_dir():
                for root, _, names in os.walk(d):
                    for name in names:
                        full = Path(root) / name
                        rel = full.relative_to(d).as_posix()
                        if not _ignored(rel):
                            files.setdefault(rel, (None, str(full)))
            else:
                raise UserError(f"{d}: local data folder not found; give an existing folder "
                                "(or a URL instead)")
        for origin, path in archives:
            if not zipfile.is_zipfile(path):
                raise UserError(f"{origin}: not a zip archive; give the URL of the release zip, "
                                "or a local folder holding the unpacked files")
            try:
                archive = stack.enter_context(zipfile.ZipFile(path))
            except (zipfile.BadZipFile, OSError) as e:
                raise UserError(f"{origin}: damaged zip archive ({e}); download it again, or "
                                "unpack it yourself and give the folder as a local dir") from None
            origins[id(archive)] = origin
            for member in archive.infolist():
                if not member.is_dir() and not _ignored(member.filename):
                    files.setdefault(member.filename.lstrip("/"), (archive, member.filename))
        yield Inputs(files, ", ".join([*urls, *map(str, dirs)]), origins)


# ---------------------------------------------------------------------------------------
# Selecting the expected files.

def find_split(inputs: Inputs, split: str, names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Locate folder ``split`` (anywhere) holding ``names``: ({name: rel path}, missing).

    When several folders are called ``split``, the one holding most of ``names`` wins,
    then the shallowest.
    """
    candidates: dict[str, dict[str, str]] = {}
    wanted = set(names)
    for rel in inputs.files:
        p = PurePosixPath(rel)
        if p.parent.name == split and p.name in wanted:
            candidates.setdefault(str(p.parent), {})[p.name] = rel
    if not candidates:
        return {}, list(names)
    best = max(candidates, key=lambda d: (len(candidates[d]), -len(PurePosixPath(d).parts)))
    found = candidates[best]
    return found, [n for n in names if n not in found]


def find_folder(inputs: Inputs, patterns: Sequence[str], subdir: str | None, what: str) -> list[str]:
    """The files matching ``patterns`` in the one folder that holds them (or in ``subdir``).

    ``subdir`` names the folder by its name or its path's tail (e.g. blimp_filtered,
    data). Several candidate folders and no subdir -> UserError listing them.
    """
    folders: dict[str, list[str]] = {}
    for rel in inputs.files:
        p = PurePosixPath(rel)
        if any(fnmatch.fnmatch(p.name, pat) for pat in patterns):
            folders.setdefault(str(p.parent), []).append(rel)
    if subdir:
        tail = PurePosixPath(subdir.strip("/")).parts
        folders = {d: f for d, f in folders.items() if PurePosixPath(d).parts[-len(tail):] == tail}
    if not folders:
        where = f" in a folder named {subdir!r}" if subdir else ""
        raise UserError(f"{inputs.described}: no {what} files ({' or '.join(patterns)}){where}; "
                        "check the URL/dir (and --subdir)")
    if len(folders) > 1:
        raise UserError(f"{inputs.described}: {what} files are in several folders "
                        f"({', '.join(sorted(folders))}); pick one with --subdir NAME")
    return sorted(next(iter(folders.values())))


def _workdir(out: str | os.PathLike) -> Path:
    """Downloads go beside OUT (same disk as the result, not a small /tmp)."""
    parent = Path(out).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _write_tree(inputs: Inputs, plan: dict[str, str], out: str | os.PathLike) -> Path:
    """Copy ``plan`` ({path under OUT: input rel path}) into OUT, atomically."""
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for dest, rel in tqdm(sorted(plan.items()), desc=f"copy -> {out.name}", unit="file",
                              leave=False):
            inputs.copy(rel, tmp / dest)
    log.info("wrote %d files to %s", len(plan), out)
    return out


def fetch_corpus(out: str | os.PathLike, *, urls: Sequence[str] = (), dirs: Sequence[str] = (),
                 layout: str = "2023", train_split: str | None = None, dev_split: str | None = None,
                 sources: Sequence[str] | None = None, sha256: Sequence[str] = (),
                 lock: str | os.PathLike | None = None) -> Path:
    """Put ``OUT/<train_split>/<source>.train`` and ``OUT/<dev_split>/<source>.dev`` in place."""
    if layout not in LAYOUTS:
        raise UserError(f"corpus.layout {layout!r}: unknown; use one of {', '.join(LAYOUTS)}")
    spec = LAYOUTS[layout]
    train_split = train_split or spec["train_split"]
    dev_split = dev_split or spec["dev_split"]
    sources = list(sources or spec["sources"])
    unknown = [s for s in sources if s not in spec["sources"]]
    if unknown:
        raise UserError(f"corpus.sources: {', '.join(unknown)} not in the {layout} layout; "
                        f"its sources are {', '.join(spec['sources'])}")
    with open_inputs(urls, dirs, workdir=_workdir(out), sha256=sha256, lock=lock) as inputs:
        plan: dict[str, str] = {}
        missing: list[str] = []
        for split, ext in ((train_split, "train"), (dev_split, "dev")):
            found, miss = find_split(inputs, split, [f"{s}.{ext}" for s in sources])
            plan.update({f"{split}/{name}": rel for name, rel in found.items()})
            missing += [f"{split}/{name}" for name in miss]
        if missing:
            raise UserError(
                f"{inputs.described}: missing {', '.join(missing)}; set corpus.url to the release "
                f"zip, or corpus.dir to a folder holding {train_split}/<source>.train and "
                f"{dev_split}/<source>.dev")
        return _write_tree(inputs, plan, out)


def fetch_suite(out: str | os.PathLike, *, urls: Sequence[str] = (), dirs: Sequence[str] = (),
                subdir: str | None = None, glob: str = "*.jsonl", sha256: Sequence[str] = (),
                lock: str | os.PathLike | None = None) -> Path:
    """Put a folder of BLiMP-format ``<paradigm>.jsonl`` files at OUT (flat)."""
    with open_inputs(urls, dirs, workdir=_workdir(out), sha256=sha256, lock=lock) as inputs:
        rels = find_folder(inputs, [glob], subdir, "evaluation suite")
        return _write_tree(inputs, {PurePosixPath(r).name: r for r in rels}, out)


GLUE_PATTERNS = ("*.train.jsonl", "*.valid.jsonl")


# MSGS (BabyLM 2023, filter_data.zip: filter-data/msgs_filtered/<task>.{train,validation}.json),
# the five control tasks and the six ambiguous ones. Files are renamed into the glue layout.
MSGS_PATTERNS = ("*.train.json", "*.train.jsonl")
MSGS_SPLITS = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}


def msgs_plan(inputs: Inputs, subdir: str | None) -> dict[str, str]:
    """{``msgs_<task>.<split>.jsonl``: input path} for the MSGS folder of ``inputs``."""
    if subdir is None:  # the release's folder name first, then whichever folder holds them
        try:
            return msgs_plan(inputs, "msgs_filtered")
        except UserError:
            pass
    folder = str(PurePosixPath(find_folder(inputs, MSGS_PATTERNS, subdir, "MSGS")[0]).parent)
    plan = {}
    for rel in find_folder(inputs, ["*.json", "*.jsonl"], folder, "MSGS"):
        stem, _, ext = PurePosixPath(rel).name.rpartition(".")
        task, _, split = stem.rpartition(".")
        if split not in MSGS_SPLITS or not task:
            continue
        name = task if task.startswith("msgs_") else f"msgs_{task}"
        plan[f"{name}.{MSGS_SPLITS[split]}.jsonl"] = rel
    return plan


def copy_as_jsonl(inputs: Inputs, rel: str, dest: Path) -> None:
    """Copy one MSGS file as jsonl: one object per line as it is, or a JSON array unrolled
    (the 2023 files are named .json; the fine-tuning stage reads jsonl)."""
    tmp = dest.with_name(dest.name + ".raw")
    inputs.copy(rel, tmp)
    text = tmp.read_text(encoding="utf-8")
    tmp.unlink()
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{rel}: not valid JSON ({e.msg} at line {e.lineno})") from None
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    dest.write_text(text, encoding="utf-8")


def fetch_glue(out: str | os.PathLike, *, urls: Sequence[str] = (), dirs: Sequence[str] = (),
               subdir: str | None = None, sha256: Sequence[str] = (),
               lock: str | os.PathLike | None = None, msgs_urls: Sequence[str] = (),
               msgs_dirs: Sequence[str] = (), msgs_subdir: str | None = None) -> Path:
    """Put the folder of glue_filtered-layout ``{task}.{train,valid}.jsonl`` at OUT (flat).

    The folder is the one holding ``*.train.jsonl``/``*.valid.jsonl``; all its ``*.jsonl``
    come along (the 2024 release also has ``mnli.subs.jsonl``). With an MSGS source
    (``msgs_urls``/``msgs_dirs``, checked against ``lock`` like any URL without a digest) its
    ``<task>.train.json`` / ``<task>.validation.json`` join them as
    ``msgs_<task>.train.jsonl`` / ``msgs_<task>.valid.jsonl``.
    """
    out = Path(out)
    with contextlib.ExitStack() as stack:
        inputs = stack.enter_context(open_inputs(urls, dirs, workdir=_workdir(out), sha256=sha256,
                                                 lock=lock))
        folder = str(PurePosixPath(find_folder(inputs, GLUE_PATTERNS, subdir, "fine-tuning")[0]).parent)
        rels = find_folder(inputs, ["*.jsonl"], folder, "fine-tuning")
        plan = {PurePosixPath(r).name: r for r in rels}
        msgs, plan_msgs = None, {}
        if msgs_urls or msgs_dirs:
            msgs = stack.enter_context(open_inputs(msgs_urls, msgs_dirs, workdir=_workdir(out),
                                                   lock=lock))
            plan_msgs = msgs_plan(msgs, msgs_subdir)
        with atomic_path(out) as tmp:
            tmp.mkdir()
            for dest, rel in sorted(plan.items()):
                inputs.copy(rel, tmp / dest)
            for dest, rel in sorted(plan_msgs.items()):
                copy_as_jsonl(msgs, rel, tmp / dest)
        log.info("wrote %d files (%d MSGS) to %s", len(plan) + len(plan_msgs), len(plan_msgs), out)
        return out


# ---------------------------------------------------------------------------------------

def _add_inputs(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--url", action="append", default=[],
                   help="release zip URL (http(s):// or file://); repeat for several zips")
    g.add_argument("--dir", action="append", default=[],
                   help="local folder (or .zip) holding the files; repeatable")
    p.add_argument("--sha256", action="append", default=[],
                   help="expected SHA-256 of a --url download; once per --url, same order")
    p.add_argument("--lock", help="JSON file of the digests seen at first download "
                   "(checked and updated for URLs given without --sha256)")
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument("--log", help="also log to this file")


@cli
def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m babydistill.data.download",
                                 description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("corpus", help="the BabyLM training corpus")
    _add_inputs(c)
    c.add_argument("--layout", choices=sorted(LAYOUTS), default="2023")
    c.add_argument("--train-split", help="folder of the .train files (default by layout)")
    c.add_argument("--dev-split", help="folder of the .dev files (default by layout)")
    c.add_argument("--sources", help="comma-separated source names (default: all of the layout)")
    s = sub.add_parser("suite", help="a BLiMP-format evaluation suite (<paradigm>.jsonl)")
    _add_inputs(s)
    s.add_argument("--subdir", help="name of the folder holding the files (e.g. blimp_filtered)")
    s.add_argument("--glob", default="*.jsonl")
    g = sub.add_parser("glue", help="glue_filtered fine-tuning data")
    _add_inputs(g)
    g.add_argument("--subdir", help="name of the folder holding the files (e.g. glue_filtered)")
    g.add_argument("--msgs-url", action="append", default=[],
                   help="zip holding the MSGS tasks (BabyLM 2023 filter_data.zip); repeatable")
    g.add_argument("--msgs-dir", action="append", default=[], help="local folder (or .zip) holding them")
    g.add_argument("--msgs-subdir", help="name of their folder (e.g. msgs_filtered)")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    if args.sha256 and not args.url:
        raise UserError("--sha256 applies to --url downloads only")
    verify = {"sha256": args.sha256, "lock": args.lock}
    if args.what == "corpus":
        sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources else None
        return fetch_corpus(args.out, urls=args.url, dirs=args.dir, layout=args.layout,
                            train_split=args.train_split, dev_split=args.dev_split, sources=sources, **verify)
    if args.what == "suite":
        return fetch_suite(args.out, urls=args.url, dirs=args.dir, subdir=args.subdir, glob=args.glob, **verify)
    return fetch_glue(args.out, urls=args.url, dirs=args.dir, subdir=args.subdir, msgs_urls=args.msgs_url,
                      msgs_dirs=args.msgs_dir, msgs_subdir=args.msgs_subdir, **verify)


if __name__ == "__main__":
    main()
