"""BLiMP-style minimal-pair suites and a fast batched scorer of our own.

Owns: reading a suite directory (one ``<paradigm>.jsonl`` per paradigm, BLiMP's format, or
EWoK's, whose two targets follow a context: :data:`SUITE_FORMATS`),
the pair/paradigm/category bookkeeping and the summary both evaluation backends write,
and :func:`score_pairs`, which scores both sentences of many pairs in one right-padded
batch. It makes the same decision as lm-eval 0.4.13's ``hf`` model on a
``multiple_choice`` task with an empty context: each sentence is scored as
``log p(" " + sentence | prefix)`` where the prefix is the BOS token (EOS if none), and
the good sentence wins ties. :func:`blimp_accuracy` is side-effect free so the training
loop can call it once per epoch.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from babydistill.common import UserError

# lm-eval's default target_delimiter: every choice is scored as " " + sentence.
DELIMITER = " "
DEFAULT_MAX_LENGTH = 2048  # lm-eval's fallback when neither config nor tokenizer says


@dataclass(frozen=True)
class Pair:
    pair_id: str
    good: str
    bad: str
    context: str = ""  # EWoK: both targets are scored after this context


@dataclass
class Paradigm:
    name: str
    path: Path
    category: str
    pairs: list[Pair] = field(default_factory=list)
    kind: str = "blimp"  # a key of SUITE_FORMATS


# Record keys per suite format: (good, bad, context or None). BLiMP and the supplement:
# two whole sentences. EWoK (BabyLM 2024's ewok_filtered, one <domain>.jsonl per domain,
# every item also stored with contexts and targets swapped): Target1 (right) and Target2
# scored as continuations of Context1, as the 2024 pipeline's lm-eval task does
# (babylm/evaluation-pipeline-2024@d680c287, lm_eval/tasks/ewok_filtered/_template_yaml).
SUITE_FORMATS = {
    "blimp": ("sentence_good", "sentence_bad", None),
    "ewok": ("Target1", "Target2", "Context1"),
}


def record_format(doc: dict) -> str:
    """The suite format a record is in (EWoK when it has Context1/Target1/Target2)."""
    return "ewok" if isinstance(doc, dict) and {"Context1", "Target1", "Target2"} <= set(doc) else "blimp"


def _category_from_name(stem: str) -> str:
    # Supplement files carry no linguistics_term: group qa_congruence_easy/_tricky etc.
    return re.sub(r"_(easy|tricky|\d+)$", "", stem)


def load_suite(suite_dir: str | Path, limit: int | None = None) -> list[Paradigm]:
    """Read every ``*.jsonl`` of ``suite_dir`` (sorted by name); the first ``limit`` pairs each.

    The pair id is ``pairID`` or ``pair_id`` when present, else the record's index in
    the file (which is also lm-eval's ``doc_id``).
    """
    d = Path(suite_dir)
    if not d.is_dir():
        raise UserError(f"{d}: suite directory not found; give --suite-dir a folder of <paradigm>.jsonl files")
    files = sorted(d.glob("*.jsonl"))
    if not files:
        raise UserError(f"{d}: no <paradigm>.jsonl files in the suite directory")
    return [_load_paradigm(f, limit) for f in files]


def _suite_lines(f: Path):
    """(line number, text) of the non-blank lines of a suite file; a byte that is not UTF-8
    is one line naming the file and line, not a UnicodeDecodeError."""
    with open(f, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{f}:{number}: not UTF-8 (byte {e.start} of the line); "
                                "re-save the file as UTF-8") from None
            if line.strip():
                yield number, line


def _load_paradigm(f: Path, limit: int | None) -> Paradigm:
    pairs, cats, kind, ids = [], Counter(), None, {}
    for i, (number, line) in enumerate(_suite_lines(f)):
        if limit is not None and i >= limit:
            break
        try:
            doc = json.loads(line)
            kind = kind or record_format(doc)
            good_key, bad_key, ctx_key = SUITE_FORMATS[kind]
            good, bad = doc[good_key], doc[bad_key]
            context = doc[ctx_key] if ctx_key else ""
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            keys = " and ".join(k for k in SUITE_FORMATS[kind or "blimp"] if k)
            raise UserError(f"{f}:{number}: record {i} is not a JSON object with {keys} ({e})") from None
        # an empty or non-text sentence ties (or crashes) and a tie scores as correct: a
        # broken record would pass for a right answer
        for key, value in ((good_key, good), (bad_key, bad)) + (((ctx_key, context),) if ctx_key else ()):
            if not isinstance(value, str) or (key != ctx_key and not value.strip()):
                what = "empty" if isinstance(value, str) else f"{type(value).__name__}, not text"
                raise UserError(f"{f}:{number}: {key} is {what}; fix or drop the record")
        pid = str(doc.get("pairID", doc.get("pair_id", i)))
        if pid in ids:
            raise UserError(f"{f}:{number}: pair id {pid!r} already used at line {ids[pid]}; "
                            "pair ids must be unique within a paradigm")
        ids[pid] = number
        pairs.append(Pair(pid, good, bad, context))
        cats[doc.get("linguistics_term") or doc.get("field") or doc.get("Domain")
             or _category_from_name(f.stem)] += 1
    if not pairs:
        raise UserError(f"{f}: no pairs in this paradigm file")
    return Paradigm(f.stem, f.resolve(), cats.most_common(1)[0][0], pairs, kind)


def max_length(model, tokenizer) -> int:
    """The model's context length, resolved as lm-eval does (config, then tokenizer)."""
    cfg = getattr(model, "config", None)
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        v = getattr(getattr(cfg, "text_config", None), attr, None) or getattr(cfg, attr, None)
        if v:
            return int(v)
    v = getattr(tokenizer, "model_max_length", None)
    return int(v) if v and v < 1e12 else DEFAULT_MAX_LENGTH


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """``tokenizer(texts, add_special_tokens=False)["input_ids"]``, from the Rust tokenizer
    directly when it has no truncation or padding set: the same ids without transformers'
    per-text conversion, which was half the tokenizing time of all of BLiMP."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]


def encode_choice(tokenizer, sentences: Sequence[str],
                  contexts: Sequence[str] | None = None) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) token ids per sentence, exactly as lm-eval builds them.

    The continuation is ``" " + sentence`` without special tokens; with an empty context
    the context is the prefix token (BOS, else EOS) unless the continuation already starts
    with it. A non-empty context (EWoK) is encoded as lm-eval's ``_encode_pair`` does: the
    whole ``context + " " + sentence`` is encoded and split after the context's tokens.
    """
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    contexts = list(contexts) if contexts is not None else [""] * len(sentences)
    out: list[tuple[list[int], list[int]] | None] = [None] * len(sentences)
    plain = [i for i, c in enumerate(contexts) if not c]
    conts = _token_ids(tokenizer, [DELIMITER + sentences[i] for i in plain]) if plain else []
    for i, cont in zip(plain, conts):
        if not cont:
            raise ValueError("empty continuation after tokenization")
        out[i] = ([prefix], cont) if cont[0] != prefix else (cont[:1], cont[1:])
    with_ctx = [i for i, c in enumerate(contexts) if c]
    if with_ctx:
        ctxs, conts = [], []
        for i in with_ctx:
            ctx, cont = contexts[i], DELIMITER + sentences[i]
            n_spaces = len(ctx) - len(ctx.rstrip())  # lm-eval moves trailing spaces over
            if n_spaces:
                ctx, cont = ctx[:-n_spaces], ctx[-n_spaces:] + cont
            ctxs.append(ctx)
            conts.append(ctx + cont)
        ctx_ids = _token_ids(tokenizer, ctxs)
        whole_ids = _token_ids(tokenizer, conts)
        for i, c, w in zip(with_ctx, ctx_ids, whole_ids):
            if len(w) <= len(c):
                raise ValueError("empty continuation after tokenization")
            out[i] = (c, w[len(c):])
    return out  # type: ignore[return-value]


def encode_pairs(tokenizer, pairs: Sequence[Pair]) -> list[tuple[list[int], list[int]]]:
    """:func:`encode_choice` of every pair's good then bad sentence, after its context."""
    return encode_choice(tokenizer, [s for p in pairs for s in (p.good, p.bad)],
                         [p.context for p in pairs for _ in (0, 1)])


def encode_suite(tokenizer, paradigms: Sequence[Paradigm]) -> list[tuple[list[int], list[int]]]:
    """:func:`encode_pairs` of every paradigm's pairs, paradigm by paradigm."""
    return encode_pairs(tokenizer, [p for par in paradigms for p in par.pairs])


def check_context(tokenizer, paradigms: Sequence[Paradigm], context: int, model_name: str = "the model",
                  encoded: list[tuple[list[int], list[int]]] | None = None) -> list[tuple[list[int], list[int]]]:
    """Refuse, in one line, a suite holding a sentence longer than the model's context;
    returns :func:`encode_suite`'s encodings (pass them as ``encoded`` to skip encoding).

    The semantics both backends share: a sentence is scored only when its continuation
    (the tokens of ``" " + sentence``) fits the context, so every token is predicted from
    the whole sentence before it. lm-eval would stop on a bare AssertionError there, and
    left-truncating (what the fast scorer would otherwise do) scores a different
    sentence, so such a suite is refused up front, naming the paradigm and pair.
    """
    encoded = encode_suite(tokenizer, paradigms) if encoded is None else encoded
    k = 0
    for par in paradigms:
        for pair in par.pairs:
            for which in ("good", "bad"):
                n = len(encoded[k][1])
                k += 1
                if n > context:
                    raise UserError(
                        f"{par.path}: paradigm {par.name}, pair {pair.pair_id}: the {which} sentence is "
                        f"{n} tokens, longer than the {context}-token context of {model_name}; "
                        "remove the pair from the suite or score a model with a longer context")
    return encoded


def unwrap(model):
    """The plain module under DDP (``.module``) and torch.compile (``._orig_mod``) wrappers:
    scoring needs no gradient sync, and variable batch shapes would make compile recompile."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


# Causal LMs whose logits are exactly lm_head(base_model(...).last_hidden_state): for these
# the scorer runs the output layer only at the positions it scores (no padding, no prefix).
_SPLIT_HEAD_MODELS = ("LlamaForCausalLM", "GPT2LMHeadModel")


def _split_head(model):
    """(body, head) when logits = head(body(...)[0]) for this model class, else None."""
    if type(model).__name__ not in _SPLIT_HEAD_MODELS:
        return None
    body, head = getattr(model, "base_model", None), model.get_output_embeddings()
    if body is None or body is model or head is None:
        return None
    return body, head


def score_pairs(
    model, tokenizer, pairs: Iterable[Pair | tuple[str, str]], batch_size: int = 64, progress: bool = False,
    encoded: list[tuple[list[int], list[int]]] | None = None,
) -> tuple[list[float], list[float]]:
    """Total log-likelihood of each good and bad sentence, many per forward pass.

    Identical token sequences are scored once; the rest are sorted by length (almost no
    padding), right-padded and masked; for plain Llama / GPT-2 models the output layer
    and its log-softmax run only at the positions that predict a continuation token
    (one fused cross-entropy), and the per-sentence sums are one ``index_add``. Runs in
    eval mode under inference_mode and restores the model's train/eval mode. ``encoded``:
    the pairs' :func:`encode_pairs` ids, when the caller has them.
    """
    model = unwrap(model)
    pairs = [p if isinstance(p, Pair) else Pair(str(i), *p) for i, p in enumerate(pairs)]
    if not pairs:
        return [], []
    if encoded is None:
        encoded = encode_pairs(tokenizer, pairs)
    max_len = max_length(model, tokenizer)
    unique: dict[tuple[int, ...], int] = {}  # token sequence -> its slot
    slot_of, n_cont = [], []
    for ctx, cont in encoded:
        seq = tuple((ctx + cont)[-(max_len + 1):])  # left-truncate like lm-eval
        if seq not in unique:
            unique[seq] = len(unique)
            n_cont.append(min(len(cont), len(seq) - 1))
        slot_of.append(unique[seq])
    seqs = list(unique)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    device = _model_device(model)
    split = _split_head(model)
    scores = torch.zeros(len(seqs), dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), batch_size), disable=not progress,
                              desc="scoring", unit="batch"):
                idx = order[start:start + batch_size]
                width = len(seqs[idx[0]])  # sorted longest first
                lengths = np.fromiter((len(seqs[i]) for i in idx), dtype=np.int64, count=len(idx))
                ids_np = np.zeros((len(idx), width), dtype=np.int64)
                scored_np = np.zeros((len(idx), width - 1), dtype=bool)
                for r, i in enumerate(idx):
                    n = lengths[r]
                    ids_np[r, :n] = seqs[i]
                    scored_np[r, n - 1 - n_cont[i]:n - 1] = True  # positions predicting the continuation
                ids = torch.from_numpy(ids_np).to(device)
                scored = torch.from_numpy(scored_np).to(device)
                lengths_t = torch.from_numpy(lengths).to(device)
                mask = (torch.arange(width - 1, device=device)[None, :] < lengths_t[:, None] - 1).long()
                targets = ids[:, 1:][scored]
                rows = torch.arange(len(idx), device=device)[:, None].expand_as(scored)[scored]
                if split is not None:
                    body, head = split
                    hidden = body(input_ids=ids[:, :-1], attention_mask=mask, use_cache=False)[0]
                    logits = head(hidden[scored]).float()
                else:
                    logits = model(input_ids=ids[:, :-1], attention_mask=mask).logits.float()[scored]
                logp = -torch.nn.functional.cross_entropy(logits, targets, reduction="none")
                totals = torch.zeros(len(idx), dtype=torch.float64, device=device)
                totals.index_add_(0, rows, logp.double())
                scores[torch.tensor(idx)] = totals.cpu()
    finally:
        model.train(was_training)
    flat = scores[torch.tensor(slot_of)].tolist()
    return flat[0::2], flat[1::2]


def summarize(paradigms: Sequence[Paradigm], ll_good: Sequence[float], ll_bad: Sequence[float]):
    """Per-pair rows and the summary dict (macro/micro accuracy, per paradigm, per category).

    ``ll_good``/``ll_bad`` follow the pairs of ``paradigms`` in order. A tie counts as
    correct (lm-eval's argmax picks the first choice, the good sentence).
    """
    n = sum(len(par.pairs) for par in paradigms)
    if n != len(ll_good) or n != len(ll_bad):
        raise ValueError(f"{n} pairs but {len(ll_good)}/{len(ll_bad)} scores")
    rows, per, k = [], {}, 0
    for par in paradigms:
        correct = 0
        for pair in par.pairs:
            ok = ll_good[k] >= ll_bad[k]
            rows.append((par.name, pair.pair_id, float(ll_good[k]), float(ll_bad[k]), int(ok)))
            correct += ok
            k += 1
        per[par.name] = {"acc": correct / len(par.pairs), "n": len(par.pairs), "category": par.category}
    cats: dict[str, list[float]] = {}
    for v in per.values():
        cats.setdefault(v["category"], []).append(v["acc"])
    summary = {
        "n_pairs": k,
        "accuracy": sum(v["acc"] for v in per.values()) / len(per),
        "accuracy_micro": sum(r[4] for r in rows) / k,
        "paradigms": per,
        "categories": {c: sum(a) / len(a) for c, a in sorted(cats.items())},
    }
    return summary, rows


def score_suite(model, tokenizer, paradigms: Sequence[Paradigm], batch_size: int = 64, progress: bool = False,
                encoded: list[tuple[list[int], list[int]]] | None = None):
    """Score every pair of ``paradigms`` in one stream of batches; returns (summary, rows).

    A sentence longer than the model's context is refused (:func:`check_context`);
    ``encoded``: :func:`encode_suite`'s ids for this tokenizer, when the caller has them.
    """
    encoded = check_context(tokenizer, paradigms, max_length(unwrap(model), tokenizer), encoded=encoded)
    pairs = [p for par in paradigms for p in par.pairs]
    good, bad = score_pairs(model, tokenizer, pairs, batch_size, progress=progress, encoded=encoded)
    return summarize(paradigms, good, bad)


def blimp_accuracy(model, tokenizer, suite_dir: str | Path, batch_size: int = 64,
                   limit: int | None = None, progress: bool = False) -> dict:
    """BLiMP summary (accuracy, accuracy_micro, paradigms, categories) for an in-memory model.

    For per-epoch curves in the training loop: no files written, model mode restored.
    """
    summary, _ = score_suite(model, tokenizer, load_suite(suite_dir, limit), batch_size, progress)
    return summary


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "eval.scorer", "python -m babydistill.eval.blimp --backend fast and the training loop's BLiMP curves")
