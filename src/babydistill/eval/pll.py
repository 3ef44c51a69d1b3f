"""Zero-shot minimal-pair scoring of masked LMs: pseudo-log-likelihoods (PLL), batched.

Owns: what each official BabyLM pipeline computes for a masked LM (RoBERTa and the like),
as (token ids, masked positions, target ids) per sentence (:func:`encode_masked`), and
:func:`score_masked_pairs_at`, which scores every masked copy of many sentences in one
right-padded batch. :mod:`babydistill.eval.scorer` sends a masked LM here (its
:func:`~babydistill.eval.scorer.is_masked_lm`); the causal path is not touched.

A masked query is one copy of the sentence's tokens with one position replaced by the mask
token; its score is the log-probability of the original token there. Per convention:

``babylm-2023`` (babylm/evaluation-pipeline-2023@17b38063, ``lm_eval/models/huggingface.py``
    ``AutoMaskedLM``, l. 610-776, its own code, no minicons) the context is computed and
    dropped (l. 720-727), so a context (EWoK) is ignored; the continuation ``" " + sentence``
    is encoded with the tokenizer's special tokens (``encode(..., manual_special=False)``,
    l. 668); the ``n`` tokens that are not pad/CLS/SEP are the targets and positions
    ``1 .. n`` are masked (l. 689-696), i.e. the code assumes one CLS token first (refused in
    one line otherwise); the score is the **sum** of the log-probabilities **in bits**
    (``/ torch.tensor(2).log()``, l. 745; summed in float64, l. 764-767).
``babylm-2024`` (babylm/evaluation-pipeline-2024@d680c287, ``lm_eval/models/huggingface.py``
    ``AutoMaskedLM.loglikelihood``, l. 1529-1601) minicons's
    ``MaskedLMScorer.conditional_score(context, continuation)`` with an empty context
    replaced by ``tokenizer.eos_token`` (l. 1593-1595) and minicons's default reduction,
    ``x.mean(0)``. In minicons (kanishkamisra/minicons@5e12367c, ``minicons/scorer.py``, the
    release of the pipeline's time; unchanged in the masked-LM path to 02c32e09 but for the
    dtype of the mean) ``prime_text`` encodes the prefix with special tokens and counts its
    tokens that are not pad/SEP (``targets_start``), encodes ``prefix + " " + stimulus``
    (separator ``" "``; the stimulus is lm-eval's ``" " + sentence``, so two spaces) with
    special tokens, and ``get_masked_tensors`` masks, one at a time, every token at or after
    ``targets_start`` that is not pad/CLS/SEP; ``compute_stats`` takes ``log_softmax`` of
    the logits at the masked position in the model's dtype; the score is their **mean**,
    in float64 as minicons 0.3 (float32 since minicons b83a4dc8, Nov 2024).
    A tokenizer without a pad token gets lm-eval's (its unk, else its EOS: l. 298-304).
``babylm-2025`` (babylm/evaluation-pipeline-2025@bf55c113, ``evaluation_pipeline/
    sentence_zero_shot/``, backend ``mlm``) ``dataset.py`` ``process_mlm_sentences``
    (l. 100-149): the sentence (BLiMP) or ``context + " " + target`` (EWoK) is tokenised by
    the tokenizer's own call with offsets, special tokens as it adds them; every token whose
    character span ends after the completion's start (``len(sentence) - len(completion)``)
    is masked in turn; ``compute_results.py`` ``compute_mlm_results`` (l. 159-242) sums
    ``log_softmax(logits / temp)`` at the masked positions (**sum**, float32 there, float64
    here) and the first maximum wins (``torch.max``, l. 61): a tie is the good sentence.

Every pipeline feeds a masked copy whole, truncating nothing: a sentence whose tokens do
not fit the model's positions is refused up front (:func:`check_masked_context`), naming
the paradigm and pair. Padding: right, with attention mask 0, as all three pipelines pad.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from babydistill.common import UserError
from babydistill.eval.scorer import (
    DELIMITER,
    Pair,
    Paradigm,
    _ids_and_offsets,
    _model_device,
    autocast_for,
    get_convention,
    max_length,
    unwrap,
)

# (token ids, masked positions, target ids): one sentence's masked queries
MaskedEncoding = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

# RoBERTa-style position ids start after the padding index: max_position_embeddings - (pad + 1) fit
_OFFSET_POSITION_MODELS = ("roberta", "xlm-roberta", "camembert", "data2vec-text")


def _special_ids(tokenizer, pad: int | None) -> set:
    return {pad, tokenizer.cls_token_id, tokenizer.sep_token_id}


def _texts_and_contexts(sentences, contexts):
    contexts = list(contexts) if contexts is not None else [""] * len(sentences)
    return list(sentences), contexts


def encode_2023(tokenizer, sentences: Sequence[str], contexts: Sequence[str] | None = None) -> list[MaskedEncoding]:
    """babylm-2023: the continuation's non-special tokens, masked at positions 1 .. n."""
    sentences, _ = _texts_and_contexts(sentences, contexts)  # the 2023 code drops the context
    special = _special_ids(tokenizer, tokenizer.pad_token_id)
    out = []
    for s, ids in zip(sentences, tokenizer([DELIMITER + s for s in sentences])["input_ids"]):
        targets = tuple(t for t in ids if t not in special)
        if not targets:
            raise ValueError("empty continuation after tokenization")
        if tuple(ids[1:len(targets) + 1]) != targets:
            raise UserError(f"--convention babylm-2023 on a masked LM: the 2023 pipeline masks positions "
                            f"1..n, assuming the tokenizer puts one CLS token first, and this one does not "
                            f"({s!r} is {list(ids)}); use --convention babylm-2024 or babylm-2025")
        out.append((tuple(ids), tuple(range(1, len(targets) + 1)), targets))
    return out


