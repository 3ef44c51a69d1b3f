"""Checkpoints never lost, never trusted blindly (issue 11, cases 2, 5, 6) and the Checkpointer."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from babydistill.train.checkpoint import (Checkpointer, RNGState, content_digests, load_file,
                                    save_file)
from babydistill.common import UserError
from babydistill.train.trainer import TrainingStopped, run_identity

from test_train import SPEC, data, objective, train, weights

torch.set_num_threads(1)


def killed_run(tmp_path, identity=None):
    """A run killed after step 12 (its last checkpoint is at step 10): ``tmp_path/ck``."""
    tr, ev = data()
    with pytest.raises(TrainingStopped):
        train({**SPEC, "stop_after_steps": 12}, objective(), tr, ev, tmp_path / "run",
              tmp_path / "ck", identity=identity)
    return tmp_path / "ck"


def rerun(tmp_path, identity=None):
    tr, ev = data()
    return train(SPEC, objective(seed=99), tr, ev, tmp_path / "run", tmp_path / "ck",
                 identity=identity)


class WritesMarker:
    """A pickle whose loading would create a file: what a crafted checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"format": "babydistill-checkpoint-v2", "position": WritesMarker(marker)},
               ck / "last.pt")
    with pytest.raises(UserError) as e:
        rerun(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "refused, nothing was run" in msg and str(ck / "last.pt") in msg
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_no_unsafe_load_in_the_package():
    src = Path(__file__).resolve().parents[1] / "src"
    hits = [f"{p}:{i}" for p in src.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if "weights_only=False" in line]
    assert hits == []


def corrupt_largest_tensor(path: Path) -> None:
    """Overwrite 8 bytes in the middle of the largest tensor record (-> ~3.4e38 floats)."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with path.open("r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
        start = info.header_offset + 30 + int(name_len) + int(extra_len)
        f.seek(start + info.file_size // 2 // 4 * 4)
        f.write(b"\xff\xff\x7f\x7f" * 2)


def test_corrupt_checkpoint_is_refused_with_how_to_start_over(tmp_path):
    ck = killed_run(tmp_path)
    corrupt_largest_tensor(ck / "last.pt")
    with pytest.raises(UserError) as e:
        rerun(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "checksum mismatch" in msg and "to start over" in msg
    assert str(ck) in msg


def test_corrupt_best_checkpoint_is_refused(tmp_path):
    ck = killed_run(tmp_path)
    corrupt_largest_tensor(ck / "best.pt")
    with pytest.raises(UserError, match="best.pt: checksum mismatch.*to start over"):
        Checkpointer(ck, {}, spec={}).load_weights()  # what the run's end reads (keep=best)


def input_file(tmp_path, text="tokens v1"):
    f = tmp_path / "inputs" / "train.bin"
    f.parent.mkdir(exist_ok=True)
    f.write_text(text)
    return f


def test_touched_or_copied_input_resumes(tmp_path, caplog):
    """Case 5: a new modification time (touch, copy without timestamps) is the same run."""
    f = input_file(tmp_path)
    ident = run_identity({"train": SPEC}, [f])
    ref = tmp_path / "ref"
    ref.mkdir()
    tr, ev = data()
    train(SPEC, objective(), tr, ev, ref / "run", ref / "ck", identity=ident)
    killed_run(tmp_path, ident)
    os.utime(f, ns=(1, 10**18))  # touch to another time
    text = f.read_text()
    f.unlink()
    f.write_text(text)  # rewritten: a new inode and timestamp, the same content
    caplog.set_level(logging.INFO)
    rerun(tmp_path, run_identity({"train": SPEC}, [f]))
    assert "resumed from" in caplog.text and "starting over" not in caplog.text
    a, b = weights(ref / "run"), weights(tmp_path / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_changed_input_moves_checkpoint_aside_never_deletes(tmp_path, caplog):
    f = input_file(tmp_path)
    ck = killed_run(tmp_path, run_identity({"train": SPEC}, [f]))
    before = {n: (ck / n).read_bytes() for n in ("last.pt", "best.pt", "metrics.csv")}
    f.write_text("tokens v2")  # other data: another run
    caplog.set_level(logging.INFO)
    rerun(tmp_path, run_identity({"train": SPEC}, [f]))
    assert "resumed from" not in caplog.text
    [stale] = [d for d in ck.iterdir() if d.name.startswith("stale-")]
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("starting over" in w and str(stale) in w for w in warning), warning
    assert {n: (stale / n).read_bytes() for n in before} == before  # kept as they were
    assert (ck / "last.pt").is_file()  # and the new run wrote its own


def test_content_digests_are_cached_by_size_and_mtime(tmp_path):
    f = input_file(tmp_path)
    cache = tmp_path / "ck" / "input_digests.json"  # the job's own checkpoint folder
    [(name, size, digest)] = content_digests(f, cache)
    assert (name, size, digest) == ("train.bin", 9, hashlib.sha256(b"tokens v1").hexdigest())
    entry = json.loads(cache.read_text())[str(f)]["train.bin"]
    assert entry["sha256"] == digest
    # While size and mtime match, the cached digest is used (the file is not read again).
    cache.write_text(json.dumps({str(f): {"train.bin": {**entry, "sha256": "cached"}}}))
    assert content_digests(f, cache)[0][2] == "cached"
    os.utime(f, ns=(1, entry["mtime_ns"] + 1))  # a new mtime: recomputed from the content
    assert content_digests(f, cache)[0][2] == digest
    # A directory input: its files by relative name, kept in the same cache file.
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "w.bin").write_bytes(b"abc")
    assert [n for n, _, _ in content_digests(d, cache)] == ["sub/w.bin"]
    assert set(json.loads(cache.read_text())) == {str(f), str(d)}
    # Nothing is written beside or inside the inputs; without a cache nothing at all.
    assert sorted(p.name for p in f.parent.iterdir()) == ["train.bin"]
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == ["sub", "sub/w.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "inputs", "model"]
    content_digests(f)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "inputs", "model"]


def test_stage_run_identity_caches_in_its_checkpoint_dir(tmp_path):
    f = input_file(tmp_path)
    a = run_identity({"train": SPEC}, [f], checkpoint_dir=tmp_path / "ck")
    assert a == run_identity({"train": SPEC}, [f])  # the cache changes no digest
    assert (tmp_path / "ck" / "input_digests.json").is_file()
    assert sorted(p.name for p in f.parent.iterdir()) == ["train.bin"]


def test_one_home_for_file_digests(tmp_path):
    """Provenance and run identities digest files with babydistill.common's functions: a
    file's digest is its content's SHA-256 (what sha256sum prints); a folder's covers its
    files' names and contents."""
    from babydistill import common
    from babydistill.config import provenance

    assert provenance.file_digest is common.file_digest
    f = input_file(tmp_path)
    assert common.file_digest(f) == hashlib.sha256(b"tokens v1").hexdigest()
    d = tmp_path / "tok"
    d.mkdir()
    (d / "a.json").write_text("{}")
    before = common.file_digest(d)
    (d / "a.json").rename(d / "b.json")  # same content, another name
    assert common.file_digest(d) != before
    assert content_digests(d) == [(n, e["size"], e["sha256"])
                                  for n, e in common.file_digests(d).items()]


class Counter:
    def __init__(self):
        self.n = 0

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, s):
        self.n = s["n"]


