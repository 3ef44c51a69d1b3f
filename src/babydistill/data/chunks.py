"""Stage 3: the chunk datasets the training loop reads (plain numpy + torch, no DataLoader).

Owns how a tokenized split (PREFIX.bin / PREFIX.json from babydistill.data.tokenize_split)
becomes batches of fixed-length sequences:

* :class:`TokenArray` opens PREFIX.bin memory-mapped.
* :class:`TrainChunks` cuts the array into contiguous chunks of ``seq_length`` tokens.
  Each epoch has its own permutation and, with ``random_offset``, start offsets in
  ``[0, seq_length)``: ``per_chunk`` draws a new offset for every chunk, as the authors'
  code does (timinar/BabyLlama ``babylm_dataset.py`` @3035185: ``randrange(seq_length)``
  in ``__getitem__``; JLTastet/BabyLlama-2 likewise), so neighbouring chunks may overlap
  or leave a gap; ``per_epoch`` shifts every boundary of an epoch by one offset;
  ``false`` keeps offset 0 (the Baby Llama paper's final models, its footnote). All
  come from ``(seed, epoch)`` only, so a run resumed at batch k of an epoch sees exactly
  the batches it would have seen.
* Curriculum (Baby Llama, Appendix B): with ``curriculum={"buckets": [[source, ...],
  ...], "epochs_per_bucket": E}`` an epoch serves only the chunks of the buckets opened
  so far -- bucket 0 for epochs 0..E-1, buckets 0-1 for the next E, and so on, earlier
  buckets never removed. A chunk's source is the file its (offset-0) first token comes
  from, read from the token counts per file in PREFIX.json (``files``); the number of
  batches then depends on the epoch (``num_batches(batch_size, epoch)``).
* :class:`EvalChunks`: fixed chunks (offset 0), a fixed seeded subset of them.
* ``start_token`` (config ``data.start_token: chunk``): every chunk, train and eval, is
  ``<s>`` followed by ``seq_length - 1`` corpus tokens, and the chunks tile the corpus by
  that stride, so no token is skipped. Position 0 is never a target (the model shifts), so
  ``<s>`` is only ever conditioned on: it gets a trained embedding, which BOS-prefixed
  scoring (the babylm-2023/2024 conventions) then conditions every sentence on. Off
  (``none``) in the papers' configs: their code adds none.
* :func:`load_splits`: both splits of a run, checked against each other and the tokenizer,
  as its TrainChunks and EvalChunks (what the pretrain and distill stages start from).

Both serve ``batches(epoch, batch_size, start_batch=0, rank=0, world_size=1)``: dict
batches ``{"input_ids": LongTensor[B, T], "chunk_index": LongTensor[B]}`` where
``batch_size`` is the GLOBAL batch and each DDP rank gets its contiguous slice of it
(``batch_size / world_size`` rows). Labels are the input ids: the model shifts inside
(as HF causal LMs do). ``chunk_index`` i is the chunk that starts at token
``offsets(epoch)[i] + i * seq_length``: it does not depend on the shuffle, the batch or
the rank, so it names a chunk stably (for caches and per-example logs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from babydistill.common import UserError, read_json
from babydistill.data.tokenize_split import paths_for

Batch = dict[str, torch.Tensor]
OFFSET_MODES = ("per_chunk", "per_epoch", False)


def offset_mode(value, where: str = "random_offset"):
    """``per_chunk`` | ``per_epoch`` | ``False``; ``True`` (older configs) = ``per_epoch``."""
    if value is True:
        return "per_epoch"
    if value is None or value is False:
        return False
    if value in OFFSET_MODES:
        return value
    raise UserError(f"{where}: expected per_chunk, per_epoch or false, got {value!r}")


def source_of_file(name: str) -> str:
    """``aochildes.txt`` (a cleaned file named in PREFIX.json) -> ``aochildes``."""
    return Path(name).name.split(".")[0]


class TokenArray:
    """A tokenized split on disk (PREFIX.bin + PREFIX.json), memory-mapped read-only."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = str(prefix)
        bin_path, json_path = paths_for(prefix)
        self.meta = read_json(json_path)  # one-line UserError when missing / broken
        try:
            self.dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
            n = int(self.meta["n_tokens"])
            self.vocab_size = int(self.meta["vocab_size"])
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{json_path}: bad or missing key ({e}); re-run tokenize_split") from None
        if not bin_path.is_file():
            raise UserError(f"{bin_path}: token file not found; re-run tokenize_split")
        size = bin_path.stat().st_size
        if size != n * self.dtype.itemsize:
            raise UserError(f"{bin_path}: {size} bytes but {json_path.name} says {n} {self.dtype.name} "
                            "tokens; the pair is out of sync, re-run tokenize_split")
        # np.memmap refuses empty files; an empty split is a plain empty array.
        self.tokens = (np.memmap(bin_path, dtype=self.dtype, mode="r", shape=(n,)) if n
                       else np.zeros(0, dtype=self.dtype))
        self.eos_id = self.meta.get("eos_id")

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, idx):
        return self.tokens[idx]

    def __repr__(self) -> str:
        return f"TokenArray({self.prefix!r}, n={len(self)}, dtype={self.dtype.name}, vocab={self.vocab_size})"


