"""Stage 2a: train the byte-level BPE tokenizer (the Baby Llama recipe) on the cleaned train split.

Owns the tokenizer recipe and its on-disk form:

* NFKC normaliser, ByteLevel pre-tokenizer with ``add_prefix_space=True``, ByteLevel
  decoder, BPE with ``vocab_size`` 16000 and ``min_frequency`` 2, special tokens
  ``<pad>``, ``<s>``, ``</s>`` as ids 0, 1, 2 (as in the Baby Llama paper).
* One addition: the 256 byte symbols are seeded into the vocabulary
  (``initial_alphabet``), so a character never seen in train (in dev, BLiMP, GLUE)
  still maps to its bytes instead of being silently dropped by a BPE model without an
  unknown token. It costs no vocabulary size: the total stays ``vocab_size``.
* The output folder holds ``tokenizer.json`` plus a ``tokenizer_config.json`` written by
  hand (not by whichever transformers is installed), and ``training.json`` (what it was
  trained on, with which settings). The config names ``PreTrainedTokenizerFast``, a class
  every transformers from 4.x to 5.x knows and which takes ``tokenizer.json`` as it is
  (ByteLevel pre-tokenizer with ``add_prefix_space``, no BOS/EOS added) once the config
  says ``add_prefix_space: true`` too (4.x resets the pre-tokenizer to the config's value), so
  ``AutoTokenizer.from_pretrained(DIR)`` gives the same ids everywhere: transformers 5's
  own ``save_pretrained`` names ``TokenizersBackend``, unknown to 4.51.3 (the BabyLM 2025
  evaluation pipeline's pin), and naming ``GPT2TokenizerFast`` there instead drops the
  prefix space of the first word (``The`` instead of ``ĠThe``).
* ``model_max_length`` is the model's context: :func:`fit_to_model` sets it when the
  files are copied next to a saved model (the tokenizer stage itself knows no model).
* A model folder's ``tokenizer.json`` stores its merges as ``"a b"`` strings
  (:func:`portable_merges`), the form tokenizers < 0.20 reads: tokenizers >= 0.20 writes
  ``["a", "b"]`` pairs, which tokenizers 0.19 (transformers 4.40 .. 4.44) refuses ("data did
  not match any variant of untagged enum ModelWrapper"); every later version reads both with
  the same ids (tests/test_tokenizer_compat.py, transformers 4.40.2 and 4.51.3 against ours).
  A byte-level token never holds a space, so the string form is unambiguous.
* The mask token of masked LMs (``arch: roberta``): ``<mask>``, appended as an added special
  token at id = the tokenizer's size (16000 for 16000 tokens), and only in a masked model's
  own folder (:func:`add_mask_token`, which :func:`copy_for_model` calls when the folder's
  ``config.json`` names a ``...ForMaskedLM``). The tokenizer stage's files, and every id a
  causal model uses, stay exactly as they were: reserving it inside the BPE vocabulary would
  have re-trained the merges (one fewer) and so changed the demo's tokenizer. Like
  roberta-base's ``<mask>`` it strips the space in front of it (``lstrip``).

CLI::

    python -m babydistill.data.tokenizer --vocab-size 16000 --min-frequency 2 --out DIR TRAIN_FILE...

The rule passes the cleaned TRAIN files only (never dev). Input order does not matter:
files are sorted by name first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterable

# Everything here is local; never let a library reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from babydistill.common import (UserError, atomic_path, atomic_write_text, cli, file_sha256,
                                require_file, setup_logging, write_json)

log = logging.getLogger("babydistill.data.tokenizer")

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, BOS, EOS]  # ids 0, 1, 2
MASK = "<mask>"  # masked LMs only: appended at id = vocab size (module docstring)


def mask_added_token() -> AddedToken:
    """``<mask>`` as roberta-base's tokenizer has it: special, lstrip, not normalised."""
    return AddedToken(MASK, lstrip=True, rstrip=False, normalized=False, special=True)
N_BYTES = 256  # byte-level alphabet seeded into the vocabulary


def sorted_inputs(files: Iterable[str | os.PathLike]) -> list[Path]:
    """The input files, checked to exist, sorted by file name (then full path) so that
    every stage sees them in the same order whatever order they were given in."""
    paths = [require_file(f, "training text file") for f in files]
    if not paths:
        raise UserError("no input files given; pass the cleaned train split files")
    return sorted(paths, key=lambda p: (p.name, str(p)))


