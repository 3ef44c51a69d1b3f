"""babydistill.data.download: zips by file:// and by a local HTTP server, local dirs, the
2023/2024 corpus layouts, BLiMP-format suites, glue data, one-line errors, atomic OUT."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import zipfile
from pathlib import Path

import pytest

from babydistill.data import download
from babydistill.data.clean import SOURCES_2023, SOURCES_2024
from babydistill.common import UserError
from babydistill.data.download import fetch_corpus, fetch_glue, fetch_suite, main

MINI = Path(__file__).parent / "fixtures" / "babylm_mini"


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def release_zip(tmp_path: Path) -> Path:
    """babylm_data.zip look-alike: babylm_data/<split>/... plus macOS litter."""
    files = {f"babylm_data/{p.relative_to(MINI).as_posix()}": p.read_bytes()
             for p in MINI.glob("*/*") if p.suffix in (".train", ".dev")}
    files["__MACOSX/babylm_data/babylm_10M/._cbt.train"] = b"\x00junk"
    files["babylm_data/babylm_test/cbt.test"] = b"test split, not wanted\n"
    return make_zip(tmp_path / "babylm_data.zip", files)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def expected_corpus(sources=SOURCES_2023) -> dict[str, bytes]:
    return {f"{split}/{s}.{ext}": (MINI / split / f"{s}.{ext}").read_bytes()
            for s in sources for split, ext in (("babylm_10M", "train"), ("babylm_dev", "dev"))}


def error_line(capsys) -> str:
    """The one error line on stderr (progress bars and log lines may precede it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0]
    return errors[0]


