"""teacher_cache.py: the stored top-k targets reproduce live distillation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from babydistill.config.specs import KDSpec
from babydistill.common import UserError
from babydistill.distill.student import CachedKDObjective, KDObjective
from babydistill.distill.losses import ce_loss, next_token_labels
from babydistill.models.build import build_model
from babydistill.distill.teacher_cache import TopKCache, build_cache, main as cache_main

torch.set_num_threads(1)
V, T = 48, 16
TEACHER = {"arch": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
           "intermediate_size": 64, "max_position_embeddings": 32}
STUDENT = {"arch": "llama", "hidden_size": 16, "num_layers": 1, "num_heads": 2,
           "intermediate_size": 32, "max_position_embeddings": 32}
GPT2 = {"arch": "gpt2", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
        "max_position_embeddings": 32}


def markov_tokens(n: int, seed: int) -> np.ndarray:
    """A sparse Markov chain over ids 3..V-1 (0-2 are pad/bos/eos): each token has a few
    likely successors, so the teachers' distributions are peaked but not one-hot."""
    m = V - 3
    trans = np.random.default_rng(0).dirichlet(np.full(m, 0.1), size=m)
    cum = trans.cumsum(1)
    u = np.random.default_rng(seed).random(n)
    out = np.empty(n, dtype=np.int64)
    out[0] = 0
    for i in range(1, n):
        out[i] = min(int(np.searchsorted(cum[out[i - 1]], u[i])), m - 1)
    return out + 3


def fit(objective, chunks, steps: int, lr: float = 1e-2, batch: int = 16, seed: int = 0):
    """A minimal training loop over fixed chunks (chunk_index = row)."""
    params = [p for m in objective.modules().values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(chunks), (batch,), generator=g)
        loss, _ = objective.loss({"input_ids": torch.from_numpy(chunks[idx.numpy()]), "chunk_index": idx})
        opt.zero_grad()
        loss.backward()
        opt.step()


def eval_ce(model, chunks) -> float:
    ids = torch.from_numpy(chunks)
    with torch.no_grad():
        return ce_loss(model(input_ids=ids).logits, next_token_labels(ids)).item()


