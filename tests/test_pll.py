"""Zero-shot scoring of masked LMs (src/babydistill/eval/pll.py): each convention pair for pair
against its reference on tiny random RoBERTa models built here, batching, and refusals.

References: minicons's ``MaskedLMScorer.conditional_score`` called as the 2024 pipeline calls
it (a test dependency), and plain loops written out here, one masked forward per token, as
the 2023 and 2025 pipelines compute.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from babydistill.common import UserError
from babydistill.eval import blimp as eval_blimp
from babydistill.eval.pll import encode_masked
from babydistill.eval.scorer import Pair, is_masked_lm, load_suite, score_pairs, score_suite

torch.set_num_threads(1)

TRAIN_TEXT = [
    "Who should Derek hug after shocking Richard?", "The cats are sleeping on the mat.",
    "Every dog that barks has eaten the bones.", "She doesn't have a dog, so she has no mammal.",
] * 20

# Held out from the tokenizer's training text: unseen merges, a long and a one-word sentence.
PAIRS = [
    Pair("0", "The cats are sleeping.", "The cats is sleeping."),
    Pair("1", "Who should Derek hug?", "Who should Derek hugs?"),
    Pair("2", "Every dog that barks has eaten the bones on the mat after shocking Richard.",
         "Every dog that bark have eaten bones."),
    Pair("3", "Dogs.", "Dog."),
    Pair("4", "A zebra quietly yawned at noon.", "A zebra quiet yawned at noon."),
    Pair("5", "Sarah has no mammal.", "Sarah have no mammal."),
    Pair("6", "she slept", "The cats are sleeping."),  # the same sentence as pair 0's good one
    Pair("7", "the mat.", "mat the.", context="Derek sat on"),  # EWoK-style: a context
]


def make_tiny_mlm(path: Path, seed: int = 0, roberta_specials: bool = True) -> Path:
    """A random tiny RobertaForMaskedLM and a byte-level BPE tokenizer with a mask token,
    saved to ``path``. ``roberta_specials``: the tokenizer adds ``<s> ... </s>`` as RoBERTa's
    does (CLS/SEP set); else no special tokens are added (the project's tokenizer style)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForMaskedLM

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TRAIN_TEXT, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    names = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    if roberta_specials:
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                          add_prefix_space=False)
        names.update(cls_token="<s>", sep_token="</s>")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **names)
    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=66, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, type_vocab_size=1)
    model = RobertaForMaskedLM(cfg)
    with torch.no_grad():  # a random head ties its decoder to the embeddings: spread the scores out
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(4.0)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory) -> Path:
    return make_tiny_mlm(tmp_path_factory.mktemp("tiny_mlm"))


@pytest.fixture(scope="module")
def plain_mlm(tmp_path_factory) -> Path:
    """Another seed, and a tokenizer that adds no special tokens."""
    return make_tiny_mlm(tmp_path_factory.mktemp("plain_mlm"), seed=3, roberta_specials=False)


def load(path: Path):
    model, tok = eval_blimp.load_model(path)
    return model.cpu().eval(), tok


def masked_logprob(model, ids: list[int], position: int, mask_id: int) -> torch.Tensor:
    """log_softmax of the logits at ``position`` of ``ids`` with that token masked, unpadded."""
    x = torch.tensor([ids])
    x[0, position] = mask_id
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=x).logits[0, position].float(), dim=-1)


def reference_2025(model, tok, sentence: str, context: str = "") -> float:
    """The 2025 pipeline's mlm backend as a plain loop: the tokenizer's call with offsets,
    every token ending after the completion's start masked in turn, the sum."""
    text = f"{context} {sentence}" if context else sentence
    start = len(text) - (len(sentence) + 1 if context else len(sentence))
    enc = tok(text, return_offsets_mapping=True)
    return sum(masked_logprob(model, enc["input_ids"], i, tok.mask_token_id)[t].item()
               for i, (t, (_, end)) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])) if end > start)


def reference_2023(model, tok, sentence: str) -> float:
    """The 2023 pipeline's hf-mlm: " " + sentence with special tokens, positions 1..n, bits."""
    ids = tok(" " + sentence)["input_ids"]
    eff = [t for t in ids if t not in (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id)]
    return sum(masked_logprob(model, ids, 1 + j, tok.mask_token_id)[t].item() for j, t in enumerate(eff)) / math.log(2)


