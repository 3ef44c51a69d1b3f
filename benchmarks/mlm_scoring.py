"""Benchmark: our batched masked-LM (PLL) scorer vs minicons, same model, same pairs.

minicons is called as the BabyLM 2024 pipeline calls it (babylm/evaluation-pipeline-2024@d680c287,
lm_eval/models/huggingface.py ``AutoMaskedLM.loglikelihood``): ``MaskedLMScorer.conditional_score``
on chunks of ``--batch-size`` requests, the context the EOS token's text, the continuation
``" " + sentence``, the default mean. Ours: :func:`babydistill.eval.scorer.score_pairs` under
``babylm-2024`` (and, timed too, ``babylm-2025``). Prints pairs/s of each, the speed-up,
identical decisions and the largest score difference; ``--json OUT`` writes them.

Usage::

    python benchmarks/mlm_scoring.py [--model DIR] [--suite-dir ../shared/data/blimp]
        [--paradigms adjunct_island,...] [--limit 50] [--batch-size 64] [--hidden 128 --layers 4]
        [--vocab 2000 --train-text FILE ...] [--threads 2] [--json OUT]

Without ``--model`` a random RoBERTa (``--hidden``, ``--layers``) is built with a byte-level
BPE tokenizer (``<s>``, ``<pad>``, ``</s>``, ``<unk>``, ``<mask>``, RoBERTa's post-processor)
trained on the suite's sentences, in a temporary folder. minicons must be installed
(``pip install minicons``; the ``test`` extra has it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from babydistill.common import cli, write_json
from babydistill.eval.blimp import load_model
from babydistill.eval.scorer import load_suite, score_pairs


def random_roberta(out: Path, sentences: list[str], hidden: int, layers: int, vocab: int = 2000,
                   seed: int = 0) -> Path:
    """A random RobertaForMaskedLM and a RoBERTa-style tokenizer trained on ``sentences``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForMaskedLM

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(sentences, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>",
                                   sep_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=len(fast), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                        max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    RobertaForMaskedLM(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def minicons_scores(model, tok, sentences: list[str], batch_size: int) -> list[float]:
    from minicons.scorer import MaskedLMScorer

    if not hasattr(tok, "batch_encode_plus"):  # minicons calls it; transformers 5 has only __call__
        tok.batch_encode_plus = tok.__call__
    scorer = MaskedLMScorer(model, str(next(model.parameters()).device), tokenizer=tok)
    out = []
    for i in range(0, len(sentences), batch_size):
        chunk = sentences[i:i + batch_size]
        out += scorer.conditional_score([tok.eos_token] * len(chunk), [" " + s for s in chunk])
    return out


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="a saved masked LM (default: a random RoBERTa)")
    ap.add_argument("--suite-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "blimp"))
    ap.add_argument("--paradigms", default="adjunct_island,anaphor_gender_agreement,wh_vs_that_with_gap")
    ap.add_argument("--limit", type=int, default=50, help="first N pairs per paradigm")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=2000, help="the random model's tokenizer size")
    ap.add_argument("--train-text", nargs="*", default=[],
                    help="text files the random model's tokenizer also learns from (a vocabulary "
                         "larger than the suite's sentences give, e.g. 16000 as the project's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = set(args.paradigms.split(","))
    paradigms = [p for p in load_suite(args.suite_dir, args.limit) if p.name in names]
    pairs = [p for par in paradigms for p in par.pairs]
    with tempfile.TemporaryDirectory() as tmp:
        text = [s for p in pairs for s in (p.good, p.bad)]
        text += [line for f in args.train_text for line in Path(f).read_text(encoding="utf-8").splitlines()]
        model_dir = args.model or random_roberta(Path(tmp), text, args.hidden, args.layers, args.vocab)
        model, tok = load_model(model_dir)
        (good, bad), ours_s = timed(lambda: score_pairs(model, tok, pairs, args.batch_size, convention="babylm-2024"))
        _, ours25_s = timed(lambda: score_pairs(model, tok, pairs, args.batch_size, convention="babylm-2025"))
        ref, ref_s = timed(lambda: minicons_scores(model, tok, [s for p in pairs for s in (p.good, p.bad)],
                                                   args.batch_size))
    ours = [s for g, b in zip(good, bad) for s in (g, b)]
    same = sum((g >= b) == (rg >= rb) for g, b, rg, rb in zip(good, bad, ref[0::2], ref[1::2]))
    result = {"pairs": len(pairs), "minicons_pairs_per_s": len(pairs) / ref_s,
              "fast_babylm2024_pairs_per_s": len(pairs) / ours_s, "fast_babylm2025_pairs_per_s": len(pairs) / ours25_s,
              "speedup_babylm2024": ref_s / ours_s, "identical_decisions": same,
              "max_abs_diff": max(abs(a - b) for a, b in zip(ours, ref))}
    for k, v in result.items():
        print(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