def encode_2024(tokenizer, sentences: Sequence[str], contexts: Sequence[str] | None = None) -> list[MaskedEncoding]:
    """babylm-2024: minicons's ``prime_text(prefix, " " + sentence)``, the prefix the context or
    the EOS token's text."""
    sentences, contexts = _texts_and_contexts(sentences, contexts)
    if tokenizer.eos_token is None and not all(contexts):
        raise UserError("--convention babylm-2024 on a masked LM: the 2024 pipeline puts the EOS token's "
                        "text before each sentence and this tokenizer has none; use --convention babylm-2025")
    pad = tokenizer.pad_token_id
    if tokenizer.pad_token is None:  # lm-eval's HFLM picks one (huggingface.py l. 298-304)
        pad = tokenizer.unk_token_id if tokenizer.unk_token else tokenizer.eos_token_id
    special = _special_ids(tokenizer, pad)
    prefixes = [c if c else tokenizer.eos_token for c in contexts]
    starts = [sum(t != pad and t != tokenizer.sep_token_id for t in ids)
              for ids in tokenizer(prefixes)["input_ids"]]
    texts = [p + DELIMITER + DELIMITER + s for p, s in zip(prefixes, sentences)]  # separator + lm-eval's " "
    out = []
    for start, ids in zip(starts, tokenizer(texts)["input_ids"]):
        positions = tuple(i for i, t in enumerate(ids) if i >= start and t not in special)
        if not positions:
            raise ValueError("empty continuation after tokenization")
        out.append((tuple(ids), positions, tuple(ids[i] for i in positions)))
    return out


def encode_2025(tokenizer, sentences: Sequence[str], contexts: Sequence[str] | None = None) -> list[MaskedEncoding]:
    """babylm-2025: every token whose span ends after the completion's start, masked in turn."""
    sentences, contexts = _texts_and_contexts(sentences, contexts)
    texts = [f"{c} {s}" if c else s for s, c in zip(sentences, contexts)]
    completion = [len(s) + 1 if c else len(s) for s, c in zip(sentences, contexts)]
    out = []
    for text, n_chars, (ids, offsets) in zip(texts, completion, _ids_and_offsets(tokenizer, texts)):
        start = len(text) - n_chars
        positions = tuple(i for i, (_, end) in enumerate(offsets) if end > start)
        out.append((tuple(ids), positions, tuple(ids[i] for i in positions)))
    return out


# convention -> (encoder, reduction of a sentence's log-probabilities (sum, count) -> score)
MASKED_CONVENTIONS: dict[str, tuple[Callable[..., list[MaskedEncoding]], Callable[[float, int], float]]] = {
    "babylm-2023": (encode_2023, lambda total, n: total / math.log(2)),  # bits
    "babylm-2024": (encode_2024, lambda total, n: total / n),  # minicons's mean
    "babylm-2025": (encode_2025, lambda total, n: total),
}


def encode_masked(tokenizer, sentences: Sequence[str], contexts: Sequence[str] | None = None,
                  convention: str = "babylm-2024") -> list[MaskedEncoding]:
    """The convention's masked queries of every sentence (after its context, if any)."""
    if tokenizer.mask_token_id is None:
        raise UserError("a masked LM is scored by masking its tokens and this tokenizer has no mask token; "
                        "save the model's tokenizer with its mask token (tokenizer.json) into the model folder")
    return MASKED_CONVENTIONS[get_convention(convention).name][0](tokenizer, sentences, contexts)


def encode_masked_pairs(tokenizer, pairs: Sequence[Pair], convention: str = "babylm-2024") -> list[MaskedEncoding]:
    """:func:`encode_masked` of every pair's good then bad sentence."""
    return encode_masked(tokenizer, [s for p in pairs for s in (p.good, p.bad)],
                         [p.context for p in pairs for _ in (0, 1)], convention)


def masked_context(model, tokenizer) -> int:
    """How many tokens a masked LM reads: its positions, less RoBERTa's padding offset."""
    n = max_length(model, tokenizer)
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) in _OFFSET_POSITION_MODELS and getattr(cfg, "pad_token_id", None) is not None:
        n -= cfg.pad_token_id + 1
    return n


