"""BLiMP-style minimal-pair suites and a fast batched scorer of our own.

Owns: reading a suite directory (one ``<paradigm>.jsonl`` per paradigm, BLiMP's format, or
EWoK's, whose two targets follow a context: :data:`SUITE_FORMATS`),
the pair/paradigm/category bookkeeping and the summary both evaluation backends write,
the scoring conventions of the official BabyLM pipelines (:data:`CONVENTIONS`), and
:func:`score_pairs`, which scores both sentences of many pairs in one right-padded batch.
:func:`blimp_accuracy` is side-effect free so the training loop can call it once per epoch.
A masked LM (:func:`is_masked_lm`) is handed to :mod:`babydistill.eval.pll`, which scores
it by pseudo-log-likelihood under the same conventions; everything below is the causal path.

A convention says which tokens a sentence is scored as and given what; the score is always
the sum of those tokens' log-probabilities, and the pair is right when the good sentence's
score is at least the bad one's. One :class:`Convention` per official pipeline:

``babylm-2023`` (babylm/evaluation-pipeline-2023@17b38063, its lm-eval fork)
    ``log p(" " + sentence | EOS)``: ``lm_eval/api/model.py`` ``loglikelihood`` uses
    ``context_enc = [self.eot_token_id]`` for an empty context (l. 172) and ``eot_token_id``
    is the tokenizer's EOS (``lm_eval/models/huggingface.py`` l. 272); the continuation is
    ``text_target_separator + answer_choice`` = ``" " + sentence`` (``lm_eval/api/task.py``
    l. 519), encoded without special tokens for a causal model (huggingface.py l. 253). A
    context (EWoK, which that pipeline did not have) is encoded on its own, as there.
    Ties: ``answer_choices_list[np.argmax(results)]`` (task.py l. 570), the first choice,
    ``sentence_good``.
``babylm-2024`` (lm-eval 0.4.13's ``hf`` model; the 2024 pipeline,
    babylm/evaluation-pipeline-2024@d680c287, is a fork of it) ``log p(" " + sentence | BOS)``
    (EOS when there is no BOS), a context encoded with the target and split after it
    (lm-eval's ``_encode_pair``); ties to the first choice (``np.argmax``), the good sentence.
    The default, unchanged: :func:`encode_choice`.
``babylm-2025`` (babylm/evaluation-pipeline-2025@bf55c113, ``evaluation_pipeline/
    sentence_zero_shot/``; the 2026 edition reuses it) the causal backend: the sentence is
    tokenised by the tokenizer's own call, special tokens as it adds them and no prefix of
    its own (``dataset.py`` l. 60, ``self.processor(text=sentence, return_offsets_mapping=
    True)``); the model reads ``tokens[:-1]`` and predicts ``tokens[1:]`` (l. 420-421), so
    the first token is never scored; of those, the tokens whose character span ends after
    the completion's start are summed (the phrase mask, l. 82-89 and its ``[:, 1:]`` shift,
    l. 429; BLiMP's completion is the whole sentence, ``read_files.py`` l. 108; EWoK's is
    ``" " + target`` after ``Context1 + " "``, l. 146-148). ``compute_results.py`` sums
    ``log_softmax(logits / temp)`` over the mask (l. 138-140) and picks
    ``torch.max(stacked_probs, dim=1)[1]`` (l. 61), the first maximum on a tie, i.e. the
    good sentence (label 0). A temperature scan (``run.py`` ``get_temperatures``, l. 61)
    reports the temperature whose macro accuracy over UIDs (paradigms) is highest, the first
    of equals (``if acc > best_acc``, l. 186), and its accuracies; :func:`score_suite` does
    the same when given ``temperatures``.

Over-long sentences: lm-eval (2023, 2024) asserts the continuation fits the model's context
and left-truncates the context before it, so a 2023/2024 sentence is refused when its
continuation is longer than the context; the 2025 code truncates nothing, so a 2025
sentence is refused when the model's input (all its tokens but the last) is longer than the
context (:func:`check_context`, the same for both backends). Log-probabilities are
summed in float64 here (float32 in the 2025 code): decisions can differ only on pairs
whose two sums agree to float32 rounding.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from babydistill.common import UserError, text_lines

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


def _load_paradigm(f: Path, limit: int | None) -> Paradigm:
    pairs, cats, kind, ids = [], Counter(), None, {}
    for i, (number, line) in enumerate(text_lines(f)):
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


def encode_eos_context(tokenizer, sentences: Sequence[str],
                       contexts: Sequence[str] | None = None) -> list[tuple[list[int], list[int]]]:
    """babylm-2023: (context, continuation) ids as the 2023 pipeline's lm-eval fork builds
    them (babylm/evaluation-pipeline-2023@17b38063, lm_eval/api/model.py ``loglikelihood``).

    The continuation is ``" " + sentence`` without special tokens; an empty context is the
    EOS token, always (the fork has no check for a continuation starting with it); a
    non-empty context is encoded on its own, apart from the continuation.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("--convention babylm-2023 scores each sentence after the EOS token, and "
                        "this tokenizer has none; use --convention babylm-2024 or babylm-2025")
    contexts = list(contexts) if contexts is not None else [""] * len(sentences)
    conts = _token_ids(tokenizer, [DELIMITER + s for s in sentences])
    with_ctx = [i for i, c in enumerate(contexts) if c]
    ctx_ids = dict(zip(with_ctx, _token_ids(tokenizer, [contexts[i] for i in with_ctx]) if with_ctx else []))
    out = []
    for i, cont in enumerate(conts):
        ctx = ctx_ids.get(i, [eos])
        if not cont or not ctx:
            raise ValueError("empty context or continuation after tokenization")
        out.append((ctx, cont))
    return out