class CEOnly:
    def __init__(self, model):
        self.model = model

    def modules(self):
        return {"m": self.model}

    def loss(self, batch):
        ids = batch["input_ids"]
        return ce_loss(self.model(input_ids=ids).logits, next_token_labels(ids)), {}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two small trained teachers (LLaMA + GPT-2) saved to disk, train/dev chunks."""
    d = tmp_path_factory.mktemp("tc")
    train = markov_tokens(256 * T, 1).reshape(-1, T)
    dev = markov_tokens(16 * T, 2).reshape(-1, T)
    dirs = []
    for i, preset in enumerate([TEACHER, GPT2]):
        torch.manual_seed(i)
        m = build_model(preset, V)
        fit(CEOnly(m), train, steps=200, lr=1e-2, seed=i)
        m.save_pretrained(d / f"teacher{i}")
        dirs.append(str(d / f"teacher{i}"))
    from babydistill.models.build import load_teachers

    return {"dir": d, "train": train, "dev": dev, "teacher_dirs": dirs, "teachers": load_teachers(dirs)}


def test_full_vocab_cache_equals_live_loss(setup, tmp_path):
    cache_dir = tmp_path / "cache"
    build_cache(setup["teachers"], setup["train"], cache_dir, k=V, temperatures=[2.0], progress=False)
    cache = TopKCache(cache_dir)
    torch.manual_seed(5)
    student = build_model(STUDENT, V)
    batch = {"input_ids": torch.from_numpy(setup["train"][[3, 0, 7]]), "chunk_index": torch.tensor([3, 0, 7])}
    for direction in ("forward", "reverse"):
        for reduction in ("batchmean", "token"):
            kw = dict(kd=KDSpec(alpha=0.5, temperature=2.0, kl_direction=direction, kl_reduction=reduction))
            live, _ = KDObjective(student, setup["teachers"], **kw).loss(batch)
            cached, _ = CachedKDObjective(student, cache, **kw).loss(batch)
            # Only the fp16 storage of the teacher log-probs separates the two.
            assert cached.item() == pytest.approx(live.item(), rel=2e-3), (direction, reduction)


def test_topk_distillation_matches_full_vocab(setup, tmp_path):
    full_dir, topk_dir = tmp_path / "full", tmp_path / "top12"
    build_cache(setup["teachers"], setup["train"], full_dir, k=V, temperatures=[1.0], progress=False)
    build_cache(setup["teachers"], setup["train"], topk_dir, k=12, temperatures=[1.0], progress=False)
    results = {}
    for name, d in (("full", full_dir), ("top12", topk_dir)):
        torch.manual_seed(11)
        student = build_model(STUDENT, V)
        obj = CachedKDObjective(student, TopKCache(d), KDSpec(alpha=0.5, temperature=1.0,
                                                               kl_direction="forward", kl_reduction="token"))
        fit(obj, setup["train"], steps=200, seed=3)
        results[name] = eval_ce(student, setup["dev"])
    print(f"\neval CE after distillation: full vocab {results['full']:.4f}, top-12 of {V} {results['top12']:.4f}")
    assert abs(results["top12"] - results["full"]) / results["full"] < 0.01
    # and it learned something: far below the uniform log(V)
    assert results["top12"] < 0.8 * np.log(V)


def test_cache_files_and_refusals(setup, tmp_path):
    header = build_cache(setup["teachers"], setup["train"], tmp_path / "c", k=5, temperatures=[1, 2],
                         progress=False)
    on_disk = json.loads((tmp_path / "c" / "header.json").read_text())
    assert on_disk["k"] == 5 and on_disk["n_chunks"] == len(setup["train"]) == header["n_chunks"]
    cache = TopKCache(tmp_path / "c")
    vals, idx, rest = cache.get(torch.tensor([1, 2]), 2.0)
    assert vals.dtype == torch.float16 and vals.shape == (2, T, 5) and rest.shape == (2, T)
    # sorted, valid log-probs; kept + remainder mass at T=1 sums to 1
    assert torch.all(vals[..., :-1] >= vals[..., 1:]) and torch.all(vals <= 0)
    _, _, rest1 = cache.get(torch.tensor([1, 2]), 1.0)
    total = vals.float().exp().sum(-1) + rest1.exp()
    assert torch.allclose(total, torch.ones_like(total), atol=5e-3)
    with pytest.raises(UserError, match="random_offset"):
        cache.check(temperature=1.0, seq_length=T, vocab_size=V, random_offset=True)
    with pytest.raises(UserError, match="temperature 3"):
        cache.check(temperature=3.0, seq_length=T, vocab_size=V, random_offset=False)
    with pytest.raises(UserError, match="seq_length"):
        cache.check(temperature=1.0, seq_length=T * 2, vocab_size=V, random_offset=False)


def test_cli_on_tokenized_split(setup, tmp_path, capsys):
    tokens = setup["train"].reshape(-1).astype("<u2")
    prefix = tmp_path / "train"
    tokens.tofile(str(prefix) + ".bin")
    (tmp_path / "train.json").write_text(json.dumps(
        {"dtype": "uint16", "n_tokens": int(tokens.size), "vocab_size": V, "eos_id": 2}))
    out = tmp_path / "cache"
    cache_main(["--teacher", setup["teacher_dirs"][0], "--teacher", setup["teacher_dirs"][1],
                "--train", str(prefix), "--seq-length", str(T), "--k", "4", "--out", str(out),
                "--batch-size", "8"])
    cache = TopKCache(out)
    assert cache.n_chunks == len(setup["train"]) and cache.k == 4
    # the stored top-1 is the ensemble's argmax on that chunk
    from babydistill.distill.teacher_cache import teacher_logits

    ids = torch.from_numpy(setup["train"][[5]])
    best = teacher_logits(setup["teachers"], ids).argmax(-1)
    assert torch.equal(cache.get(torch.tensor([5]), 1.0)[1][..., 0], best)
    with pytest.raises(UserError, match="cached with data.start_token none, the run uses chunk"):
        cache.check(temperature=1.0, seq_length=T, vocab_size=V, random_offset=False,
                    start_token="chunk")
    # with <s> in front of every chunk the cache holds the teachers' targets on those chunks
    meta = json.loads((tmp_path / "train.json").read_text())
    (tmp_path / "train.json").write_text(json.dumps({**meta, "bos_id": 1}))
    cache_main(["--teacher", setup["teacher_dirs"][0], "--train", str(prefix), "--seq-length",
                str(T), "--start-token", "chunk", "--k", "4", "--out", str(tmp_path / "bos")])
    bos = TopKCache(tmp_path / "bos")
    bos.check(temperature=1.0, seq_length=T, vocab_size=V, random_offset=False, start_token="chunk")
    row = torch.cat([torch.tensor([[1]]), torch.from_numpy(tokens[: T - 1].astype("int64"))[None]], 1)
    best = teacher_logits(setup["teachers"][:1], row).argmax(-1)
    assert torch.equal(bos.get(torch.tensor([0]), 1.0)[1][..., 0], best)
    with pytest.raises(SystemExit) as e:
        cache_main(["--teacher", str(tmp_path / "nope"), "--train", str(prefix), "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    assert "not a saved model directory" in capsys.readouterr().err


def test_killed_build_resumes_to_the_same_bytes(setup, tmp_path, caplog):
    """Issue 11 case 7: a build killed part way, run again, skips the finished chunks,
    leaves no temporary files and equals an uninterrupted build byte for byte."""
    from babydistill.distill.teacher_cache import CacheBuildStopped

    kw = dict(k=6, temperatures=[1.0, 2.0], batch_size=16, progress=False)
    build_cache(setup["teachers"], setup["train"], tmp_path / "ref", **kw)
    out = tmp_path / "cache"
    (tmp_path / ".cache.x1y2.tmp").mkdir()  # an old-style temporary left by a killed build
    with pytest.raises(CacheBuildStopped):
        build_cache(setup["teachers"], setup["train"], out, stop_after_chunks=48, **kw)
    partial = tmp_path / ".cache.partial"
    assert not out.exists() and json.loads((partial / "progress.json").read_text())["done"] == [[0, 48]]
    with (partial / "values.f16").open("r+b") as f:  # rows past the record: half-written
        f.seek(60 * T * 6 * 2)
        f.write(b"\x7f" * 4096)
    rows = []
    hook = setup["teachers"][0].register_forward_hook(lambda m, a, kw_, o: rows.append(len(kw_["input_ids"])),
                                                      with_kwargs=True)
    try:
        with caplog.at_level("INFO"):
            build_cache(setup["teachers"], setup["train"], out, **kw)
    finally:
        hook.remove()
    assert sum(rows) == len(setup["train"]) - 48  # only the chunks not done before
    assert "48 of 256 chunks already cached" in caplog.text
    ref_files = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert sorted(p.name for p in out.iterdir()) == ref_files
    for name in ref_files:
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ref"]  # no temporaries, no locks


def test_partial_build_of_other_settings_is_discarded(setup, tmp_path):
    from babydistill.distill.teacher_cache import CacheBuildStopped

    with pytest.raises(CacheBuildStopped):
        build_cache(setup["teachers"], setup["train"], tmp_path / "c", k=4, batch_size=16,
                    progress=False, stop_after_chunks=16)
    build_cache(setup["teachers"], setup["train"], tmp_path / "c", k=6, batch_size=16,
                progress=False)  # another k: the partial rows are not reused
    build_cache(setup["teachers"], setup["train"], tmp_path / "ref", k=6, batch_size=16,
                progress=False)
    for name in ("values.f16", "indices.i16"):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()


def _tokenized(setup, tmp_path) -> Path:
    tokens = setup["train"].reshape(-1).astype("<u2")
    prefix = tmp_path / "train"
    tokens.tofile(str(prefix) + ".bin")
    (tmp_path / "train.json").write_text(json.dumps(
        {"dtype": "uint16", "n_tokens": int(tokens.size), "vocab_size": V, "eos_id": 2}))
    return prefix


# The teacher_cache CLI whose first teacher waits (a forward hook) until the file $GO
# exists, so the build is still running when a second one starts: an orphaned job and its
# rerun.
SLOW_BUILD = """
import os, sys, time
import babydistill.distill.teacher_cache as tc
load = tc.load_teachers
def wait(*_):
    deadline = time.time() + 120
    while not os.path.exists(os.environ["GO"]) and time.time() < deadline:
        time.sleep(0.05)
