"""Tests for babydistill.data.chunks: the memory-mapped token array and the chunk datasets.

Most tests use ``tokens = arange(N)``: a token's value is its position, so every row of
a batch says exactly where it was cut from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from babydistill.common import UserError
from babydistill.data.chunks import EvalChunks, TokenArray, TrainChunks
from babydistill.data.tokenize_split import tokenize_files
from babydistill.data.tokenizer import save_tokenizer, train_tokenizer
from test_tokenizer import make_corpus

T = 16


def arange_tokens(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.uint32)


def write_prefix(prefix, arr: np.ndarray, vocab: int, n_tokens: int | None = None):
    arr.astype(arr.dtype.newbyteorder("<")).tofile(f"{prefix}.bin")
    meta = {"dtype": arr.dtype.name, "n_tokens": len(arr) if n_tokens is None else n_tokens,
            "vocab_size": vocab, "eos_id": 2}
    with open(f"{prefix}.json", "w") as f:
        json.dump(meta, f)


def all_rows(ds, epoch, bs, **kw):
    return list(ds.batches(epoch, bs, **kw))


def check_rows_match_positions(batch, offset):
    starts = offset + batch["chunk_index"] * T
    expected = starts[:, None] + torch.arange(T)
    assert torch.equal(batch["input_ids"], expected)


# -- TokenArray ------------------------------------------------------------------------

def test_token_array_from_tokenize_split(tmp_path):
    corpus = make_corpus(tmp_path / "c", n_files=2, lines=80)
    save_tokenizer(train_tokenizer(corpus, 300, 2), tmp_path / "tok")
    meta = tokenize_files(tmp_path / "tok", corpus, tmp_path / "train", progress=False)
    arr = TokenArray(tmp_path / "train")
    assert len(arr) == meta["n_tokens"] and arr.dtype == np.uint16 and arr.vocab_size == 300
    assert isinstance(arr.tokens, np.memmap)
    ds = TrainChunks(tmp_path / "train", T, random_offset=False, seed=0)  # a PREFIX works too
    b = next(ds.batches(0, 4))
    i = int(b["chunk_index"][0])
    assert b["input_ids"][0].tolist() == arr[i * T:(i + 1) * T].tolist()


def test_token_array_uint32(tmp_path):
    arr = np.array([0, 70000, 123456, 5], dtype=np.uint32)
    write_prefix(tmp_path / "big", arr, vocab=200000)
    ta = TokenArray(tmp_path / "big")
    assert ta.dtype == np.uint32 and ta[:].tolist() == arr.tolist()


def test_token_array_out_of_sync_is_user_error(tmp_path):
    write_prefix(tmp_path / "x", arange_tokens(10), vocab=100, n_tokens=12)
    with pytest.raises(UserError, match="out of sync"):
        TokenArray(tmp_path / "x")
    with pytest.raises(UserError, match="missing.json"):
        TokenArray(tmp_path / "missing")


# -- TrainChunks -----------------------------------------------------------------------

def test_fixed_chunks_shape_and_cover_the_array():
    n_chunks = 24
    ds = TrainChunks(arange_tokens(n_chunks * T + 5), T, random_offset=False, seed=1)
    assert len(ds) == n_chunks
    batches = all_rows(ds, 0, 6)
    assert len(batches) == ds.num_batches(6) == 4
    for b in batches:
        assert b["input_ids"].shape == (6, T) and b["input_ids"].dtype == torch.int64
        assert b["chunk_index"].shape == (6,) and b["chunk_index"].dtype == torch.int64
        check_rows_match_positions(b, 0)
    seen = torch.cat([b["chunk_index"] for b in batches]).sort().values
    assert seen.tolist() == list(range(n_chunks))  # each chunk exactly once


def test_short_last_batch_dropped_in_training():
    ds = TrainChunks(arange_tokens(10 * T), T, random_offset=False, seed=1)
    batches = all_rows(ds, 0, 4)
    assert [len(b["chunk_index"]) for b in batches] == [4, 4] == [4] * ds.num_batches(4)


def test_permutation_per_epoch_differs_and_is_deterministic():
    tokens = arange_tokens(64 * T)
    a = TrainChunks(tokens, T, random_offset=False, seed=7)
    b = TrainChunks(tokens, T, random_offset=False, seed=7)
    c = TrainChunks(tokens, T, random_offset=False, seed=8)
    assert np.array_equal(a.order(0), b.order(0)) and np.array_equal(a.order(3), b.order(3))
    assert not np.array_equal(a.order(0), a.order(1))
    assert not np.array_equal(a.order(0), c.order(0))
    assert sorted(a.order(5).tolist()) == list(range(64))
    for x, y in zip(all_rows(a, 2, 8), all_rows(b, 2, 8)):
        assert torch.equal(x["input_ids"], y["input_ids"])


def test_random_offsets_in_range_and_rows_follow_them():
    n = 40 * T + 3
    ds = TrainChunks(arange_tokens(n), T, random_offset=True, seed=3)
    offsets = [ds.offset(e) for e in range(30)]
    assert all(0 <= o < T for o in offsets)
    assert len(set(offsets)) > 3  # fresh each epoch
    assert offsets == [TrainChunks(arange_tokens(n), T, random_offset=True, seed=3).offset(e)
                       for e in range(30)]
    assert len(ds) == (n - (T - 1)) // T  # the same every epoch, whatever the offset
    for e in (0, 1, 2):
        for b in all_rows(ds, e, 5):
            check_rows_match_positions(b, ds.offset(e))
            assert int(b["input_ids"].max()) < n
    fixed = TrainChunks(arange_tokens(n), T, random_offset=False, seed=3)
    assert {fixed.offset(e) for e in range(10)} == {0}


def test_map_style_access_uses_epoch():
    ds = TrainChunks(arange_tokens(20 * T), T, random_offset=True, seed=5)
    e = next(e for e in range(1, 50) if ds.offset(e) != ds.offset(0))
    ds.set_epoch(e)
    item = ds[3]
    assert item["chunk_index"] == 3 and item["labels"] is item["input_ids"]
    assert item["input_ids"].tolist() == list(range(ds.offset(e) + 3 * T, ds.offset(e) + 4 * T))
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("k", [0, 1, 3, 5])
def test_resume_from_batch_k_matches(k):
    tokens = arange_tokens(50 * T + 7)
    full = all_rows(TrainChunks(tokens, T, random_offset=True, seed=11), 4, 8)
    resumed = all_rows(TrainChunks(tokens, T, random_offset=True, seed=11), 4, 8, start_batch=k)
    assert len(resumed) == len(full) - k
    for x, y in zip(full[k:], resumed):
        assert torch.equal(x["input_ids"], y["input_ids"])
        assert torch.equal(x["chunk_index"], y["chunk_index"])


@pytest.mark.parametrize("world_size", [2, 4])
def test_ddp_shards_partition_each_global_batch(world_size):
    tokens = arange_tokens(40 * T)
    ds = TrainChunks(tokens, T, random_offset=True, seed=2)
    global_batches = all_rows(ds, 1, 8)
    shards = [all_rows(ds, 1, 8, rank=r, world_size=world_size) for r in range(world_size)]
    assert all(len(s) == len(global_batches) for s in shards)  # same step count on every rank
    for i, g in enumerate(global_batches):
        parts = [s[i] for s in shards]
        assert all(p["input_ids"].shape == (8 // world_size, T) for p in parts)
        assert torch.equal(torch.cat([p["input_ids"] for p in parts]), g["input_ids"])
        assert torch.equal(torch.cat([p["chunk_index"] for p in parts]), g["chunk_index"])
    # resume + sharding compose
    assert torch.equal(all_rows(ds, 1, 8, start_batch=2, rank=1, world_size=world_size)[0]["input_ids"],
                       shards[1][2]["input_ids"])


def test_bad_batch_settings():
    ds = TrainChunks(arange_tokens(40 * T), T, random_offset=False, seed=2)
    with pytest.raises(UserError, match="multiple"):
        next(ds.batches(0, 6, world_size=4))
    with pytest.raises(UserError, match="seq_length"):
        TrainChunks(arange_tokens(T - 1), T, random_offset=False, seed=0)
    with pytest.raises(UserError, match="seq_length"):  # no room for the largest offset
        TrainChunks(arange_tokens(T + 3), T, random_offset=True, seed=0)


# -- EvalChunks ------------------------------------------------------------------------

def test_eval_subset_fixed_and_seeded():
    tokens = arange_tokens(100 * T + 9)
    a = EvalChunks(tokens, T, n_chunks=30, seed=42)
    b = EvalChunks(tokens, T, n_chunks=30, seed=42)
    c = EvalChunks(tokens, T, n_chunks=30, seed=43)
    assert len(a) == 30 and len(set(a.indices.tolist())) == 30
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)
    assert a.indices.max() < 100
    e0, e5 = all_rows(a, 0, 8), all_rows(a, 5, 8)
    assert [len(x["chunk_index"]) for x in e0] == [8, 8, 8, 6]  # the short last batch is kept
    for x, y in zip(e0, e5):
        assert torch.equal(x["input_ids"], y["input_ids"])  # the same every epoch
        check_rows_match_positions(x, 0)
    assert torch.cat([x["chunk_index"] for x in e0]).tolist() == a.indices.tolist()
    item = a[0]
    assert item["chunk_index"] == a.indices[0] and torch.equal(item["labels"], item["input_ids"])


def test_eval_all_chunks_when_fewer_and_sharded_short_batch():
    ev = EvalChunks(arange_tokens(10 * T), T, n_chunks=8192, seed=0)
    assert ev.indices.tolist() == list(range(10))
    shards = [all_rows(ev, 0, 4, rank=r, world_size=2) for r in range(2)]
    seen = sorted(i for s in shards for b in s for i in b["chunk_index"].tolist())
    assert seen == list(range(10))  # every eval chunk scored exactly once across ranks


# -- per-chunk offsets (the authors' BabylmDataset) -------------------------------------

def test_per_chunk_offsets_differ_between_chunks_and_epochs():
    n = 60 * T + 5
    ds = TrainChunks(arange_tokens(n), T, random_offset="per_chunk", seed=4)
    assert len(ds) == (n - (T - 1)) // T
    off0 = ds.offsets(0)
    assert off0.shape == (len(ds),) and off0.min() >= 0 and off0.max() < T
    assert len(set(off0.tolist())) > T // 2        # a draw per chunk, not one per epoch
    assert not np.array_equal(off0, ds.offsets(1))  # and new draws each epoch
    # Deterministic from (seed, epoch): a fresh object (a resumed run) draws the same.
    again = TrainChunks(arange_tokens(n), T, random_offset="per_chunk", seed=4)
    assert np.array_equal(again.offsets(3), ds.offsets(3))
    for e in (0, 2):
        seen = 0
        for b in all_rows(ds, e, 7):
            idx = b["chunk_index"].numpy()
            starts = ds.offsets(e)[idx] + idx * T
            assert np.array_equal(b["input_ids"].numpy(), starts[:, None] + np.arange(T))
            assert int(b["input_ids"].max()) < n
            seen += len(idx)
        assert seen == (len(ds) // 7) * 7
    ds.set_epoch(2)
    assert ds[5]["input_ids"].tolist() == list(range(ds.offsets(2)[5] + 5 * T,
                                                     ds.offsets(2)[5] + 6 * T))
    with pytest.raises(ValueError, match="per-chunk"):
        ds.offset(0)


def test_offset_modes_and_their_names():
    tokens = arange_tokens(30 * T)
    per_epoch = TrainChunks(tokens, T, random_offset="per_epoch", seed=1)
    assert isinstance(per_epoch.offsets(0), int)
    legacy = TrainChunks(tokens, T, random_offset=True, seed=1)  # true = per_epoch
    assert [legacy.offset(e) for e in range(5)] == [per_epoch.offset(e) for e in range(5)]
    off = TrainChunks(tokens, T, random_offset=False, seed=1)
    assert off.offsets(0) == 0 and len(off) == 30
    with pytest.raises(UserError, match="per_chunk, per_epoch or false"):
        TrainChunks(tokens, T, random_offset="sometimes", seed=1)


# -- curriculum ---------------------------------------------------------------------------

def curriculum_tokens(sizes: dict[str, int]):
    """Files of ``sizes[name]`` tokens each (sorted by name, as tokenize_split writes them);
    token value = position."""
    names = sorted(sizes)
    files = [{"name": f"{n}.txt", "tokens": sizes[n]} for n in names]
    return arange_tokens(sum(sizes.values())), files


def source_ranges(files):
    ends = np.cumsum([f["tokens"] for f in files])
    return {f["name"].split(".")[0]: (e - f["tokens"], e) for f, e in zip(files, ends)}


def test_curriculum_adds_buckets_every_k_epochs_without_removing():
    sizes = {"aochildes": 10 * T, "cbt": 6 * T + 3, "gutenberg": 8 * T, "wikipedia": 12 * T}
    tokens, files = curriculum_tokens(sizes)
    buckets = [["aochildes"], ["cbt", "gutenberg"], ["wikipedia"]]
    ds = TrainChunks(tokens, T, random_offset=False, seed=0, files=files,
                     curriculum={"buckets": buckets, "epochs_per_bucket": 3})
    ranges = source_ranges(files)
    sources = ds.chunk_sources(files)

    def served(epoch):
        out = []
        for b in all_rows(ds, epoch, 2):
            out += b["chunk_index"].tolist()
            for row in b["input_ids"]:  # the first token says which file a chunk came from
                src = next(s for s, (lo, hi) in ranges.items() if lo <= int(row[0]) < hi)
                assert src == sources[int(row[0]) // T]
        return out

    expected_open = [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    assert [ds.open_buckets(e) for e in range(10)] == expected_open
    allowed = [set(), {"aochildes"}, {"aochildes", "cbt", "gutenberg"},
               {"aochildes", "cbt", "gutenberg", "wikipedia"}]
    prev = set()
    for e in range(10):
        idx = served(e)
        got = {sources[i] for i in idx}
        assert got == allowed[expected_open[e]]
        n_active = sum(sources[i] in allowed[expected_open[e]] for i in range(len(ds)))
        assert ds.num_batches(2, e) == n_active // 2 == len(idx) // 2
        assert prev <= got  # earlier buckets stay
        prev = got
    assert ds.num_batches(2, 0) < ds.num_batches(2, 3) < ds.num_batches(2, 6)
    # Chunk i straddling two files belongs to the file of its first token.
    edge = ranges["cbt"][1] // T
    assert sources[edge] == "cbt" and sources[edge + 1] == "gutenberg"


def test_curriculum_with_per_chunk_offsets_and_tokenized_prefix(tmp_path):
    corpus = make_corpus(tmp_path / "c", n_files=3, lines=120)
    save_tokenizer(train_tokenizer(corpus, 300, 2), tmp_path / "tok")
    meta = tokenize_files(tmp_path / "tok", corpus, tmp_path / "train", progress=False)
    names = [f["name"].split(".")[0] for f in meta["files"]]
    ds = TrainChunks(tmp_path / "train", T, random_offset="per_chunk", seed=3,
                     curriculum={"buckets": [[names[1]], [names[0], names[2]]],
                                 "epochs_per_bucket": 1})
    src = ds.chunk_sources(meta["files"])
    first = {src[i] for b in all_rows(ds, 0, 4) for i in b["chunk_index"].tolist()}
    assert first == {names[1]}
    later = {src[i] for b in all_rows(ds, 1, 4) for i in b["chunk_index"].tolist()}
    assert later == set(names)


def test_curriculum_bad_buckets_are_user_errors():
    """The data's own checks (sources of this split); a bucket's shape is the schema's."""
    from babydistill.config.specs import TrainSpec

    tokens, files = curriculum_tokens({"aochildes": 5 * T, "cbt": 5 * T})
    for bad, msg in (({"buckets": [["qed"]]}, "qed not among"),
                     ({"buckets": [["cbt"], ["cbt"]]}, "more than one bucket")):
        with pytest.raises(UserError, match=msg):
            TrainChunks(tokens, T, random_offset=False, seed=0, files=files,
                        curriculum={"epochs_per_bucket": 3, **bad})
    for bad, msg in (({"buckets": [[]]}, "curriculum.buckets"),
                     ({"buckets": [["cbt"]], "epochs_per_bucket": 0}, "epochs_per_bucket")):
        with pytest.raises(UserError, match=msg) as e:
            TrainSpec.from_json({"curriculum": bad})
        assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="token metadata"):
        TrainChunks(tokens, T, random_offset=False, seed=0,
                    curriculum={"buckets": [["cbt"]], "epochs_per_bucket": 3})