@pytest.fixture
def http_root(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (a thread); yield (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_corpus_from_file_url(tmp_path):
    out = fetch_corpus(tmp_path / "corpus", urls=[release_zip(tmp_path).as_uri()])
    assert tree(out) == expected_corpus()  # exactly the 20 files, bytes unchanged, no litter
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # temps gone


def test_corpus_over_http_via_cli(tmp_path, http_root):
    www, base = http_root
    release_zip(www)
    out = tmp_path / "data" / "corpus"
    main(["corpus", "--layout", "2023", "--url", f"{base}/babylm_data.zip", "--out", str(out),
          "--train-split", "babylm_10M", "--dev-split", "babylm_dev", "--sources", "cbt,qed"])
    assert tree(out) == expected_corpus(["cbt", "qed"])


def test_http_404_and_not_a_zip_are_user_errors(tmp_path, http_root):
    www, base = http_root
    (www / "page.html").write_text("<html>not a zip</html>")
    with pytest.raises(UserError, match="download failed"):
        fetch_corpus(tmp_path / "c", urls=[f"{base}/missing.zip"])
    with pytest.raises(UserError, match="not a zip archive"):
        fetch_corpus(tmp_path / "c", urls=[f"{base}/page.html"])
    assert not (tmp_path / "c").exists()


def test_corpus_from_local_dir(tmp_path):
    out = fetch_corpus(tmp_path / "corpus", dirs=[str(MINI)], sources=["aochildes", "wikipedia"])
    assert tree(out) == expected_corpus(["aochildes", "wikipedia"])


def test_corpus_2024_layout_from_two_zips(tmp_path):
    # The 2024 release ships train_10M.zip and dev.zip separately.
    train = make_zip(tmp_path / "train_10M.zip",
                     {f"train_10M/{s}.train": f"{s} train\n".encode() for s in SOURCES_2024})
    dev = make_zip(tmp_path / "dev.zip", {f"dev/{s}.dev": f"{s} dev\n".encode() for s in SOURCES_2024})
    out = fetch_corpus(tmp_path / "c24", urls=[train.as_uri(), dev.as_uri()], layout="2024")
    got = tree(out)
    assert set(got) == {f"train_10M/{s}.train" for s in SOURCES_2024} | {f"dev/{s}.dev" for s in SOURCES_2024}
    assert got["train_10M/childes.train"] == b"childes train\n"
    with pytest.raises(UserError, match="aochildes not in the 2024 layout"):
        fetch_corpus(tmp_path / "x", urls=[train.as_uri()], layout="2024", sources=["aochildes"])


def test_missing_files_one_line_error_and_no_out(tmp_path, capsys):
    partial = tmp_path / "partial"
    for rel in ("babylm_10M/cbt.train", "babylm_dev/cbt.dev", "babylm_10M/qed.train"):
        (partial / rel).parent.mkdir(parents=True, exist_ok=True)
        (partial / rel).write_bytes((MINI / rel).read_bytes())
    out = tmp_path / "corpus"
    with pytest.raises(SystemExit) as e:
        main(["corpus", "--dir", str(partial), "--out", str(out), "--sources", "cbt,qed"])
    assert e.value.code == 2
    err = [error_line(capsys)]
    assert "missing babylm_dev/qed.dev;" in err[0] and "cbt" not in err[0].split("missing")[1].split(";")[0]
    assert "corpus.url" in err[0] and "corpus.dir" in err[0] and "babylm_10M/<source>.train" in err[0]
    assert not out.exists()


def test_failure_midway_leaves_old_out_untouched(tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    calls = []

    def flaky_copy(self, rel, dest):
        calls.append(rel)
        if len(calls) == 3:
            raise OSError("disk full")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"x")

    monkeypatch.setattr(download.Inputs, "copy", flaky_copy)
    with pytest.raises(OSError, match="disk full"):
        fetch_corpus(out, urls=[release_zip(tmp_path).as_uri()])
    assert tree(out) == {"old.txt": b"previous run"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["babylm_data.zip", "corpus"]


def test_failure_leaves_no_new_out(tmp_path, monkeypatch):
    def broken(self, rel, dest):
        raise OSError("read error")

    monkeypatch.setattr(download.Inputs, "copy", broken)
    with pytest.raises(OSError):
        fetch_corpus(tmp_path / "corpus", dirs=[str(MINI)])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def blimp_line(i: int) -> bytes:
    return (json.dumps({"sentence_good": f"Cats run {i}.", "sentence_bad": f"Cats runs {i}."}) + "\n").encode()


def test_suite_from_blimp_github_zip(tmp_path):
    z = make_zip(tmp_path / "blimp.zip", {
        "blimp-3e56b06/data/adjunct_island.jsonl": blimp_line(1),
        "blimp-3e56b06/data/passive_1.jsonl": blimp_line(2),
        "blimp-3e56b06/README.md": b"# BLiMP\n",
    })
    out = fetch_suite(tmp_path / "blimp", urls=[z.as_uri()])
    assert tree(out) == {"adjunct_island.jsonl": blimp_line(1), "passive_1.jsonl": blimp_line(2)}


def eval_zip(tmp_path: Path) -> Path:
    return make_zip(tmp_path / "evaluation_data.zip", {
        "evaluation_data/blimp_filtered/passive_1.jsonl": blimp_line(1),
        "evaluation_data/supplement_filtered/hypernym.jsonl": blimp_line(2),
        "evaluation_data/glue_filtered/cola.train.jsonl": b'{"sentence": "a", "label": 1}\n',
        "evaluation_data/glue_filtered/cola.valid.jsonl": b'{"sentence": "b", "label": 0}\n',
        "evaluation_data/glue_filtered/boolq.valid.jsonl": b'{"question": "q"}\n',
        "evaluation_data/glue_filtered/mnli.subs.jsonl": b'{"premise": "p"}\n',
    })


def test_suite_needs_subdir_when_ambiguous(tmp_path, capsys):
    z = eval_zip(tmp_path)
    with pytest.raises(SystemExit):
        main(["suite", "--url", z.as_uri(), "--out", str(tmp_path / "s")])
    err = error_line(capsys)
    assert "--subdir" in err and "supplement_filtered" in err
    out = fetch_suite(tmp_path / "s", urls=[z.as_uri()], subdir="supplement_filtered")
    assert tree(out) == {"hypernym.jsonl": blimp_line(2)}
    with pytest.raises(UserError, match="no evaluation suite files"):
        fetch_suite(tmp_path / "s2", urls=[z.as_uri()], subdir="blimp_supplement")
    assert not (tmp_path / "s2").exists()


def test_glue_from_eval_zip(tmp_path):
    z = eval_zip(tmp_path)
    out = tmp_path / "glue"
    main(["glue", "--url", z.as_uri(), "--out", str(out)])
    assert sorted(tree(out)) == ["boolq.valid.jsonl", "cola.train.jsonl", "cola.valid.jsonl",
                                 "mnli.subs.jsonl"]


def test_real_eval_data_local_dir(shared_subdir, tmp_path):
    src = shared_subdir("babylm_eval_2024")
    out = fetch_suite(tmp_path / "supp", dirs=[str(src)], subdir="supplement_filtered")
    assert tree(out) == tree(src / "supplement_filtered")
    out = fetch_glue(tmp_path / "glue", dirs=[str(src)])
    assert tree(out) == tree(src / "glue_filtered")


# ---------------------------------------------------------------------------------------
# Downloads are verified (issue 11, case 4): a configured sha256, else the digest recorded
# at the first download in a lock file; a damaged zip is one line.

def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_configured_sha256_is_verified(tmp_path, http_root, capsys):
    www, base = http_root
    z = release_zip(www)
    good = sha256_of(z)
    main(["corpus", "--url", f"{base}/{z.name}", "--sha256", good, "--out", str(tmp_path / "ok")])
    assert tree(tmp_path / "ok") == expected_corpus()
    with pytest.raises(SystemExit) as e:
        main(["corpus", "--url", f"{base}/{z.name}", "--sha256", "0" * 64,
              "--out", str(tmp_path / "bad")])
    assert e.value.code == 2
    line = error_line(capsys)
    assert f"{base}/{z.name}" in line and good in line and "0" * 64 in line
    assert not (tmp_path / "bad").exists()


def test_first_download_is_locked_and_a_changed_file_refused(tmp_path, http_root, capsys):
    www, base = http_root
    z = release_zip(www)
    url = f"{base}/{z.name}"
    lock = tmp_path / "results" / "downloads.lock.json"
    main(["corpus", "--url", url, "--lock", str(lock), "--out", str(tmp_path / "a")])
    assert json.loads(lock.read_text()) == {url: sha256_of(z)}
    # the same bytes again: accepted
    main(["corpus", "--url", url, "--lock", str(lock), "--out", str(tmp_path / "b")])
    # the server now sends other bytes under the same URL: refused, lock unchanged
    first = sha256_of(z)
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("babylm_data/extra.txt", b"changed upstream\n")
    with pytest.raises(SystemExit):
        main(["corpus", "--url", url, "--lock", str(lock), "--out", str(tmp_path / "c")])
    line = error_line(capsys)
    assert url in line and first in line and str(lock) in line
    assert not (tmp_path / "c").exists()
    assert json.loads(lock.read_text()) == {url: first}


def test_bad_sha256_values_are_one_line(tmp_path, http_root, capsys):
    www, base = http_root
    z = release_zip(www)
    for extra in (["--sha256", "abc"], ["--sha256", sha256_of(z), "--sha256", sha256_of(z)]):
        with pytest.raises(SystemExit):
            main(["corpus", "--url", f"{base}/{z.name}", *extra, "--out", str(tmp_path / "o")])
        assert "sha256" in error_line(capsys)


def corrupt_member(path: Path, name: str) -> None:
    """Flip a byte inside one stored member's data: the zip still opens, its CRC fails."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    data = bytearray(path.read_bytes())
    # local header: 30 bytes + file name + extra field, then the data
    n, m = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data[info.header_offset + 30 + n + m + 3] ^= 0xFF
    path.write_bytes(bytes(data))


def test_crc_corrupt_zip_is_one_line(tmp_path, capsys):
    files = {f"babylm_data/{p.relative_to(MINI).as_posix()}": p.read_bytes()
             for p in MINI.glob("*/*") if p.suffix in (".train", ".dev")}
    z = tmp_path / "babylm_data.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    corrupt_member(z, "babylm_data/babylm_10M/cbt.train")
    with pytest.raises(SystemExit) as e:
        main(["corpus", "--url", z.as_uri(), "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    line = error_line(capsys)
    assert "damaged zip" in line and z.as_uri() in line and "cbt.train" in line
    assert not (tmp_path / "out").exists()