def test_checkpointer_round_trip_of_parts_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    counter = Counter()
    counter.n = 7
    parts = {"model": model, "optimizer": opt, "counter": counter, "rng": RNGState()}
    Checkpointer(tmp_path, parts, spec={"lr": 0.1}).save()
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
    counter2 = Counter()
    parts2 = {"model": model2, "optimizer": opt2, "counter": counter2, "rng": RNGState()}
    assert Checkpointer(tmp_path, parts2, spec={"lr": 0.1}).restore()
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect
    assert counter2.n == 7 and torch.equal(model2.weight, model.weight)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(UserError, match="different train.lr"):
        Checkpointer(tmp_path, parts2, spec={"lr": 0.2}).restore()


def test_a_part_that_cannot_be_loaded_safely_fails_at_save(tmp_path):
    with pytest.raises(TypeError, match=r"\['bad'\].*numpy"):
        save_file(tmp_path / "x.pt", {"bad": np.float64(1.0)})
    assert not (tmp_path / "x.pt").exists()
    save_file(tmp_path / "y.pt", {"ok": [1, 2.5, None, "s", {"t": torch.ones(2)}], "inf": float("inf")})
    got = load_file(tmp_path / "y.pt")
    assert got["ok"][:4] == [1, 2.5, None, "s"] and got["inf"] == float("inf")


def test_checkpoint_on_a_full_disk_is_one_line_and_the_last_good_one_stays(small_fs):
    """Issue 27 #5: torch.save on a full disk raised an opaque RuntimeError ("unexpected
    pos ...") traceback. Now: one line naming the file, what is free and what was needed;
    the checkpoint written before is untouched."""
    from babydistill.train.checkpoint import load_file, save_file

    path = small_fs / "ck" / "last.pt"
    save_file(path, {"weights": torch.arange(1000.0)})  # fits in 2 MiB
    with pytest.raises(UserError, match=rf"^{path}: no space left on the device \(\d+ MiB free, "
                                        r"4 MiB needed\); free some space .* completed outputs "
                                        r"are kept$"):
        save_file(path, {"weights": torch.zeros(3 << 18)})  # 3 MiB
    assert torch.equal(load_file(path)["weights"], torch.arange(1000.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left