def slow(*a, **kw):
    teachers = load(*a, **kw)
    teachers[0].register_forward_hook(wait)
    return teachers
tc.load_teachers = slow
tc.main(sys.argv[1:])
"""


@pytest.mark.slow
def test_orphaned_build_and_a_rerun_keep_the_cache_whole(setup, tmp_path):
    """Issue 27 #1 with real processes: a build still running (its Snakemake was killed)
    and a rerun of the same output. Before: both grew in one .partial folder, the second
    renamed a header-only folder over the first's 78 MB. Now the rerun stops with one line
    naming the builder, and the first build ends complete, equal to an undisturbed one."""
    prefix = _tokenized(setup, tmp_path)
    argv = ["--teacher", setup["teacher_dirs"][0], "--teacher", setup["teacher_dirs"][1],
            "--train", str(prefix), "--seq-length", str(T), "--k", "4", "--batch-size", "8"]
    cache_main([*argv, "--out", str(tmp_path / "ref")])
    out = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GO": str(tmp_path / "go")}
    first = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, *argv, "--out", str(out)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".cache.lock"
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and not (
            lock.is_file() and lock.read_text().startswith("PID")):
        time.sleep(0.05)
    try:
        second = subprocess.run([sys.executable, "-m", "babydistill.distill.teacher_cache",
                                 *argv, "--out", str(out)], env=env, capture_output=True,
                                text=True, timeout=120)
        assert first.poll() is None, "the first build ended before the rerun started"
    finally:
        (tmp_path / "go").touch()
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-3000:]
    assert lines[-1] == (f"error: {out}: PID {first.pid} on {socket.gethostname()} is writing "
                         "this teacher cache now; wait for it to end (or stop it), then run "
                         "again")
    names = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert sorted(p.name for p in out.iterdir()) == names and "manifest.json" in names
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert TopKCache(out).n_chunks == len(setup["train"])


def test_incomplete_cache_is_refused_saying_what_to_delete(setup, tmp_path):
    """Issue 27 #1: the reader (distill) met a header-only folder with a FileNotFoundError
    traceback. The manifest, written last, is checked on opening."""
    out = tmp_path / "c"
    build_cache(setup["teachers"], setup["train"], out, k=4, temperatures=[1.0], progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == {p.name: p.stat().st_size for p in out.iterdir()
                                 if p.name != "manifest.json"}
    assert manifest["files"]["values.f16"] == len(setup["train"]) * T * 4 * 2
    delete = rf"delete {out} and build it again"
    with open(out / "values.f16", "r+b") as f:  # cut short
        f.truncate(100)
    with pytest.raises(UserError, match=rf"values\.f16: incomplete teacher cache \(100 bytes.*{delete}"):
        TopKCache(out)
    (out / "values.f16").unlink()
    with pytest.raises(UserError, match=rf"values\.f16: incomplete teacher cache \(missing.*{delete}"):
        TopKCache(out)
    header_only = tmp_path / "h"  # what the orphan and its rerun left
    header_only.mkdir()
    (header_only / "header.json").write_text((out / "header.json").read_text())
    with pytest.raises(UserError, match=r"h/values\.f16: incomplete teacher cache \(missing"):
        TopKCache(header_only)
    (header_only / "header.json").unlink()
    with pytest.raises(UserError, match=r"h: incomplete teacher cache \(no manifest\.json, no "
                                        r"readable header\.json"):
        TopKCache(header_only)
    # a whole cache built before manifests is still read (checked by its header's sizes)
    build_cache(setup["teachers"], setup["train"], tmp_path / "old", k=4, temperatures=[1.0],
                progress=False)
    (tmp_path / "old" / "manifest.json").unlink()
    assert TopKCache(tmp_path / "old").n_chunks == len(setup["train"])
    with open(tmp_path / "old" / "rest_T1.f32", "r+b") as f:
        f.truncate(8)
    with pytest.raises(UserError, match=r"rest_T1\.f32: incomplete teacher cache \(8 bytes"):
        TopKCache(tmp_path / "old")


def test_cache_on_a_full_disk_is_one_line_before_any_write(setup, small_fs):
    """Issue 27 #5: the memory map written past the free space died by SIGBUS. The space is
    reserved first (fallocate); not enough is one line naming the output and the need."""
    train = np.tile(setup["train"], (4, 1))  # 1024 chunks x 16 x k=48: ~3 MB of values
    out = small_fs / "cache"
    with pytest.raises(UserError, match=rf"{out}: no space left on the device \(.* MiB free, "
                                        r"\d+ MiB needed\)"):
        build_cache(setup["teachers"], train, out, k=V, temperatures=[1.0], progress=False)
    assert not out.exists() and not (small_fs / ".cache.partial").exists()  # space given back
    build_cache(setup["teachers"], setup["train"][:32], out, k=4, temperatures=[1.0],
                progress=False)  # a cache that fits is built
    assert TopKCache(out).n_chunks == 32


def _reference_fp32(teachers, rows: np.ndarray, k: int, temperatures) -> dict[str, bytes]:
    """The data files of an fp32 cache as the code before ``precision`` computed them: each
    teacher's float32 logits summed in order and divided once, log-softmax, top-k, fp16 values,
    and per temperature the log-mass outside the top k."""
    with torch.inference_mode():
        ids = torch.from_numpy(rows)
        total = teachers[0](input_ids=ids, use_cache=False).logits.float()
        for t in teachers[1:]:
            total += t(input_ids=ids, use_cache=False).logits.float()
        total /= len(teachers)
        logp = torch.log_softmax(total, dim=-1)
        top, idx = logp.topk(k, dim=-1)
        out = {"values.f16": top.to(torch.float16).numpy().tobytes(),
               "indices.i16": idx.numpy().astype(np.int16).tobytes()}
        for temp in temperatures:
            masked = (logp / temp).scatter(-1, idx, float("-inf"))
            out[f"rest_T{temp:g}.f32"] = torch.logsumexp(masked, dim=-1).numpy().tobytes()
    return out


def _topk_overlap(a: TopKCache, b: TopKCache) -> float:
    """The share of a's top-k ids that b keeps too, over every position."""
    ia, ib = (torch.from_numpy(np.array(c.indices, dtype=np.int64)) for c in (a, b))
    return float((ia.unsqueeze(-1) == ib.unsqueeze(-2)).any(-1).float().mean())


