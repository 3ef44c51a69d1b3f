"""The demo world's corpus: canonical word lists rendered in each BabyLM source's raw style,
with the artefacts the Baby Llama mrclean.py cleaner removes."""

from __future__ import annotations

import random
import re
from pathlib import Path


from .grammar import ADJS, FILLERS, Grammar, INTERJECTIONS, NAMES, NOUNS


TRAIN_SPLIT = "babylm_10M"
DEV_SPLIT = "babylm_dev"

# Share of the train words per source, after the real 2023 strict-small split (millions of words).
SOURCE_WEIGHTS = {
    "aochildes": 0.44, "bnc_spoken": 0.86, "cbt": 0.47, "children_stories": 0.34,
    "gutenberg": 0.99, "open_subtitles": 3.08, "qed": 1.04, "simple_wikipedia": 1.45,
    "switchboard": 0.12, "wikipedia": 0.99,
}
SOURCES = list(SOURCE_WEIGHTS)

# --------------------------------------------------------------------------------------------
# Rendering canonical word lists in each source's raw style
# --------------------------------------------------------------------------------------------

_CONTRACTIONS = re.compile(r"^(\w+)(n't|'s|'m|'re|'ll|'ve|'d)$")


def detok(words: list[str], cap: bool = True) -> str:
    """Ordinary written English: no space before punctuation, first letter capitalised."""
    s = " ".join(words)
    s = re.sub(r" ([.,!?;:])", r"\1", s)
    return s[0].upper() + s[1:] if cap and s else s


def ptb(words: list[str], cap: bool = True) -> str:
    """Penn-Treebank-style tokens as in the CBT files: ``does n't``, ``queen 's``, `` .``."""
    out = []
    for w in words:
        m = _CONTRACTIONS.match(w)
        if m and m.group(2) == "n't":
            stem = {"can": "ca", "won": "wo"}.get(w[:-3], w[:-3])
            out += [stem, "n't"]
        elif m:
            out += [m.group(1), m.group(2)]
        else:
            out.append(w)
    s = " ".join(out)
    return s[0].upper() + s[1:] if cap else s


def _uncap(words: list[str]) -> list[str]:
    """Lower-case a sentence's first word unless it is a name or I (it follows a filler)."""
    w = words[0]
    keep = w == "I" or w in NAMES["m"] or w in NAMES["f"]
    return [w if keep else w[0].lower() + w[1:]] + words[1:]


def spaced(words: list[str], rng: random.Random, extra: float = 0.1) -> str:
    """Transcript style with a space before punctuation and the odd doubled space."""
    out = []
    for w in words:
        out.append(w)
        if rng.random() < extra:
            out.append("")  # joins as a double space
    return " ".join(out)


def caps_ocr(sentence: str) -> str:
    """An all-caps subtitle line with the OCR confusion of I as l (QED)."""
    return sentence.upper().replace("I", "l")