def _as_array(tokens) -> tuple[np.ndarray, str]:
    """Accept a TokenArray, a PREFIX path or a 1-D integer array; return (array, name)."""
    if isinstance(tokens, (str, Path)):
        tokens = TokenArray(tokens)
    if isinstance(tokens, TokenArray):
        return tokens.tokens, tokens.prefix + ".bin"
    arr = np.asarray(tokens)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"tokens must be a 1-D integer array, got {arr.dtype} with shape {arr.shape}")
    return arr, "token array"


class _Chunks:
    """Shared batching: a subclass says which chunk starts each epoch has, in which order."""

    def __init__(self, tokens, seq_length: int, start_token: int | None = None):
        self.tokens, self.name = _as_array(tokens)
        if seq_length < 1 + (start_token is not None):
            raise UserError(f"data.seq_length: {seq_length} must be >= {1 + (start_token is not None)}")
        self.seq_length = seq_length
        self.start_token = None if start_token is None else int(start_token)
        # corpus tokens per chunk: the start token takes one of the seq_length positions
        self.stride = seq_length - (self.start_token is not None)
        self._span = np.arange(self.stride)

    def _with_start(self, ids: np.ndarray) -> np.ndarray:
        """Rows of corpus tokens (int64), with the start token in front when there is one."""
        if self.start_token is None:
            return ids
        head = np.full(ids.shape[:-1] + (1,), self.start_token, dtype=np.int64)
        return np.concatenate([head, ids], axis=-1)

    # -- what a subclass defines -------------------------------------------------------
    def offsets(self, epoch: int, indices: np.ndarray) -> np.ndarray | int:
        """The start offset of each chunk in ``indices`` (or one int for all) in ``epoch``."""
        raise NotImplementedError

    def order(self, epoch: int) -> np.ndarray:
        """The chunk indices of ``epoch`` in the order they are served."""
        raise NotImplementedError

    drop_last = False

    # -- shared ------------------------------------------------------------------------
    def chunk(self, index: int, epoch: int = 0) -> np.ndarray:
        """The tokens of chunk ``index`` in ``epoch`` (int64)."""
        offset = np.asarray(self.offsets(epoch, np.array([int(index)]))).reshape(-1)[0]
        start = int(offset) + int(index) * self.stride
        return self._with_start(np.asarray(self.tokens[start:start + self.stride], dtype=np.int64))

    def epoch_size(self, epoch: int) -> int:
        """Chunks served in ``epoch`` (all of them unless a subclass narrows it)."""
        return len(self)

    def num_batches(self, batch_size: int, epoch: int = 0) -> int:
        """Global batches in ``epoch`` (the last, short one dropped when ``drop_last``)."""
        n = self.epoch_size(epoch)
        return n // batch_size if self.drop_last else -(-n // batch_size)

    def batches(self, epoch: int, batch_size: int, start_batch: int = 0, *, rank: int = 0,
                world_size: int = 1) -> Iterator[Batch]:
        """Yield this rank's slice of every global batch of ``epoch`` from ``start_batch`` on.

        Full batches split evenly (``batch_size`` must be a multiple of ``world_size``);
        a short last batch (eval only) is split as evenly as possible, and a rank whose
        share is empty yields nothing for it.
        """
        if batch_size < 1:
            raise UserError(f"batch_size: {batch_size} must be >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad rank {rank} for world_size {world_size}")
        if batch_size % world_size:
            raise UserError(f"batch_size: global batch {batch_size} is not a multiple of "
                            f"the {world_size} GPUs; change batch_size or gpus")
        order = self.order(epoch)
        for b in range(start_batch, self.num_batches(batch_size, epoch)):
            idx = order[b * batch_size:(b + 1) * batch_size]
            idx = np.array_split(idx, world_size)[rank]  # equal parts for a full batch
            if len(idx) == 0:
                continue
            starts = self.offsets(epoch, idx) + idx * self.stride
            # Fancy indexing on the memmap reads just these rows.
            ids = self._with_start(np.asarray(self.tokens[starts[:, None] + self._span],
                                              dtype=np.int64))
            yield {
                "input_ids": torch.from_numpy(ids),
                "chunk_index": torch.from_numpy(idx.astype(np.int64)),
            }