def test_bf16_cache_is_named_apart_and_agrees_and_fp32_is_as_before(setup, tmp_path):
    """cache.precision: the fp32 cache (default) holds exactly the bytes of the fp32 path
    (no precision in its header, its folder name as before); the bf16 one says bf16 in its
    header and folder name, neither is read for the other, a partial fp32 build is not
    resumed as bf16, and bf16 keeps nearly the same top-k ids."""
    from babydistill.config.names import cache_key
    from babydistill.distill.teacher_cache import CacheBuildStopped

    teachers, rows, k = setup["teachers"], setup["train"], 8
    fp32 = build_cache(teachers, rows, tmp_path / "fp32", k=k, temperatures=[1.0, 2.0],
                       batch_size=32, progress=False)
    assert "precision" not in fp32 and TopKCache(tmp_path / "fp32").precision == "fp32"
    for name, data in _reference_fp32(teachers, rows, k, [1.0, 2.0]).items():
        assert (tmp_path / "fp32" / name).read_bytes() == data, name
    with pytest.raises(CacheBuildStopped):  # a partial fp32 build in the bf16 cache's place
        build_cache(teachers, rows, tmp_path / "bf16", k=k, temperatures=[1.0, 2.0],
                    batch_size=32, progress=False, stop_after_chunks=64)
    bf16 = build_cache(teachers, rows, tmp_path / "bf16", k=k, temperatures=[1.0, 2.0],
                       batch_size=32, progress=False, precision="bf16")
    fresh = build_cache(teachers, rows, tmp_path / "bf16b", k=k, temperatures=[1.0, 2.0],
                        batch_size=32, progress=False, precision="bf16")
    assert bf16 == fresh and bf16["precision"] == "bf16"
    for name in ("values.f16", "indices.i16", "rest_T2.f32"):  # not resumed from the fp32 part
        assert (tmp_path / "bf16" / name).read_bytes() == (tmp_path / "bf16b" / name).read_bytes()
    assert (tmp_path / "bf16" / "values.f16").read_bytes() != (tmp_path / "fp32" / "values.f16").read_bytes()
    a, b = TopKCache(tmp_path / "fp32"), TopKCache(tmp_path / "bf16")
    run = dict(temperature=2.0, seq_length=T, vocab_size=V, random_offset=False)
    a.check(**run)
    b.check(**run, precision="bf16")
    with pytest.raises(UserError, match="built with the teachers in fp32.*--precision bf16"):
        a.check(**run, precision="bf16")
    with pytest.raises(UserError, match="built with the teachers in bf16.*--precision fp32"):
        b.check(**run)
    assert cache_key(["t0", "t1"], k, 2.0) == "t0+t1.k8.T2"
    assert cache_key(["t0", "t1"], k, 2.0, "bf16") == "t0+t1.k8.T2.bf16"
    overlap = _topk_overlap(a, b)
    top = (b.values.astype(np.float32) - a.values.astype(np.float32))[..., 0]
    print(f"\nbf16 against fp32 cache, top-{k} of {V}: ids kept {overlap:.4f}, "
          f"top-1 log-prob max |diff| {np.abs(top).max():.4f}")
    assert overlap >= 0.99  # measured 0.9984 here (AMD EPYC, avx512_bf16)