def train_tokenizer(files: Iterable[str | os.PathLike], vocab_size: int = 16000,
                    min_frequency: int = 2) -> Tokenizer:
    """Train the Baby Llama byte-level BPE on ``files`` and return the raw Tokenizer."""
    if vocab_size < len(SPECIAL_TOKENS) + N_BYTES:
        raise UserError(f"tokenizer.vocab_size: {vocab_size} is too small; it must be at least "
                        f"{len(SPECIAL_TOKENS) + N_BYTES} (3 special tokens + 256 bytes)")
    if min_frequency < 1:
        raise UserError(f"tokenizer.min_frequency: {min_frequency} must be >= 1")
    paths = sorted_inputs(files)

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=sys.stderr.isatty(),  # its bar only prints blank lines into logs
    )
    try:
        tok.train([str(p) for p in paths], trainer)
    except Exception as e:  # the Rust side reports bad UTF-8 etc. as a generic exception
        raise UserError(f"{', '.join(map(str, paths))}: tokenizer training failed ({e}); "
                        "inputs must be UTF-8 text") from None
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, f"special token {s} should have id {i}"
    return tok


def to_transformers(tok: Tokenizer):
    """Wrap a raw Tokenizer as a transformers fast tokenizer with bos/eos/pad set."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                   pad_token=PAD)


TRANSFORMERS_CLASS = "PreTrainedTokenizerFast"  # known to transformers 4.x and 5.x alike


def transformers_config(model_max_length: int | None = None) -> dict:
    """The ``tokenizer_config.json`` every transformers version reads the same way."""
    cfg = {
        "tokenizer_class": TRANSFORMERS_CLASS,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": None,  # byte-level BPE: every character has its bytes
        # transformers 4.x's PreTrainedTokenizerFast rewrites the ByteLevel pre-tokenizer to
        # this value, False when absent: the first word would lose its prefix space.
        "add_prefix_space": True,
        "add_bos_token": False,  # lm-eval and our scorer put BOS in front themselves
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,  # decode gives the text back as it was
    }
    if model_max_length:
        cfg["model_max_length"] = int(model_max_length)
    return cfg


def save_tokenizer(tok: Tokenizer, out_dir: str | os.PathLike, info: dict | None = None) -> Path:
    """Write ``out_dir`` atomically: tokenizer.json, the transformers config, training.json."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        tok.save(str(tmp / "tokenizer.json"))
        write_json(tmp / "tokenizer_config.json", transformers_config())
        write_json(tmp / "special_tokens_map.json", {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD})
        write_json(tmp / "training.json", info or {})
    return out_dir


def model_context(model_dir: str | os.PathLike) -> int | None:
    """The context length a saved model's config.json allows (its positions; a RoBERTa's less
    its padding offset: position ids start at ``pad_token_id + 1``, so
    ``max_position_embeddings - pad_token_id - 1`` tokens fit), or None."""
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        return None
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    ctx = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    if ctx and cfg.get("model_type") == "roberta" and cfg.get("pad_token_id") is not None:
        ctx -= int(cfg["pad_token_id"]) + 1
    return int(ctx) if ctx else None


def fit_to_model(model_dir: str | os.PathLike, model_max_length: int | None = None) -> None:
    """Set ``model_max_length`` in the tokenizer files of a saved model directory to the
    model's context (from its config.json unless given), so callers that truncate to the
    tokenizer's limit (lm-eval, pipelines) never feed more positions than the model has."""
    d = Path(model_dir)
    portable_merges(d / "tokenizer.json")
    cfg_path = d / "tokenizer_config.json"
    ctx = model_max_length or model_context(d)
    if not cfg_path.is_file() or not ctx:
        return
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.get("tokenizer_class") in (None, "TokenizersBackend"):  # a folder from before this fix
        cfg = {**cfg, **transformers_config()}
        cfg.pop("backend", None)
    cfg["model_max_length"] = int(ctx)
    write_json(cfg_path, cfg)


def portable_merges(path: str | os.PathLike) -> None:
    """Rewrite a BPE ``tokenizer.json``'s merges from ``["a", "b"]`` pairs to ``"a b"``
    strings, the form every tokenizers version reads (see the module docstring); a file that
    already has strings, or a merge whose tokens hold a space, is left as it is."""
    p = Path(path)
    if not p.is_file():
        return
    data = json.loads(p.read_text(encoding="utf-8"))
    merges = (data.get("model") or {}).get("merges")
    if not merges or not isinstance(merges[0], list):
        return
    if any(" " in a or " " in b for a, b in merges):
        log.warning("%s: a merge holds a space; kept as pairs (tokenizers < 0.20 cannot read it)", p)
        return
    data["model"]["merges"] = [f"{a} {b}" for a, b in merges]
    # as tokenizers writes it (no ASCII escapes), so the file stays readable and small
    atomic_write_text(p, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def copy_for_model(tok_dir: str | os.PathLike, model_dir: str | os.PathLike,
                   model_max_length: int | None = None) -> None:
    """Copy a tokenizer folder's files into a saved model directory, fitted to the model
    (a masked LM's folder gains the mask token: :func:`add_mask_token`)."""
    src = Path(tok_dir)
    if not src.is_dir():
        raise UserError(f"{src}: tokenizer directory not found; run the tokenizer stage first")
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, Path(model_dir) / f.name)
    if is_masked_model(model_dir):
        add_mask_token(model_dir)
    fit_to_model(model_dir, model_max_length)