# -- data.start_token ------------------------------------------------------------------

BOS_ID = 10**6  # not a position of arange_tokens: every <s> is visible as such


@pytest.mark.parametrize("random_offset", [False, "per_chunk", "per_epoch"])
def test_start_token_leads_every_chunk_and_the_rest_tiles_the_corpus(random_offset):
    n = 30 * (T - 1) + 4
    ds = TrainChunks(arange_tokens(n), T, random_offset=random_offset, seed=2, start_token=BOS_ID)
    assert ds.stride == T - 1 and len(ds) == (n - (T - 2 if random_offset else 0)) // (T - 1)
    for e in (0, 1):
        rows = {}
        for b in all_rows(ds, e, 4):
            assert b["input_ids"].shape == (4, T)
            assert (b["input_ids"][:, 0] == BOS_ID).all()
            body = b["input_ids"][:, 1:]
            assert torch.equal(body, body[:, :1] + torch.arange(T - 1))  # contiguous text
            for i, row in zip(b["chunk_index"].tolist(), body):
                rows[i] = row
                assert torch.equal(torch.from_numpy(ds.chunk(i, e)), torch.cat(
                    [torch.tensor([BOS_ID]), row]))
        if not random_offset:  # chunk i holds tokens i*(T-1) ..: no corpus token skipped
            assert all(torch.equal(r, torch.arange(i * (T - 1), (i + 1) * (T - 1)))
                       for i, r in rows.items())
    ev = EvalChunks(arange_tokens(n), T, 5, seed=0, start_token=BOS_ID)
    row = ev[0]["input_ids"]
    assert row[0] == BOS_ID and row[1] == int(ev.indices[0]) * (T - 1) and len(row) == T


def test_start_token_none_leaves_chunks_as_they_were():
    a = TrainChunks(arange_tokens(20 * T), T, random_offset="per_chunk", seed=4)
    b = TrainChunks(arange_tokens(20 * T), T, random_offset="per_chunk", seed=4, start_token=None)
    for x, y in zip(all_rows(a, 1, 4), all_rows(b, 1, 4)):
        assert torch.equal(x["input_ids"], y["input_ids"])


def test_start_token_id_is_the_splits_bos(tmp_path):
    from babydistill.data.chunks import start_token_id

    write_prefix(tmp_path / "x", arange_tokens(50), vocab=100)
    ta = TokenArray(tmp_path / "x")
    assert start_token_id(ta, "none") is None
    with pytest.raises(UserError, match="x.json: no bos_id for data.start_token: chunk"):
        start_token_id(ta, "chunk")
    ta.meta["bos_id"] = 1
    assert start_token_id(ta, "chunk") == 1
    with pytest.raises(UserError, match="data.start_token: 'line' is not one of none, chunk"):
        start_token_id(ta, "line")