def _ids_and_offsets(tokenizer, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """``tokenizer(texts, return_offsets_mapping=True)``'s ids and offsets, special tokens
    as the tokenizer adds them; from the Rust tokenizer directly as in :func:`_token_ids`."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation is not None or backend.padding is not None:
        try:
            enc = tokenizer(texts, return_offsets_mapping=True)
        except NotImplementedError:
            raise UserError("--convention babylm-2025 needs a fast tokenizer (tokenizer.json): "
                            "it selects the scored tokens by their character offsets") from None
        return [(list(i), [tuple(o) for o in off]) for i, off in zip(enc["input_ids"], enc["offset_mapping"])]
    return [(e.ids, e.offsets) for e in backend.encode_batch(texts, add_special_tokens=True)]


def encode_no_prefix(tokenizer, sentences: Sequence[str],
                     contexts: Sequence[str] | None = None) -> list[tuple[list[int], list[int]]]:
    """babylm-2025: (unscored tokens, scored tokens) as the 2025 pipeline's causal backend
    selects them (babylm/evaluation-pipeline-2025@bf55c113, evaluation_pipeline/
    sentence_zero_shot/dataset.py ``process_causal_sentences`` and the causal collate).

    The text is the sentence (BLiMP) or ``context + " " + target`` (EWoK, read_files.py
    ``decode_ewok``), tokenised by the tokenizer's call (its special tokens, no prefix of
    ours). Token ``i`` is scored when ``i >= 1`` (``tokens[1:]`` are the targets) and its
    character span ends after the completion's start (the sentence's first character, or
    the space before the target). The scored tokens are one run ``[a, b)``; tokens after it
    (an EOS the tokenizer appends) are unscored and, the model being causal, dropped. A
    sentence of one token has nothing scored: its score is 0 (the 2025 code fails on it).
    """
    contexts = list(contexts) if contexts is not None else [""] * len(sentences)
    texts = [f"{c} {s}" if c else s for s, c in zip(sentences, contexts)]
    completion = [len(s) + 1 if c else len(s) for s, c in zip(sentences, contexts)]
    out = []
    for text, n_chars, (ids, offsets) in zip(texts, completion, _ids_and_offsets(tokenizer, texts)):
        if not ids:
            raise ValueError("empty sentence after tokenization")
        start = len(text) - n_chars + offsets[0][0]
        scored = [i for i in range(1, len(ids)) if offsets[i][1] > start]
        a, b = (scored[0], scored[-1] + 1) if scored else (len(ids), len(ids))
        if scored != list(range(a, b)):
            raise ValueError(f"the scored tokens of {text!r} are not one run")
        out.append((ids[:a], ids[a:b]))
    return out


@dataclass(frozen=True)
class Convention:
    """How one official BabyLM pipeline scores a sentence (see the module docstring).

    ``encode``: (tokenizer, sentences, contexts) -> (context ids, scored ids) per sentence;
    ``truncates_context``: lm-eval's over-long rule (only the scored tokens must fit the
    model's context, the context before them is left-truncated) rather than the whole
    input fitting; ``tie_correct``: a pair whose two scores are equal counts as right
    (every pipeline takes the first maximum, and the first candidate is the good sentence);
    ``temperatures``: a temperature scan is part of the pipeline; ``lmeval``: the prefix
    lm-eval 0.4.13's ``hf`` model must be given to score this way (``"default"``: its own
    BOS-else-EOS, ``"eos"``: ``prefix_token_id`` = EOS), None when it cannot;
    ``lmeval_contexts``: lm-eval encodes a context (EWoK) as this convention does.
    """

    name: str
    source: str
    encode: Callable[..., list[tuple[list[int], list[int]]]]
    truncates_context: bool
    tie_correct: bool = True
    temperatures: bool = False
    lmeval: str | None = None
    lmeval_contexts: bool = False


CONVENTIONS = {c.name: c for c in (
    Convention("babylm-2023", "babylm/evaluation-pipeline-2023@17b38063 lm_eval/api/model.py",
               encode_eos_context, truncates_context=True, lmeval="eos"),
    Convention("babylm-2024", "lm-eval 0.4.13 hf model (babylm/evaluation-pipeline-2024@d680c287)",
               encode_choice, truncates_context=True, lmeval="default", lmeval_contexts=True),
    Convention("babylm-2025", "babylm/evaluation-pipeline-2025@bf55c113 evaluation_pipeline/sentence_zero_shot",
               encode_no_prefix, truncates_context=False, temperatures=True),
)}
DEFAULT_CONVENTION = "babylm-2024"


def get_convention(name: str | Convention) -> Convention:
    """The :class:`Convention` called ``name``; an unknown name is one line naming the flag."""
    if isinstance(name, Convention):
        return name
    if name not in CONVENTIONS:
        raise UserError(f"--convention {name}: not a scoring convention; use one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


def encode_pairs(tokenizer, pairs: Sequence[Pair],
                 convention: str | Convention = DEFAULT_CONVENTION) -> list[tuple[list[int], list[int]]]:
    """The convention's encoding of every pair's good then bad sentence, after its context."""
    return get_convention(convention).encode(tokenizer, [s for p in pairs for s in (p.good, p.bad)],
                                             [p.context for p in pairs for _ in (0, 1)])


def encode_suite(tokenizer, paradigms: Sequence[Paradigm],
                 convention: str | Convention = DEFAULT_CONVENTION) -> list[tuple[list[int], list[int]]]:
    """:func:`encode_pairs` of every paradigm's pairs, paradigm by paradigm."""
    return encode_pairs(tokenizer, [p for par in paradigms for p in par.pairs], convention)