class SourceWriter:
    """Renders blocks of one source until a word budget is used up."""

    def __init__(self, source: str, rng: random.Random, gram: Grammar, seen: set[str]):
        self.source, self.rng, self.g, self.seen = source, rng, gram, seen

    def sent(self, mix=None) -> list[str]:
        s = self.g.sentence(mix)
        self.seen.add(" ".join(s).lower())
        return s

    def block(self, first: bool) -> str:
        return getattr(self, "b_" + self.source)(first)

    # Each b_<source> returns text ending in "\n". ``first`` forces the source's artefacts.
    def b_aochildes(self, first: bool) -> str:
        lines = []
        for _ in range(self.rng.randint(8, 20)):
            if self.rng.random() < 0.15:
                w = self.g.pick(INTERJECTIONS).split() + [self.g.pick([".", "!", "?"])]
            else:
                w = self.sent({"decl": 0.45, "yn": 0.2, "wh": 0.2, "imp": 0.15})
            lines.append(" ".join(w).lower())  # real aochildes: all lower case, " ." spacing
        if first:
            lines[0] = "look  at the dog !"
        return "\n".join(lines) + "\n"

    def b_bnc_spoken(self, first: bool) -> str:
        lines = []
        for _ in range(self.rng.randint(6, 16)):
            w = self.sent({"decl": 0.6, "yn": 0.15, "wh": 0.15, "conj": 0.1})
            w[0] = w[0][0].upper() + w[0][1:]
            if self.rng.random() < 0.3:
                w = [self.g.pick(["Erm", "Er", "Yeah", "Mm", "Oh"]), ","] + _uncap(w)
            lines.append(spaced(w, self.rng))
        if first:
            lines[0] = "Yeah  , I know ."
        return "\n".join(lines) + "\n\n"  # a blank line between conversations

    def b_cbt(self, first: bool) -> str:
        lines = []
        if first or self.rng.random() < 0.05:
            t = self.g.pick(NOUNS).sg.capitalize()
            lines.append(f"_BOOK_TITLE_ : Demo_Author___The_{t}_Book.txt.out")
        for i in range(self.rng.randint(6, 14)):
            r = self.rng.random()
            if r < 0.25 or (first and i == 0):
                q, tag = self.g.said()
                self.seen.add(" ".join(q).lower())
                lines.append("` " + ptb(q[:-1] + ([","] if q[-1] == "." else [q[-1]])) +
                             " ' " + ptb(tag + ["."], cap=False))
            elif r < 0.3 or (first and i == 1):
                a, b = self.sent({"decl": 1.0}), self.sent({"decl": 1.0})
                lines.append(ptb(a[:-1] + ["-LRB-"] + b[:-1] + ["-RRB-", "."]))
            elif r < 0.35 or (first and i == 2):  # a possessive: "Mary 's hat"
                owner = self.g.pick(NAMES[self.g.pick("mf")])
                lines.append(ptb([owner + "'s", self.g.noun("thing").sg, "was",
                                  self.g.pick(ADJS), "."]))
            elif r < 0.4:
                q = self.sent({"decl": 1.0})
                lines.append("`` " + ptb(q) + " ''")
            else:
                lines.append(ptb(self.sent({"decl": 0.7, "conj": 0.3})))
        return "\n".join(lines) + "\n"

    def _prose(self, n_sents: int, quotes: tuple[str, str]) -> str:
        out = []
        for _ in range(n_sents):
            if self.rng.random() < 0.2:
                q, tag = self.g.said()
                self.seen.add(" ".join(q).lower())
                end = "," if q[-1] == "." else q[-1]
                said = detok(tag + ["."], cap=False)
                out.append(f"{quotes[0]}{detok(q[:-1])}{end}{quotes[1]} {said}")
            else:
                out.append(detok(self.sent({"decl": 0.8, "conj": 0.2})))
        return " ".join(out)

    def b_children_stories(self, first: bool) -> str:
        title = "The " + " and the ".join(n.sg.capitalize() for n in
                                           self.rng.sample(NOUNS, 2)) + " "
        paras = [self._prose(self.rng.randint(3, 8), ("\u201c", "\u201d"))
                 for _ in range(self.rng.randint(2, 5))]
        if first or self.rng.random() < 0.3:
            n = self.g.pick(NOUNS).sg
            paras[0] = f"Once upon a time there was {self.g.article('a', n)} {n}. " + paras[0]
        return "\n" + title + "\n\n" + "\n".join(paras) + "\n"

    _roman = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]

    def b_gutenberg(self, first: bool) -> str:
        k = self.rng.randrange(len(self._roman))
        out = [f"CHAPTER {self._roman[k]}.", ""]
        for i in range(self.rng.randint(3, 7)):
            out += [self._prose(self.rng.randint(2, 6), ('"', '"')), ""]
            if first and i == 0 or self.rng.random() < 0.15:
                np = self.g.det_np(kind="animate", det="the", adj=0.5)
                out += [f"[Illustration: {detok(np.words + ['.'])}]", ""]
            if first and i == 0 or self.rng.random() < 0.1:  # numbered caption / list item
                np = self.g.det_np(det="the")
                out += [f"{self.rng.randint(1, 40)}. {detok(np.words + self.g.pp() + ['.'])}", ""]
        return "\n".join(out) + "\n"

    def b_open_subtitles(self, first: bool) -> str:
        out = []
        if first or self.rng.random() < 0.3:
            out.append(self.g.pick(["Subtitles by DemoSubs", "Subtitle sync: the demo team",
                                    "English subtitles by Lily", "SUBTITLES: Demo Studio"]))
        for _ in range(self.rng.randint(10, 30)):
            r = self.rng.random()
            if r < 0.05:
                out.append(self.g.pick(["(LAUGHS)", "[door closes]", "(SIGHS)", "[music playing]",
                                        "(crying)"]))
            elif r < 0.25:
                out.append("- " + detok(self.sent()) + " - " + detok(self.sent()))
            else:
                out.append(detok(self.sent({"decl": 0.4, "yn": 0.2, "wh": 0.2, "imp": 0.2})))
        if first or self.rng.random() < 0.3:
            out.append("Downloaded from www.demo-subtitles.org")
        return "\n".join(out) + "\n"

    def b_qed(self, first: bool) -> str:
        out = []
        for i in range(self.rng.randint(8, 20)):
            r = self.rng.random()
            if r < 0.06 or (first and i == 1):
                # the cue shares its line: mrclean's qed fix divides by zero on a bare "(Laughter)"
                cue, text = self.g.pick(["(Laughter)", "(Applause)", "(Music)"]), detok(self.sent())
                out.append(f"{cue} {text}" if self.rng.random() < 0.5 else f"{text} {cue}")
            elif r < 0.2 or (first and i == 0):
                out.append(caps_ocr(detok(self.sent({"decl": 0.7, "yn": 0.3}))))
            elif r < 0.35:  # a sentence broken over two subtitle lines
                w = self.sent({"decl": 1.0})
                cut = max(1, len(w) // 2)
                out += [detok(w[:cut]), detok(w[cut:], cap=False)]
            else:
                out.append(detok(self.sent({"decl": 0.6, "yn": 0.2, "wh": 0.2})))
        return "\n".join(out) + "\n"

    def _article_title(self) -> str:
        n = self.g.pick(NOUNS)
        return n.sg.capitalize() if self.rng.random() < 0.5 else \
            f"{self.g.pick(NAMES[self.g.pick('mf')])} the {n.sg.capitalize()}"

    def _wiki_para(self, lo: int, hi: int) -> str:
        mix = {"decl": 0.85, "conj": 0.15}
        return " ".join(detok(self.sent(mix)) for _ in range(self.rng.randint(lo, hi)))

    def b_simple_wikipedia(self, first: bool) -> str:
        n = self.g.pick(NOUNS)
        head = [self._article_title(), f"{n.pl.capitalize()} are {self.g.pick(ADJS)}."]
        paras = [self._wiki_para(2, 6) for _ in range(self.rng.randint(1, 3))]
        return "\n".join(head + paras) + "\n\n"  # articles end in a blank line

    def b_wikipedia(self, first: bool) -> str:
        out = [f" = {self._article_title()} = ", ""]
        for i in range(self.rng.randint(2, 4)):
            if i or first:
                heading = self.g.pick(["History", "Life", "Food", "Home", "Games", "Family",
                                       "Names", "Habits"])
                out += [f"= = = {heading} = = =", ""] if self.rng.random() < 0.7 or first \
                    else [f" = = {heading} = = ", ""]
            para = self._wiki_para(3, 7)
            if self.rng.random() < 0.1 or (first and i == 0):
                para = para.replace(".", " <br />", 1)
            out += [" " + para + " ", ""]
        return "\n".join(out) + "\n"

    def b_switchboard(self, first: bool) -> str:
        out = []
        speaker = "A"
        for i in range(self.rng.randint(8, 20)):
            w = self.sent({"decl": 0.7, "yn": 0.1, "wh": 0.1, "conj": 0.1})
            w[0] = w[0][0].upper() + w[0][1:]
            if self.rng.random() < 0.4:
                f = self.g.pick(FILLERS)
                w = [f[0].upper() + f[1:], ","] + _uncap(w)
            if self.rng.random() < 0.15:  # restart: "I, I think"
                w = [w[0], ","] + w
            text = detok(w)
            if self.rng.random() < 0.15:  # a turn cut off mid-sentence
                text = text[:-1]
            if self.rng.random() < 0.1 or (first and i == 0):
                text = text.replace(" ", "  ", 1)
            out.append(f"{speaker}: {text}")
            speaker = "B" if speaker == "A" else "A"
        return "\n".join(out) + "\n"


def write_source(path: Path, source: str, words: int, seed: int, split: str,
                 seen: set[str]) -> int:
    """Write one source file of about ``words`` whitespace words; returns the count."""
    rng = random.Random(f"{seed}:corpus:{split}:{source}")
    narrative = source in ("cbt", "children_stories", "gutenberg")
    w = SourceWriter(source, rng, Grammar(rng, narrative), seen)
    parts, n = [], 0
    if source == "wikipedia":
        parts.append("\n")  # the reference cleaner drops the first character of the file
    first = True
    while n < words:
        b = w.block(first)
        k = len(b.split())
        if not first and n + k > words:  # the last block: only the lines the budget needs
            lines = b.splitlines(keepends=True)
            b = ""
            for line in lines:
                if n >= words:
                    break
                b += line
                n += len(line.split())
            parts.append(b)
            break
        first = False
        parts.append(b)
        n += k
    path.write_text("".join(parts), encoding="utf-8")
    return n