def is_masked_model(model_dir: str | os.PathLike) -> bool:
    """Whether a saved model folder's ``config.json`` names a masked LM (``...ForMaskedLM``)."""
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        return False
    archs = json.loads(cfg_path.read_text(encoding="utf-8")).get("architectures") or []
    return any(str(a).endswith("ForMaskedLM") for a in archs)


def add_mask_token(tok_dir: str | os.PathLike) -> int:
    """Append ``<mask>`` to a tokenizer folder's files at id = its size and name it the
    mask token in ``tokenizer_config.json`` and ``special_tokens_map.json``; a folder that
    has it already is left as it is. Returns its id."""
    d = _check_dir(tok_dir)
    tok = load_backend(d)
    mask_id = tok.token_to_id(MASK)
    if mask_id is None:
        mask_id = tok.get_vocab_size(with_added_tokens=True)
        tok.add_special_tokens([mask_added_token()])
        if tok.token_to_id(MASK) != mask_id:  # an id taken twice would corrupt the model
            raise UserError(f"{d / 'tokenizer.json'}: {MASK} did not get id {mask_id}; "
                            "re-train the tokenizer")
        with atomic_path(d / "tokenizer.json") as tmp:
            tok.save(str(tmp))
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = d / name
        if path.is_file():
            write_json(path, {**json.loads(path.read_text(encoding="utf-8")), "mask_token": MASK})
    return mask_id


def _check_dir(tok_dir: str | os.PathLike) -> Path:
    d = Path(tok_dir)
    require_file(d / "tokenizer.json", "tokenizer",
                 hint="train it first: python -m babydistill.data.tokenizer --out DIR TRAIN_FILES")
    return d


def load_tokenizer(tok_dir: str | os.PathLike):
    """The saved tokenizer as a ``transformers.PreTrainedTokenizerFast`` (bos/eos/pad set)."""
    from transformers import PreTrainedTokenizerFast

    d = _check_dir(tok_dir)
    fast = PreTrainedTokenizerFast.from_pretrained(str(d))
    if fast.pad_token_id is None or fast.eos_token_id is None or fast.bos_token_id is None:
        raise UserError(f"{d}: tokenizer has no pad/bos/eos token; re-train it with "
                        "python -m babydistill.data.tokenizer")
    return fast


def load_masked_tokenizer(tok_dir: str | os.PathLike):
    """The tokenizer at ``tok_dir`` as a masked LM's folder holds it (``<mask>`` appended at
    id = its size, :func:`add_mask_token`), built in a scratch copy: ``tok_dir`` (the
    tokenizer stage's files) is not touched. For scoring a masked LM during training."""
    import tempfile

    src = _check_dir(tok_dir)
    with tempfile.TemporaryDirectory(prefix="masked-tokenizer-") as tmp:
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, Path(tmp) / f.name)
        add_mask_token(tmp)
        return load_tokenizer(tmp)  # everything is read into memory before tmp goes


def load_backend(tok_dir: str | os.PathLike) -> Tokenizer:
    """The raw ``tokenizers.Tokenizer`` of a saved folder (fast batch encoding, no transformers)."""
    d = _check_dir(tok_dir)
    try:
        return Tokenizer.from_file(str(d / "tokenizer.json"))
    except Exception as e:
        raise UserError(f"{d / 'tokenizer.json'}: not a valid tokenizer ({e}); re-train it") from None


@cli
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m babydistill.data.tokenizer", description=__doc__.split("\n")[0])
    p.add_argument("--vocab-size", type=int, default=16000)
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument("--out", required=True, help="output folder (tokenizer.json + transformers files)")
    p.add_argument("--log", default=None, help="also log to this file")
    p.add_argument("inputs", nargs="+", help="cleaned TRAIN split files (never dev)")
    args = p.parse_args(argv)
    setup_logging(args.log)

    paths = sorted_inputs(args.inputs)
    t0 = time.perf_counter()
    tok = train_tokenizer(paths, args.vocab_size, args.min_frequency)
    seconds = time.perf_counter() - t0
    info = {
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "requested_vocab_size": args.vocab_size,
        "min_frequency": args.min_frequency,
        "special_tokens": {s: i for i, s in enumerate(SPECIAL_TOKENS)},
        "files": [{"name": q.name, "bytes": q.stat().st_size, "sha256": file_sha256(q)} for q in paths],
        "train_seconds": round(seconds, 3),
    }
    save_tokenizer(tok, args.out, info)
    log.info("tokenizer: %d tokens from %d files in %.1f s -> %s",
             info["vocab_size"], len(paths), seconds, args.out)


if __name__ == "__main__":
    main()