def test_masked_lm_is_told_from_causal(tiny_mlm, tmp_path):
    from transformers import AutoConfig, LlamaConfig, RobertaConfig

    assert is_masked_lm(AutoConfig.from_pretrained(tiny_mlm))
    assert is_masked_lm(RobertaConfig())  # no architectures: RoBERTa is a masked LM unless a decoder
    assert not is_masked_lm(RobertaConfig(is_decoder=True))
    assert not is_masked_lm(LlamaConfig())
    model, _ = load(tiny_mlm)
    assert type(model).__name__ == "RobertaForMaskedLM" and is_masked_lm(model)


def test_babylm_2024_matches_minicons_pair_for_pair(tiny_mlm):
    """conditional_score(EOS text or context, " " + sentence), minicons's default mean,
    exactly as the 2024 pipeline's lm-eval fork calls it."""
    minicons_scorer = pytest.importorskip("minicons.scorer")
    model, tok = load(tiny_mlm)
    ours_good, ours_bad = score_pairs(model, tok, PAIRS, batch_size=3, convention="babylm-2024")
    if not hasattr(tok, "batch_encode_plus"):  # minicons calls it; transformers 5 has only __call__
        tok.batch_encode_plus = tok.__call__
    scorer = minicons_scorer.MaskedLMScorer(model, "cpu", tokenizer=tok)
    sentences = [s for p in PAIRS for s in (p.good, p.bad)]
    contexts = [p.context or tok.eos_token for p in PAIRS for _ in (0, 1)]
    ref = scorer.conditional_score(contexts, [" " + s for s in sentences])
    ours = [s for g, b in zip(ours_good, ours_bad) for s in (g, b)]
    assert ours == pytest.approx(ref, abs=1e-5)
    decisions = [g >= b for g, b in zip(ours_good, ours_bad)]
    assert decisions == [g >= b for g, b in zip(ref[0::2], ref[1::2])]
    assert len(set(decisions)) == 2  # the check means something: both outcomes occur


def test_babylm_2025_and_2023_match_plain_loops(tiny_mlm, plain_mlm):
    for path in (tiny_mlm, plain_mlm):
        model, tok = load(path)
        good, bad = score_pairs(model, tok, PAIRS, batch_size=2, convention="babylm-2025")
        ref = [reference_2025(model, tok, s, p.context) for p in PAIRS for s in (p.good, p.bad)]
        assert [s for g, b in zip(good, bad) for s in (g, b)] == pytest.approx(ref, abs=1e-5)
    model, tok = load(tiny_mlm)
    good, bad = score_pairs(model, tok, PAIRS, batch_size=4, convention="babylm-2023")
    ref = [reference_2023(model, tok, s) for p in PAIRS for s in (p.good, p.bad)]  # the context is dropped
    assert [s for g, b in zip(good, bad) for s in (g, b)] == pytest.approx(ref, abs=1e-5)


def test_babylm_2023_refuses_a_tokenizer_without_cls_first(plain_mlm):
    model, tok = load(plain_mlm)
    with pytest.raises(UserError, match="babylm-2023 on a masked LM.*CLS"):
        score_pairs(model, tok, PAIRS[:1], convention="babylm-2023")


@pytest.mark.parametrize("convention", ["babylm-2024", "babylm-2025"])
def test_batching_does_not_change_scores(tiny_mlm, convention):
    model, tok = load(tiny_mlm)
    one = score_pairs(model, tok, PAIRS, batch_size=1, convention=convention)
    many = score_pairs(model, tok, PAIRS, batch_size=16, convention=convention)
    assert one[0] == pytest.approx(many[0], abs=1e-5) and one[1] == pytest.approx(many[1], abs=1e-5)