class TrainChunks(_Chunks):
    """Contiguous training chunks, reshuffled (and, with ``random_offset``, re-cut) each epoch.

    ``len()`` is the same every epoch: with random offsets, the last chunk that might not
    fit after the largest offset is left out of every epoch (the reference's
    ``len(data) // seq_length - 1``), so the chunk indices are fixed. With a
    ``curriculum`` an epoch serves only the chunks of its open buckets (see the module
    docstring). Map-style access (``ds[i]`` after ``set_epoch(e)``) is there too.
    """

    drop_last = True  # a short last batch would change the step size (and split unevenly over ranks)

    def __init__(self, tokens, seq_length: int, *, random_offset, seed: int,
                 curriculum: dict | None = None, files: Sequence[dict] | None = None,
                 start_token: int | None = None):
        super().__init__(tokens, seq_length, start_token)
        self.random_offset = offset_mode(random_offset)
        self.seed = int(seed)
        self.epoch = 0
        self._epoch_offsets: tuple[int | None, np.ndarray | None] = (None, None)
        max_offset = self.stride - 1 if self.random_offset else 0
        self.n_chunks = max(0, (len(self.tokens) - max_offset) // self.stride)
        if self.n_chunks == 0:
            raise UserError(f"{self.name}: {len(self.tokens)} tokens give no chunk of "
                            f"data.seq_length={seq_length}; use more data or a shorter seq_length")
        self.curriculum = None
        if files is None:
            meta = getattr(tokens, "meta", None) or (
                TokenArray(tokens).meta if isinstance(tokens, (str, Path)) else None)
            files = (meta or {}).get("files")
        self.files = files  # tokenize_split's per-file counts (None for a bare array)
        self._words_per_token: np.ndarray | None = None  # per chunk, built on first use
        if curriculum:
            self._set_curriculum(curriculum, files)

    # -- curriculum ----------------------------------------------------------------------
    def _file_of_chunk(self, files: Sequence[dict], key: str = "tokens") -> np.ndarray:
        """The index in ``files`` of every chunk's file: the one holding its offset-0 first
        token (``key`` must be in every row)."""
        try:
            counts = np.array([int(f["tokens"]) for f in files], dtype=np.int64)
            [f[key] for f in files]  # noqa: B018 (a missing key is a one-line error here)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{self.name}: token metadata lacks per-file counts ({e}); re-run "
                            "tokenize_split") from None
        if counts.sum() != len(self.tokens):
            raise UserError(f"{self.name}: per-file token counts sum to {counts.sum()}, not "
                            f"{len(self.tokens)}; re-run tokenize_split")
        starts = np.arange(self.n_chunks, dtype=np.int64) * self.stride
        return np.searchsorted(np.cumsum(counts), starts, side="right")

    def chunk_sources(self, files: Sequence[dict]) -> np.ndarray:
        """The source name of every chunk: the file holding its offset-0 first token."""
        names = [source_of_file(f["name"]) for f in files]
        return np.array(names, dtype=object)[self._file_of_chunk(files)]

    def data_words(self) -> int | None:
        """Whitespace words of the split (tokenize_split's per-file ``words``), or None."""
        if not self.files or any("words" not in f for f in self.files):
            return None
        return sum(int(f["words"]) for f in self.files)

    def batch_words(self, epoch: int, batch_size: int) -> np.ndarray | None:
        """Words in each global batch of ``epoch``: per chunk, its tokens x the words per
        token of its file (the per-file counts; whitespace words cannot be placed in token
        space exactly), summed over the batch. None without per-file word counts. Draws
        from the epoch's own generators only, never the global RNG."""
        if self.data_words() is None:
            return None
        if self._words_per_token is None:
            ratio = np.array([int(f["words"]) / max(int(f["tokens"]), 1) for f in self.files])
            self._words_per_token = ratio[self._file_of_chunk(self.files, "words")]
        n = self.num_batches(batch_size, epoch)
        per_chunk = self._words_per_token[self.order(epoch)[:n * batch_size]] * self.stride
        return per_chunk.reshape(n, batch_size).sum(axis=1)

    def _set_curriculum(self, curriculum: dict, files) -> None:
        # Shape and defaults come from the schema (specs.TrainSpec); what only the data can
        # say (which sources the split holds) is checked here.
        buckets = curriculum["buckets"]
        per = curriculum["epochs_per_bucket"]
        if files is None:
            raise UserError(f"{self.name}: a curriculum needs the token metadata (PREFIX.json "
                            "files); pass a TokenArray or a PREFIX")
        sources = self.chunk_sources(files)
        known = set(sources)
        listed = [s for b in buckets for s in b]
        unknown = sorted(set(listed) - known)
        if unknown:
            raise UserError(f"curriculum.buckets: {', '.join(unknown)} not among the sources of "
                            f"{self.name} ({', '.join(sorted(known))})")
        if len(listed) != len(set(listed)):
            raise UserError("curriculum.buckets: a source is listed in more than one bucket")
        bucket_of = {s: i for i, b in enumerate(buckets) for s in b}
        # Sources in no bucket join with the last one (so the full data is reached).
        self.chunk_bucket = np.array([bucket_of.get(s, len(buckets) - 1) for s in sources],
                                     dtype=np.int64)
        self.curriculum = {"buckets": [list(b) for b in buckets], "epochs_per_bucket": per}

    def open_buckets(self, epoch: int) -> int:
        """How many buckets ``epoch`` trains on (all of them without a curriculum)."""
        if not self.curriculum:
            return 1
        n = len(self.curriculum["buckets"])
        return min(n, int(epoch) // self.curriculum["epochs_per_bucket"] + 1)

    def _active(self, epoch: int) -> np.ndarray:
        if not self.curriculum:
            return np.arange(self.n_chunks)
        return np.flatnonzero(self.chunk_bucket < self.open_buckets(epoch))

    def epoch_size(self, epoch: int) -> int:
        return len(self._active(epoch)) if self.curriculum else self.n_chunks

    # -- offsets and order ---------------------------------------------------------------
    def _rng(self, epoch: int, stream: int) -> np.random.Generator:
        # Separate streams so the offset and the permutation do not depend on each other.
        return np.random.default_rng([self.seed, int(epoch), stream])

    def offsets(self, epoch: int, indices: np.ndarray | None = None) -> np.ndarray | int:
        """Per chunk: one draw per chunk index (``per_chunk``); else one int for all."""
        if not self.random_offset:
            return 0
        if self.random_offset == "per_epoch":
            return int(self._rng(epoch, 0).integers(0, self.stride))
        if self._epoch_offsets[0] != epoch:  # drawn once per epoch, not once per batch
            self._epoch_offsets = (epoch, self._rng(epoch, 2).integers(
                0, self.stride, size=self.n_chunks))
        every = self._epoch_offsets[1]
        return every if indices is None else every[np.asarray(indices, dtype=np.int64)]

    def offset(self, epoch: int) -> int:
        """The one offset of ``epoch`` (``per_epoch`` / off); per-chunk offsets have none."""
        if self.random_offset == "per_chunk":
            raise ValueError("per-chunk offsets: use offsets(epoch, indices)")
        return self.offsets(epoch)

    def order(self, epoch: int) -> np.ndarray:
        active = self._active(epoch)
        return active[self._rng(epoch, 1).permutation(len(active))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_chunks

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n_chunks:
            raise IndexError(i)
        ids = torch.from_numpy(self.chunk(i, self.epoch))
        return {"input_ids": ids, "labels": ids, "chunk_index": int(i)}


class EvalChunks(_Chunks):
    """Fixed eval chunks (offset 0): a seeded random subset of ``n_chunks`` of them
    (all when there are fewer), served in index order, the same every epoch."""

    def __init__(self, tokens, seq_length: int, n_chunks: int, seed: int,
                 start_token: int | None = None):
        super().__init__(tokens, seq_length, start_token)
        total = len(self.tokens) // self.stride
        if total == 0:
            raise UserError(f"{self.name}: {len(self.tokens)} tokens give no chunk of "
                            f"data.seq_length={seq_length}; use more data or a shorter seq_length")
        if n_chunks < 1:
            raise UserError(f"data.eval_chunks: {n_chunks} must be >= 1")
        if n_chunks >= total:
            self.indices = np.arange(total)
        else:
            rng = np.random.default_rng([int(seed), 0xE7A1])
            self.indices = np.sort(rng.choice(total, size=n_chunks, replace=False))

    def offsets(self, epoch: int = 0, indices=None) -> int:
        return 0

    def offset(self, epoch: int = 0) -> int:
        return 0

    def order(self, epoch: int = 0) -> np.ndarray:
        return self.indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        index = int(self.indices[i])
        ids = torch.from_numpy(self.chunk(index))
        return {"input_ids": ids, "labels": ids, "chunk_index": index}


def tokenizer_vocab_size(tokenizer_dir: str) -> int:
    """The saved tokenizer's vocabulary size (one-line error when it cannot load)."""
    p = Path(tokenizer_dir)
    if not p.is_dir():
        raise UserError(f"{p}: tokenizer directory not found; run the tokenizer stage first")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer
    try:
        return len(AutoTokenizer.from_pretrained(str(p)))
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: cannot load the tokenizer ({str(e).splitlines()[0]})") from None


START_TOKENS = ("none", "chunk")  # data.start_token


def start_token_id(tokens: "TokenArray", start_token: str) -> int | None:
    """The id ``data.start_token`` puts at the start of every chunk (None for ``none``):
    the split's ``<s>`` (``bos_id`` in PREFIX.json)."""
    if start_token not in START_TOKENS:
        raise UserError(f"data.start_token: {start_token!r} is not one of {', '.join(START_TOKENS)}")
    if start_token == "none":
        return None
    bos = (tokens.meta or {}).get("bos_id")
    if bos is None:
        raise UserError(f"{tokens.prefix}.json: no bos_id for data.start_token: chunk; re-run "
                        "tokenize_split with a tokenizer that has <s>")
    return int(bos)


def load_splits(train_prefix: str, dev_prefix: str, tokenizer_dir: str, spec):
    """The token arrays of both splits, checked against each other and the tokenizer, as the
    training chunks and the fixed eval chunks of a parsed job spec (babydistill.config.specs
    PretrainSpec or DistillSpec). Returns (vocab_size, train_data, eval_data)."""
    train_tokens, dev_tokens = TokenArray(train_prefix), TokenArray(dev_prefix)
    vocab = train_tokens.vocab_size
    if dev_tokens.vocab_size != vocab:
        raise UserError(f"{dev_prefix}: vocab_size {dev_tokens.vocab_size} differs from "
                        f"{train_prefix}'s {vocab}; tokenize both with the same tokenizer")
    tok_vocab = tokenizer_vocab_size(tokenizer_dir)
    if tok_vocab != vocab:
        raise UserError(f"{tokenizer_dir}: {tok_vocab} tokens but {train_prefix} was tokenized "
                        f"with {vocab}; re-run tokenize_split with this tokenizer")
    t = spec.train
    start = start_token_id(train_tokens, spec.start_token)
    train_data = TrainChunks(train_tokens, spec.seq_length, random_offset=t.random_offset,
                             seed=t.seed, curriculum=t.curriculum, start_token=start)
    eval_data = EvalChunks(dev_tokens, spec.seq_length, spec.eval_chunks, seed=t.seed,
                           start_token=start)
    return vocab, train_data, eval_data


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "data.chunks", "python -m babydistill.train.pretrain and python -m babydistill.distill.student")
