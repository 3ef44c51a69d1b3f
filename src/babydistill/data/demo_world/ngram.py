"""A count-based trigram model: checks that the demo suite is learnable from the corpus."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Iterable


from .sources import TRAIN_SPLIT


# --------------------------------------------------------------------------------------------
# A count-based trigram model: checks that the suite is learnable from the corpus, no net needed
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|n't|[.!?,]")


def tokens(text: str) -> list[str]:
    """Lower-cased words and sentence punctuation; ``does n't`` and ``doesn't`` agree."""
    text = re.sub(r" (n't|'s|'m|'re|'ll|'ve|'d)\b", r"\1", text.lower())
    return _TOKEN.findall(text)


class TrigramLM:
    """Interpolated add-one trigram model over the tokens above."""

    def __init__(self, texts: Iterable[str], weights=(0.6, 0.3, 0.1)):
        self.c3, self.c2, self.c1 = Counter(), Counter(), Counter()
        self.h2, self.h1 = Counter(), Counter()
        for text in texts:
            for line in text.splitlines():
                toks = ["<s>", "<s>"]
                for t in tokens(line) + ["</s>"]:
                    self.c1[t] += 1
                    self.c2[toks[-1], t] += 1
                    self.c3[toks[-2], toks[-1], t] += 1
                    self.h1[toks[-1]] += 1
                    self.h2[toks[-2], toks[-1]] += 1
                    toks.append(t)
                    if t in ".!?":
                        toks = ["<s>", "<s>"]
        self.n = sum(self.c1.values())
        self.v = len(self.c1) + 1
        self.w = weights

    def logprob(self, sentence: str) -> float:
        toks, lp = ["<s>", "<s>"], 0.0
        for t in tokens(sentence) + ["</s>"]:
            a, b = toks[-2], toks[-1]
            p3 = self.c3[a, b, t] / self.h2[a, b] if self.h2[a, b] else 0.0
            p2 = self.c2[b, t] / self.h1[b] if self.h1[b] else 0.0
            p1 = (self.c1[t] + 1) / (self.n + self.v)
            lp += math.log(self.w[0] * p3 + self.w[1] * p2 + self.w[2] * p1)
            toks.append(t)
        return lp


def ngram_blimp_accuracy(world: str | Path) -> dict[str, float]:
    """Per-paradigm share of pairs where a trigram model of the train corpus prefers the good
    sentence (ties count half)."""
    world = Path(world)
    lm = TrigramLM(f.read_text(encoding="utf-8")
                   for f in sorted((world / "corpus" / TRAIN_SPLIT).glob("*.train")))
    acc = {}
    for f in sorted((world / "blimp").glob("*.jsonl")):
        score = 0.0
        recs = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
        for r in recs:
            g, b = lm.logprob(r["sentence_good"]), lm.logprob(r["sentence_bad"])
            score += 1.0 if g > b else 0.5 if g == b else 0.0
        acc[f.stem] = score / max(1, len(recs))
    return acc