def check_masked_context(tokenizer, paradigms: Sequence[Paradigm], context: int, model_name: str = "the model",
                         encoded: list[MaskedEncoding] | None = None,
                         convention: str = "babylm-2024") -> list[MaskedEncoding]:
    """Refuse, in one line, a suite holding a sentence whose tokens exceed the masked LM's
    ``context`` (no pipeline truncates a masked copy); returns the suite's encodings."""
    if encoded is None:
        encoded = encode_masked_pairs(tokenizer, [p for par in paradigms for p in par.pairs], convention)
    k = 0
    for par in paradigms:
        for pair in par.pairs:
            for which in ("good", "bad"):
                n = len(encoded[k][0])
                k += 1
                if n > context:
                    raise UserError(
                        f"{par.path}: paradigm {par.name}, pair {pair.pair_id}: the {which} sentence is "
                        f"{n} tokens, longer than the {context}-token context of {model_name}; "
                        "remove the pair from the suite or score a model with a longer context")
    return encoded


def _split_mlm_head(model):
    """(body, head) for a masked LM whose logits are head(body(...)[0]) position-wise, else None."""
    if type(model).__name__ == "RobertaForMaskedLM":
        return model.roberta, model.lm_head
    return None


def _masked_batch(seqs, queries, idx, mask_id, pad_id):
    """Input ids (one row per masked query of the sequences ``idx``), attention mask, masked
    positions, targets and the sequence each row belongs to, as numpy arrays."""
    rows = [(i, p, t) for i in idx for p, t in zip(*queries[i])]
    width = max(len(seqs[i]) for i in idx)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attn = np.zeros((len(rows), width), dtype=np.int64)
    for r, (i, p, _) in enumerate(rows):
        n = len(seqs[i])
        ids[r, :n] = seqs[i]
        attn[r, :n] = 1
        ids[r, p] = mask_id
    return (ids, attn, np.array([p for _, p, _ in rows]), np.array([t for _, _, t in rows]),
            np.array([i for i, _, _ in rows]))


def _masked_logits(model, split, ids, attn, pos, autocast):
    with autocast():
        if split is not None:
            body, head = split
            hidden = body(input_ids=ids, attention_mask=attn)[0]
            return head(hidden[torch.arange(len(pos), device=ids.device), pos]).float()
        logits = model(input_ids=ids, attention_mask=attn).logits
        return logits[torch.arange(len(pos), device=ids.device), pos].float()


def score_masked_pairs_at(
    model, tokenizer, pairs: Sequence[Pair], temperatures: Sequence[float] = (1.0,), batch_size: int = 64,
    progress: bool = False, encoded: list[MaskedEncoding] | None = None, convention: str = "babylm-2024",
    precision: str = "fp32",
) -> list[tuple[list[float], list[float]]]:
    """Each good and bad sentence's PLL score under ``convention``, per temperature.

    Identical encodings are scored once; sequences are sorted by length and each forward
    pass holds every masked copy of ``batch_size`` sentences, right-padded; for RoBERTa the
    output layer runs only at the masked positions. Eval mode under inference_mode, the
    model's mode restored."""
    model = unwrap(model)
    pairs = [p if isinstance(p, Pair) else Pair(str(i), *p) for i, p in enumerate(pairs)]
    if not pairs:
        return [([], []) for _ in temperatures]
    conv = get_convention(convention).name
    encoded = encode_masked_pairs(tokenizer, pairs, conv) if encoded is None else encoded
    unique: dict[MaskedEncoding, int] = {}
    slot_of = [unique.setdefault(e, len(unique)) for e in encoded]
    seqs = [e[0] for e in unique]
    queries = [(e[1], e[2]) for e in unique]
    counts = [len(q[0]) for q in queries]
    order = sorted((i for i in range(len(seqs)) if queries[i][0]), key=lambda i: -len(seqs[i]))
    device = _model_device(model)
    autocast = autocast_for(precision, device)
    split = _split_mlm_head(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # attention 0 there
    totals = torch.zeros(len(temperatures), len(seqs), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), batch_size), disable=not progress, desc="scoring", unit="batch"):
                arrays = _masked_batch(seqs, queries, order[start:start + batch_size], tokenizer.mask_token_id, pad_id)
                ids, attn, pos, targets, seq_of = (torch.from_numpy(a).to(device) for a in arrays)
                logits = _masked_logits(model, split, ids, attn, pos, autocast)
                for k, t in enumerate(temperatures):
                    scaled = logits if t == 1 else logits / t
                    logp = -torch.nn.functional.cross_entropy(scaled, targets, reduction="none")
                    totals[k].index_add_(0, seq_of, logp.double())
    finally:
        model.train(was_training)
    totals = totals.cpu()
    reduce = MASKED_CONVENTIONS[conv][1]
    out = []
    for k in range(len(temperatures)):
        scores = [reduce(float(totals[k, i]), counts[i]) if counts[i] else 0.0 for i in range(len(seqs))]
        flat = [scores[s] for s in slot_of]
        out.append((flat[0::2], flat[1::2]))
    return out


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "eval.pll", "python -m babydistill.eval.blimp --backend fast on a masked LM")