def check_context(tokenizer, paradigms: Sequence[Paradigm], context: int, model_name: str = "the model",
                  encoded: list[tuple[list[int], list[int]]] | None = None,
                  convention: str | Convention = DEFAULT_CONVENTION) -> list[tuple[list[int], list[int]]]:
    """Refuse, in one line, a suite holding a sentence longer than the model's context;
    returns :func:`encode_suite`'s encodings (pass them as ``encoded`` to skip encoding).

    The semantics both backends share, per convention: a babylm-2023/2024 sentence is
    scored only when its continuation (the tokens of ``" " + sentence``) fits the context,
    so every token is predicted from the whole sentence before it; a babylm-2025 sentence
    only when the model's input, all its tokens but the last, fits. lm-eval would stop on
    a bare AssertionError there, and left-truncating (what the fast scorer would otherwise
    do) scores a different sentence, so such a suite is refused up front, naming the
    paradigm and pair.
    """
    conv = get_convention(convention)
    encoded = encode_suite(tokenizer, paradigms, conv) if encoded is None else encoded
    k = 0
    for par in paradigms:
        for pair in par.pairs:
            for which in ("good", "bad"):
                ctx, cont = encoded[k]
                k += 1
                # the sentence's tokens; the model reads them all but the last, after its context
                n = len(cont) if conv.truncates_context else len(ctx) + len(cont)
                if (n if conv.truncates_context else n - 1) > context:
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