def test_2025_sums_where_2024_averages(tiny_mlm):
    """On a pair of unequal lengths the two conventions differ as sum and mean: 2025's score
    of a BLiMP sentence is the sum of its tokens' masked log-probabilities, 2024's the mean
    over its tokens (after the EOS text and two spaces, so one more scored token: the lone
    space)."""
    model, tok = load(tiny_mlm)
    pair = PAIRS[2]
    assert len(tok(pair.good)["input_ids"]) != len(tok(pair.bad)["input_ids"])
    (g25,), (b25,) = score_pairs(model, tok, [pair], convention="babylm-2025")
    (g24,), (b24,) = score_pairs(model, tok, [pair], convention="babylm-2024")
    for sentence, s25, s24 in ((pair.good, g25, g24), (pair.bad, b25, b24)):
        (ids, pos, targets), = encode_masked(tok, [sentence], convention="babylm-2024")
        per_token = [masked_logprob(model, list(ids), p, tok.mask_token_id)[t].item() for p, t in zip(pos, targets)]
        assert s24 == pytest.approx(sum(per_token) / len(per_token), abs=1e-5)
        assert tok.convert_ids_to_tokens(targets[0]) == "Ġ"  # the second space, scored on its own
        assert s25 == pytest.approx(reference_2025(model, tok, sentence), abs=1e-5)
    # the sum scales with length, the mean does not: the long good sentence loses under 2025
    assert g25 < b25


def test_temperature_scan_and_summary(tiny_mlm, tmp_path):
    model, tok = load(tiny_mlm)
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "agr.jsonl").write_text("\n".join(json.dumps({"sentence_good": p.good, "sentence_bad": p.bad})
                                               for p in PAIRS[:6]) + "\n")
    summary, rows = score_suite(model, tok, load_suite(suite), batch_size=4, convention="babylm-2025",
                                temperatures=[0.5, 1.0, 2.0])
    assert [t["temperature"] for t in summary["temperature_scan"]] == [0.5, 1.0, 2.0]
    good, bad = score_pairs(model, tok, PAIRS[:6], convention="babylm-2025")
    if summary["temperature"] == 1.0:
        assert [r[2] for r in rows] == pytest.approx(good, abs=1e-6)
    plain, _ = score_suite(model, tok, load_suite(suite), convention="babylm-2025")
    assert plain["accuracy"] == next(t["accuracy"] for t in summary["temperature_scan"] if t["temperature"] == 1.0)


def write_suite(tmp_path: Path, pairs) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    (suite / "agr.jsonl").write_text("\n".join(json.dumps({"sentence_good": g, "sentence_bad": b})
                                               for g, b in pairs) + "\n")
    return suite


def test_eval_blimp_fast_on_a_masked_lm(tiny_mlm, tmp_path):
    suite = write_suite(tmp_path, [(p.good, p.bad) for p in PAIRS[:6]])
    result, rows = eval_blimp.evaluate(tiny_mlm, suite, "demo", backend="fast", convention="babylm-2024")
    model, tok = load(tiny_mlm)
    good, _ = score_pairs(model, tok, PAIRS[:6], convention="babylm-2024")
    assert [r[2] for r in rows] == pytest.approx(good, abs=1e-6)
    assert result["convention"] == "babylm-2024" and result["n_pairs"] == 6


def test_lmeval_backend_refuses_a_masked_lm(tiny_mlm, tmp_path):
    suite = write_suite(tmp_path, [(p.good, p.bad) for p in PAIRS[:2]])
    with pytest.raises(UserError, match=r"masked LM \(RobertaForMaskedLM\).*use --backend fast"):
        eval_blimp.evaluate(tiny_mlm, suite, "demo", backend="lmeval")


def test_too_long_a_sentence_is_refused(tiny_mlm, tmp_path):
    long = " ".join(["cats"] * 80)  # the fixture reads 66 - 2 = 64 positions
    suite = write_suite(tmp_path, [(long, "The cats.")])
    with pytest.raises(UserError, match=r"agr, pair 0: the good sentence is \d+ tokens, longer than the 64-token"):
        eval_blimp.evaluate(tiny_mlm, suite, "demo", backend="fast", convention="babylm-2025")


def test_a_tokenizer_without_a_mask_token_is_refused(tiny_mlm):
    model, tok = load(tiny_mlm)
    tok.mask_token = None
    with pytest.raises(UserError, match="no mask token"):
        score_pairs(model, tok, PAIRS[:1], convention="babylm-2025")


def test_bf16_stays_close_and_restores_the_mode(tiny_mlm):
    model, tok = load(tiny_mlm)
    model.train()
    fp32 = score_pairs(model, tok, PAIRS, convention="babylm-2025")
    bf16 = score_pairs(model, tok, PAIRS, convention="babylm-2025", precision="bf16")
    assert model.training  # scoring ran in eval mode and gave the mode back
    assert fp32[0] == pytest.approx(bf16[0], rel=0.05) and fp32[0] != bf16[0]