def is_masked_lm(model_or_config) -> bool:
    """Whether a model (or its saved config) is a masked LM, scored by :mod:`babydistill.eval.pll`.

    A model by its class (``...ForMaskedLM``); a config by its ``architectures``, else by its
    ``model_type``: one transformers maps to a masked-LM class, unless it maps to a causal
    one too and ``is_decoder`` is set (RoBERTa is both; the 2024 pipeline's lm-eval fork
    takes the masked-LM class first, babylm/evaluation-pipeline-2024@d680c287
    lm_eval/models/huggingface.py l. 494-501).
    """
    if isinstance(model_or_config, torch.nn.Module):
        return type(unwrap(model_or_config)).__name__.endswith("ForMaskedLM")
    cfg = model_or_config
    archs = getattr(cfg, "architectures", None) or []
    if archs:
        return any(a.endswith("ForMaskedLM") for a in archs)
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    kind = getattr(cfg, "model_type", None)
    if kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return False
    return kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or not getattr(cfg, "is_decoder", False)


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


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    """A scoring precision the scorer knows, or one line."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: use fp32 or bf16")


def autocast_for(precision: str, device: torch.device):
    """A context factory: nothing for ``fp32``, bf16 autocast on ``device`` for ``bf16`` (the
    forward's matmuls in bf16; what is summed stays fp32/fp64). A BLiMP decision can flip when
    bf16 moves a pair's margin: docs/scale.md measures how many."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device.type, dtype=torch.bfloat16)


def score_pairs(
    model, tokenizer, pairs: Iterable[Pair | tuple[str, str]], batch_size: int = 64, progress: bool = False,
    encoded: list[tuple[list[int], list[int]]] | None = None, convention: str | Convention = DEFAULT_CONVENTION,
    precision: str = "fp32",
) -> tuple[list[float], list[float]]:
    """Total log-likelihood of each good and bad sentence, many per forward pass.

    Identical token sequences are scored once; the rest are sorted by length (almost no
    padding), right-padded and masked; for plain Llama / GPT-2 models the output layer
    and its log-softmax run only at the positions that predict a continuation token
    (one fused cross-entropy), and the per-sentence sums are one ``index_add``. Runs in
    eval mode under inference_mode and restores the model's train/eval mode. ``encoded``:
    the pairs' :func:`encode_pairs` ids under ``convention``, when the caller has them.
    ``precision``: ``fp32`` (the official pipelines' numbers) or ``bf16`` (:func:`autocast_for`).
    """
    (good, bad), = score_pairs_at(model, tokenizer, pairs, (1.0,), batch_size, progress, encoded, convention,
                                  precision)
    return good, bad


def score_pairs_at(
    model, tokenizer, pairs: Iterable[Pair | tuple[str, str]], temperatures: Sequence[float] = (1.0,),
    batch_size: int = 64, progress: bool = False, encoded: list[tuple[list[int], list[int]]] | None = None,
    convention: str | Convention = DEFAULT_CONVENTION, precision: str = "fp32",
) -> list[tuple[list[float], list[float]]]:
    """:func:`score_pairs` at each temperature of a scan from one forward pass per batch:
    (good, bad) per temperature, the log-probabilities of ``log_softmax(logits / t)`` as
    the 2025 pipeline's ``compute_results.py`` takes them (t = 1 divides nothing). A masked
    LM is scored by :func:`babydistill.eval.pll.score_masked_pairs_at` (``encoded``: its
    masked encodings)."""
    model = unwrap(model)
    pairs = [p if isinstance(p, Pair) else Pair(str(i), *p) for i, p in enumerate(pairs)]
    if is_masked_lm(model):
        from babydistill.eval.pll import score_masked_pairs_at

        return score_masked_pairs_at(model, tokenizer, pairs, temperatures, batch_size, progress, encoded,
                                     get_convention(convention).name, precision)
    if not pairs:
        return [([], []) for _ in temperatures]
    if encoded is None:
        encoded = encode_pairs(tokenizer, pairs, convention)
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
    # a sequence with nothing to score (a one-token babylm-2025 sentence) keeps its 0
    order = sorted((i for i in range(len(seqs)) if n_cont[i] > 0), key=lambda i: -len(seqs[i]))
    device = _model_device(model)
    autocast = autocast_for(precision, device)
    split = _split_head(model)
    scores = torch.zeros(len(temperatures), len(seqs), dtype=torch.float64)
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
                with autocast():  # the log-softmax below runs in fp32 either way
                    if split is not None:
                        body, head = split
                        hidden = body(input_ids=ids[:, :-1], attention_mask=mask, use_cache=False)[0]
                        logits = head(hidden[scored]).float()
                    else:
                        logits = model(input_ids=ids[:, :-1], attention_mask=mask).logits.float()[scored]
                for k, t in enumerate(temperatures):
                    scaled = logits if t == 1 else logits / t
                    logp = -torch.nn.functional.cross_entropy(scaled, targets, reduction="none")
                    totals = torch.zeros(len(idx), dtype=torch.float64, device=device)
                    totals.index_add_(0, rows, logp.double())
                    scores[k, torch.tensor(idx)] = totals.cpu()
    finally:
        model.train(was_training)
    out = []
    for k in range(len(temperatures)):
        flat = scores[k, torch.tensor(slot_of)].tolist()
        out.append((flat[0::2], flat[1::2]))
    return out


def summarize(paradigms: Sequence[Paradigm], ll_good: Sequence[float], ll_bad: Sequence[float],
              convention: str | Convention = DEFAULT_CONVENTION):
    """Per-pair rows and the summary dict (macro/micro accuracy, per paradigm, per category,
    and the number of ties: pairs whose two scores are equal).

    ``ll_good``/``ll_bad`` follow the pairs of ``paradigms`` in order. A tie counts as
    correct under every convention (each pipeline's argmax picks the first choice, the good
    sentence: :attr:`Convention.tie_correct`).
    """
    conv = get_convention(convention)
    n = sum(len(par.pairs) for par in paradigms)
    if n != len(ll_good) or n != len(ll_bad):
        raise ValueError(f"{n} pairs but {len(ll_good)}/{len(ll_bad)} scores")
    rows, per, k, all_ties = [], {}, 0, 0
    for par in paradigms:
        correct = ties = 0
        for pair in par.pairs:
            tie = ll_good[k] == ll_bad[k]
            ok = ll_good[k] > ll_bad[k] or (tie and conv.tie_correct)
            rows.append((par.name, pair.pair_id, float(ll_good[k]), float(ll_bad[k]), int(ok)))
            correct += ok
            ties += tie
            k += 1
        per[par.name] = {"acc": correct / len(par.pairs), "n": len(par.pairs), "category": par.category,
                         "ties": ties}
        all_ties += ties
    cats: dict[str, list[float]] = {}
    for v in per.values():
        cats.setdefault(v["category"], []).append(v["acc"])
    summary = {
        "n_pairs": k,
        "accuracy": sum(v["acc"] for v in per.values()) / len(per),
        "accuracy_micro": sum(r[4] for r in rows) / k,
        "paradigms": per,
        "categories": {c: sum(a) / len(a) for c, a in sorted(cats.items())},
        "ties": all_ties,
    }
    return summary, rows


def check_temperatures(temperatures: Sequence[float] | None, convention: str | Convention) -> list[float] | None:
    """``temperatures`` as a list (None: no scan); one line when the convention has no scan
    or a temperature is not positive."""
    if temperatures is None:
        return None
    conv = get_convention(convention)
    temps = [float(t) for t in temperatures]
    if not conv.temperatures:
        raise UserError(f"--temperatures: the {conv.name} pipeline has no temperature scan; "
                        "drop --temperatures or use --convention babylm-2025")
    if not temps or any(not t > 0 for t in temps):
        raise UserError(f"--temperatures {' '.join(map(str, temps))}: give one or more temperatures > 0")
    return temps


def best_temperature(summaries: Sequence[dict], temperatures: Sequence[float]) -> int:
    """Index of the temperature the 2025 pipeline reports (run.py ``main``): the highest
    mean over paradigms (its UIDs) of ``100 * correct / total``, the first of equals."""
    best, best_acc = 0, -1.0
    for k, summary in enumerate(summaries):
        accs = [100.0 * round(v["acc"] * v["n"]) / v["n"] for v in summary["paradigms"].values()]
        acc = sum(accs) / len(accs)
        if acc > best_acc:
            best, best_acc = k, acc
    return best


def score_suite(model, tokenizer, paradigms: Sequence[Paradigm], batch_size: int = 64, progress: bool = False,
                encoded: list[tuple[list[int], list[int]]] | None = None,
                convention: str | Convention = DEFAULT_CONVENTION, temperatures: Sequence[float] | None = None,
                precision: str = "fp32"):
    """Score every pair of ``paradigms`` in one stream of batches; returns (summary, rows).

    A sentence longer than the model's context is refused (:func:`check_context`);
    ``encoded``: :func:`encode_suite`'s ids for this tokenizer and convention, when the
    caller has them. ``temperatures`` (babylm-2025 only): a scan reported as the 2025
    pipeline reports it, the summary and rows at the best temperature
    (:func:`best_temperature`), with ``temperature`` and ``temperature_scan`` (each
    temperature's macro accuracy, in the order given) added.
    """
    conv = get_convention(convention)
    temps = check_temperatures(temperatures, conv)
    if is_masked_lm(model):
        from babydistill.eval.pll import check_masked_context, masked_context

        encoded = check_masked_context(tokenizer, paradigms, masked_context(unwrap(model), tokenizer),
                                       encoded=encoded, convention=conv.name)
    else:
        encoded = check_context(tokenizer, paradigms, max_length(unwrap(model), tokenizer), encoded=encoded,
                                convention=conv)
    pairs = [p for par in paradigms for p in par.pairs]
    if temps is None:
        good, bad = score_pairs(model, tokenizer, pairs, batch_size, progress=progress, encoded=encoded,
                                convention=conv, precision=precision)
        return summarize(paradigms, good, bad, conv)
    results = [summarize(paradigms, good, bad, conv) for good, bad in
               score_pairs_at(model, tokenizer, pairs, temps, batch_size, progress, encoded, conv, precision)]
    k = best_temperature([r[0] for r in results], temps)
    summary, rows = results[k]
    summary = {**summary, "temperature": temps[k],
               "temperature_scan": [{"temperature": t, "accuracy": r[0]["accuracy"]} for t, r in zip(temps, results)]}
    return summary, rows


def blimp_accuracy(model, tokenizer, suite_dir: str | Path, batch_size: int = 64,
                   limit: int | None = None, progress: bool = False,
                   convention: str | Convention = DEFAULT_CONVENTION) -> dict:
    """BLiMP summary (accuracy, accuracy_micro, paradigms, categories, ties) for an in-memory model.

    For per-epoch curves in the training loop: no files written, model mode restored.
    """
    summary, _ = score_suite(model, tokenizer, load_suite(suite_dir, limit), batch_size, progress,
                             convention=convention)
    return summary


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "eval.scorer", "python -m babydistill.eval.blimp --backend fast and the training loop's BLiMP curves")
