"""The demo world: a seeded, self-contained stand-in for the BabyLM data and its evaluations.

Owns everything ``make demo`` needs instead of downloads:

* a small probabilistic grammar of child-directed English over a real lexicon (irregular
  plurals, irregular past forms and participles, agreement, reflexives, questions, relative
  clauses); agreement is always respected, so a model that learns the corpus prefers the
  grammatical member of each minimal pair;
* ``DIR/corpus/{babylm_10M,babylm_dev}/<source>.{train,dev}`` for the ten BabyLM 2023 sources,
  each rendered in that source's raw format and carrying the artefacts the Baby Llama
  ``mrclean.py`` cleaner removes (so the cleaners have real work);
* ``DIR/blimp/<paradigm>.jsonl``: BLiMP-format minimal pairs (same keys as the real paradigm of
  the same UID), made fresh from a separate random stream;
* ``DIR/glue/cola.{train,valid}.jsonl``: a CoLA-style acceptability task (BabyLM glue_filtered
  layout) whose unacceptable items are the same one-word violations;
* ``DIR/SOURCE.md``.

Same seed -> byte-identical output. ``python -m babydistill.demo_world --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from babydistill.common import UserError, atomic_path, cli, setup_logging

log = logging.getLogger("babydistill.demo_world")

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
# Lexicon
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Noun:
    sg: str
    pl: str
    kind: str            # human | animal | food | thing
    gender: str = ""     # m | f for gendered humans, "" otherwise
    irregular: bool = False

    def form(self, num: str) -> str:
        return self.sg if num == "sg" else self.pl


def _nouns() -> list[Noun]:
    out = []
    for spec, kind in [
        ("boy:m girl:f king:m queen:f mother:f father:m sister:f brother:m prince:m "
         "princess/princesses:f grandma:f grandpa:m", "human"),
        ("man/men:m woman/women:f", "human-irr"),
        ("baby/babies teacher friend doctor farmer", "human"),
        ("child/children person/people", "human-irr"),
        ("dog cat bird fox/foxes bear duck horse cow frog bunny/bunnies pig", "animal"),
        ("mouse/mice goose/geese ox/oxen wolf/wolves", "animal-irr"),
        ("apple cookie cake banana egg sandwich/sandwiches cherry/cherries potato/potatoes "
         "carrot pie", "food"),
        ("ball book cup box/boxes hat shoe toy block car truck spoon key bus/buses "
         "brush/brushes dress/dresses letter picture bottle chair window door", "thing"),
        ("knife/knives leaf/leaves foot/feet tooth/teeth", "thing-irr"),
    ]:
        kind, _, irr = kind.partition("-")
        for item in spec.split():
            word, _, gender = item.partition(":")
            sg, _, pl = word.partition("/")
            out.append(Noun(sg, pl or sg + "s", kind, gender, irr == "irr"))
    return out


NOUNS = _nouns()
NAMES = {"m": ["John", "Tom", "Peter", "Max", "Ben", "Jack", "Sam", "Leo"],
         "f": ["Mary", "Anna", "Lucy", "Emma", "Sue", "Lily", "Kate", "Rose"]}
PLACES = ["table", "box", "house", "garden", "park", "bed", "kitchen", "tree", "car", "bath",
          "school", "forest", "river", "hill"]
PREPS = ["in", "on", "under", "near", "behind", "into"]
ADJS = ["big", "little", "red", "happy", "small", "old", "new", "nice", "funny", "good",
        "blue", "hot", "sad", "tall", "pretty", "green", "hungry", "sleepy"]
# Irregular participles used as adjectives ("the broken cup"), with the past form a bad pair uses.
PART_ADJS = {"broken": "broke", "hidden": "hid", "frozen": "froze", "stolen": "stole",
             "fallen": "fell", "forgotten": "forgot", "torn": "tore", "shaken": "shook"}
PART_ADJ_KINDS = {"broken": "thing", "hidden": "thing", "frozen": "food", "stolen": "thing",
                  "fallen": "thing", "forgotten": "thing", "torn": "thing", "shaken": "thing"}
ADVS = ["today", "again", "now", "too", "every day", "all day", "very fast", "at night"]

SG_DETS = ["the", "a", "this", "that", "every", "my", "your", "our"]
PL_DETS = ["the", "these", "those", "some", "two", "three", "many", "my", "your", "our"]
DEMS = {"sg": ["this", "that"], "pl": ["these", "those"]}


@dataclass(frozen=True)
class Verb:
    base: str
    past: str
    pp: str
    obj: str = ""        # object kind for transitives: any | animate | food | thing ("" intrans.)
    refl: bool = False   # can take a reflexive object

    @property
    def s3(self) -> str:
        b = self.base
        if b == "have":
            return "has"
        if re.search(r"(s|sh|ch|x|z|o)$", b):
            return b + "es"
        if re.search(r"[^aeiou]y$", b):
            return b[:-1] + "ies"
        return b + "s"

    @property
    def ing(self) -> str:
        b = self.base
        if b in _DOUBLE:
            return b + b[-1] + "ing"
        if b.endswith("e") and not b.endswith("ee"):
            return b[:-1] + "ing"
        return b + "ing"


_DOUBLE = {"run", "swim", "sit", "hug", "get", "cut", "stop", "dig", "forget"}


def _verbs() -> tuple[list[Verb], list[Verb]]:
    trans = []
    for line in [
        "eat ate eaten food", "see saw seen any r", "take took taken thing", "write wrote "
        "written thing", "break broke broken thing", "hide hid hidden any r",
        "bite bit bitten food", "draw drew drawn any r", "throw threw thrown thing",
        "steal stole stolen thing", "forget forgot forgotten any", "tear tore torn thing",
        "freeze froze frozen food", "shake shook shaken thing", "wake woke woken animate",
        "find found found any", "hold held held any", "like liked liked any r",
        "want wanted wanted thing", "help helped helped animate r", "hug hugged hugged animate r",
        "push pushed pushed any", "wash washed washed any r", "kick kicked kicked thing",
        "catch caught caught any", "make made made food", "carry carried carried any",
        "hurt hurt hurt animate r", "dry dried dried any r", "cut cut cut food",
        "choose chose chosen any", "drive drove driven thing", "get got gotten thing",
    ]:
        base, past, pp, obj, *r = line.split()
        trans.append(Verb(base, past, pp, obj, bool(r)))
    intrans = []
    for line in [
        "run ran run", "sleep slept slept", "sing sang sung", "swim swam swum",
        "fall fell fallen", "go went gone", "play played played", "jump jumped jumped",
        "laugh laughed laughed", "cry cried cried", "sit sat sat", "come came come",
        "fly flew flown", "grow grew grown", "dance danced danced", "smile smiled smiled",
        "ride rode ridden", "dig dug dug",
    ]:
        intrans.append(Verb(*line.split()))
    return trans, intrans


TRANS, INTRANS = _verbs()
REFL_VERBS = [v for v in TRANS if v.refl]
# Verbs whose past and participle differ: the irregular_past_participle paradigm swaps them.
IRREG_PP = [v for v in TRANS + INTRANS if v.past != v.pp != v.base]
MODALS = ["can", "will", "should", "must", "might", "could"]
NEG_MODALS = {"can": "can't", "will": "won't", "should": "shouldn't", "could": "couldn't",
              "must": "mustn't", "might": "might not"}


def _gender(noun: Noun) -> str:
    """m / f for gendered humans, "" for a child or a teacher, n for animals and things."""
    return noun.gender or ("" if noun.kind == "human" else "n")


def _kind_ok(noun: Noun, want: str) -> bool:
    if not want or want == "any":
        return True
    if want == "animate":
        return noun.kind in ("human", "animal")
    return noun.kind == want


# --------------------------------------------------------------------------------------------
# Grammar: noun phrases carry number/person/gender, verb phrases agree with their subject.
# --------------------------------------------------------------------------------------------


@dataclass
class NP:
    words: list[str]
    num: str = "sg"        # sg | pl
    person: int = 3
    gender: str = ""       # m | f | n (non-human) | "" (human, unknown)
    head: Noun | None = None

    @property
    def agr(self) -> str:  # the three agreement classes English verbs distinguish
        if self.person == 1 and self.num == "sg":
            return "1sg"
        return "3sg" if self.person == 3 and self.num == "sg" else "pl"


PRONOUNS = [  # subject, object, reflexive, num, person, gender
    ("he", "him", "himself", "sg", 3, "m"), ("she", "her", "herself", "sg", 3, "f"),
    ("it", "it", "itself", "sg", 3, "n"), ("they", "them", "themselves", "pl", 3, ""),
    ("I", "me", "myself", "sg", 1, ""), ("we", "us", "ourselves", "pl", 1, ""),
    ("you", "you", "yourself", "pl", 2, ""),
]


def be(agr: str, past: bool = False, neg: bool = False) -> str:
    if past:
        w = "was" if agr in ("1sg", "3sg") else "were"
    else:
        w = {"1sg": "am", "3sg": "is", "pl": "are"}[agr]
    if neg:
        return "am not" if w == "am" else w + "n't"
    return w


def have(agr: str, neg: bool = False) -> str:
    w = "has" if agr == "3sg" else "have"
    return w + "n't" if neg else w


def do(agr: str, neg: bool = False) -> str:
    w = "does" if agr == "3sg" else "do"
    return w + "n't" if neg else w


def present(verb: Verb, agr: str) -> str:
    return verb.s3 if agr == "3sg" else verb.base


TENSES = ["pres", "pres", "past", "past", "prog", "pastprog", "perf", "pastperf", "modal"]


class Grammar:
    """Random sentences of the demo language, as lists of words and punctuation."""

    def __init__(self, rng: random.Random, narrative: bool = False):
        self.rng = rng
        self.narrative = narrative  # stories are told mostly in the past tense

    # -- small helpers -------------------------------------------------------------------------
    def p(self, prob: float) -> bool:
        return self.rng.random() < prob

    def pick(self, seq):
        return self.rng.choice(seq)

    def noun(self, kind: str = "", irregular: bool | None = None) -> Noun:
        cands = [n for n in NOUNS if _kind_ok(n, kind)
                 and (irregular is None or n.irregular == irregular)]
        return self.pick(cands)

    def article(self, det: str, nxt: str) -> str:
        return "an" if det == "a" and nxt[0] in "aeiou" else det

    # -- noun phrases ----------------------------------------------------------------------------
    def det_np(self, num: str | None = None, kind: str = "", noun: Noun | None = None,
               adj: float = 0.3, det: str | None = None, rc: float = 0.0,
               irregular: bool | None = None) -> NP:
        num = num or ("sg" if self.p(0.6) else "pl")
        noun = noun or self.noun(kind, irregular)
        det = det or self.pick(SG_DETS if num == "sg" else PL_DETS)
        mods = []
        if self.p(adj):
            mods.append(self.pick(ADJS))
        elif noun.kind in ("thing", "food") and self.p(0.08):
            mods.append(self.pick([a for a, k in PART_ADJS.items()
                                   if PART_ADJ_KINDS[a] == noun.kind] or ["new"]))
        first = (mods + [noun.form(num)])[0]
        words = [self.article(det, first)] + mods + [noun.form(num)]
        np = NP(words, num, 3, _gender(noun), noun)
        if rc and self.p(rc):
            np.words += self.rel_clause(np)
        return np

    def name_np(self, gender: str | None = None) -> NP:
        gender = gender or self.pick("mf")
        return NP([self.pick(NAMES[gender])], "sg", 3, gender)

    def pronoun_np(self, exclude: Iterable[str] = ()) -> NP:
        s, _, _, num, person, gender = self.pick([p for p in PRONOUNS if p[0] not in exclude])
        return NP([s], num, person, gender)

    def subject(self, kind: str = "", rc: float = 0.1) -> NP:
        r = self.rng.random()
        if kind in ("", "animate", "any") and r < 0.22:
            return self.pronoun_np(exclude=("it",))
        if kind in ("", "animate", "any") and r < 0.4:
            return self.name_np()
        if r < 0.48:  # bare plural: "dogs like cookies"
            n = self.noun("animate" if kind in ("", "any") else kind)
            return NP([n.pl], "pl", 3, _gender(n), n)
        return self.det_np(kind="animate" if kind in ("", "any") else kind, rc=rc)

    def obj(self, kind: str, rc: float = 0.05) -> NP:
        if kind in ("animate", "any") and self.p(0.15):
            _, o, _, num, person, gender = self.pick(PRONOUNS)
            return NP([o], num, person, gender)
        if kind in ("animate", "any") and self.p(0.15):
            return self.name_np()
        return self.det_np(kind=kind, rc=rc)

    def reflexive(self, np: NP) -> str:
        if np.person == 1:
            return "myself" if np.num == "sg" else "ourselves"
        if np.person == 2:
            return "yourself"
        if np.num == "pl":
            return "themselves"
        if np.gender == "":  # a child, a teacher: either is fine
            return self.pick(["himself", "herself"])
        return {"m": "himself", "f": "herself", "n": "itself"}[np.gender]

    def rel_clause(self, head: NP) -> list[str]:
        """A relative clause on ``head``: subject gap (verb agrees with the head) or object gap."""
        animate = head.head is not None and head.head.kind in ("human", "animal")
        rel = "who" if head.head is not None and head.head.kind == "human" and self.p(0.5) \
            else "that"
        if animate and self.p(0.6):
            v = self.pick(TRANS)
            tense = self.pick(["pres", "past", "perf", "prog"])
            return [rel] + self.verb_group(head, v, tense) + self.obj(v.obj, rc=0).words
        # object gap: "the cake that the boys ate"
        v = self.pick([v for v in TRANS if head.head is not None and _kind_ok(head.head, v.obj)])
        subj = self.det_np(kind="animate", adj=0.1) if self.p(0.6) else self.name_np()
        tense = self.pick(["pres", "past", "perf"])
        return ["that"] + subj.words + self.verb_group(subj, v, tense)

    # -- verb phrases ----------------------------------------------------------------------------
    def verb_group(self, subj: NP, v: Verb, tense: str, neg: bool = False) -> list[str]:
        agr = subj.agr
        if tense == "pres":
            return [do(agr, True), v.base] if neg else [present(v, agr)]
        if tense == "past":
            return ["didn't", v.base] if neg else [v.past]
        if tense == "prog":
            return [be(agr, neg=neg), v.ing]
        if tense == "pastprog":
            return [be(agr, past=True, neg=neg), v.ing]
        if tense == "perf":
            return [have(agr, neg), v.pp]
        if tense == "pastperf":
            return ["hadn't" if neg else "had", v.pp]
        m = self.pick(MODALS)
        return [NEG_MODALS[m] if neg else m, v.base]

    def pp(self, static: bool = False) -> list[str]:
        prep = self.pick(PREPS[:-1] if static else PREPS)  # "is into the box" is not English
        return [prep, "the", self.pick(PLACES)]

    def predicate(self, subj: NP, tense: str | None = None, neg: bool | None = None) -> list[str]:
        if tense is None:
            tense = "past" if self.narrative and self.p(0.6) else self.pick(TENSES)
        neg = self.p(0.15) if neg is None else neg
        r = self.rng.random()
        animate = subj.gender != "n" or (subj.head is not None and subj.head.kind == "animal")
        if r < 0.15 or not animate:  # copula
            past = tense in ("past", "pastprog", "pastperf")
            rest = [self.pick(ADJS)] if self.p(0.6) else self.pp(static=True)
            return [be(subj.agr, past, neg)] + rest
        if r < 0.55:
            v = self.pick(TRANS)
            out = self.verb_group(subj, v, tense, neg) + self.obj(v.obj).words
        elif r < 0.67:
            v = self.pick(REFL_VERBS)
            out = self.verb_group(subj, v, tense, neg) + [self.reflexive(subj)]
        else:
            v = self.pick(INTRANS)
            out = self.verb_group(subj, v, tense, neg)
        if self.p(0.25):
            out += self.pp()
        elif self.p(0.15):
            out += self.pick(ADVS).split()
        return out

    # -- sentences -------------------------------------------------------------------------------
    def declarative(self, rc: float = 0.1, tense: str | None = None) -> list[str]:
        r = self.rng.random()
        if r < 0.07:  # existential
            num = self.pick(["sg", "pl"])
            np = self.det_np(num, det="a" if num == "sg" else self.pick(["two", "some", "many"]))
            return ["there", be(np.agr, past=self.p(0.4))] + np.words + self.pp(True) + ["."]
        if r < 0.14:  # demonstrative copula: "these are my shoes"
            num = self.pick(["sg", "pl"])
            np = self.det_np(num, det=self.pick(["a", "my", "the"] if num == "sg"
                                                else ["my", "the", "some"]))
            return [self.pick(DEMS[num]), be(np.agr)] + np.words + ["."]
        subj = self.subject(rc=rc)
        return subj.words + self.predicate(subj, tense) + ["."]

    def yes_no(self) -> list[str]:
        subj = self.subject(rc=0.05)
        r = self.rng.random()
        if r < 0.3:
            v = self.pick(TRANS)
            aux = do(subj.agr) if self.p(0.6) else "did"
            return [aux] + subj.words + [v.base] + self.obj(v.obj).words + ["?"]
        if r < 0.5:
            v = self.pick(INTRANS + TRANS)
            rest = self.obj(v.obj).words if v.obj else []
            return [be(subj.agr)] + subj.words + [v.ing] + rest + ["?"]
        if r < 0.65:
            v = self.pick(TRANS)
            return [have(subj.agr)] + subj.words + [v.pp] + self.obj(v.obj).words + ["?"]
        if r < 0.8:
            v = self.pick(INTRANS)
            return [self.pick(["can", "will", "should"])] + subj.words + [v.base] + ["?"]
        return [be(subj.agr, past=self.p(0.3))] + subj.words + [self.pick(ADJS)] + ["?"]

    def wh(self) -> list[str]:
        r = self.rng.random()
        if r < 0.3:  # object question: "what does the dog eat ?"
            v = self.pick([v for v in TRANS if v.obj != "animate"])
            subj = self.subject()
            aux = self.pick([do(subj.agr), "did"])
            return ["what", aux] + subj.words + [v.base] + ["?"]
        if r < 0.45:
            v = self.pick([v for v in TRANS if v.obj in ("animate", "any")])
            subj = self.subject()
            return ["who", self.pick([do(subj.agr), "did"])] + subj.words + [v.base, "?"]
        if r < 0.65:  # subject question: "who eats the cake ?"
            v = self.pick(TRANS)
            verb = [v.s3] if self.p(0.5) else [v.past]
            return ["who"] + verb + self.obj(v.obj).words + ["?"]
        if r < 0.8:
            np = self.det_np(kind="animate", adj=0.2)
            return ["where", be(np.agr, past=self.p(0.3))] + np.words + ["?"]
        if r < 0.9:
            subj = self.subject()
            return ["what", be(subj.agr)] + subj.words + ["doing", "?"]
        np = self.det_np(kind="animate", det="which", adj=0.0)
        v = self.pick(TRANS)
        return np.words + self.verb_group(np, v, self.pick(["pres", "past", "perf"])) \
            + self.obj(v.obj).words + ["?"]

    def imperative(self) -> list[str]:
        v = self.pick(TRANS + INTRANS)
        head = ["don't", v.base] if self.p(0.2) else [v.base]
        rest = self.obj(v.obj, rc=0).words if v.obj else []
        return head + rest + ["!" if self.p(0.5) else "."]

    def sentence(self, mix: dict[str, float] | None = None) -> list[str]:
        mix = mix or {"decl": 0.6, "yn": 0.12, "wh": 0.12, "imp": 0.08, "conj": 0.08}
        kind = self.rng.choices(list(mix), weights=list(mix.values()))[0]
        if kind == "yn":
            return self.yes_no()
        if kind == "wh":
            return self.wh()
        if kind == "imp":
            return self.imperative()
        if kind == "conj":  # two clauses: "the dog ran and the cats slept ."
            a, b = self.declarative(rc=0), self.declarative(rc=0)
            return a[:-1] + [",", self.pick(["and", "but", "so"])] + b
        return self.declarative()

    def said(self, speaker: NP | None = None) -> tuple[list[str], list[str]]:
        """A line of dialogue and who said it, for the story sources."""
        quote = self.sentence({"decl": 0.5, "yn": 0.2, "wh": 0.2, "imp": 0.1})
        speaker = speaker or (self.det_np("sg", kind="human", det="the", adj=0.2)
                              if self.p(0.5) else self.name_np())
        verb = self.pick(["said", "cried", "shouted"] if quote[-1] != "?" else ["asked", "said"])
        return quote, [verb] + speaker.words


INTERJECTIONS = ["look", "oh no", "good job", "yes", "no", "uh oh", "there you go", "all done",
                 "thank you", "okay", "yeah", "hi", "bye bye", "come here", "well done",
                 "what's that", "night night", "oops"]
FILLERS = ["uh", "um", "you know", "I mean", "well", "yeah", "oh", "so"]


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


# --------------------------------------------------------------------------------------------
# Minimal pairs (BLiMP format)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paradigm:
    uid: str
    field: str
    term: str
    method: str            # one | two: which prefix fields real BLiMP gives this paradigm
    lexically_identical: bool
    make: Callable[[Grammar], tuple[list[str], list[str], dict]]


def _other(num: str) -> str:
    return "pl" if num == "sg" else "sg"


def _dna_object(g: Grammar, irregular: bool, adj: bool, swap: str):
    """Shared core of the determiner-noun paradigms: "<subj> <verb> this cup ."."""
    subj = g.subject(rc=0)
    v = g.pick([v for v in TRANS if v.obj in ("thing", "food", "any")])
    pred = g.verb_group(subj, v, g.pick(["pres", "past", "prog", "perf", "pastprog"]),
                        neg=g.p(0.2))
    kind = v.obj if v.obj in ("thing", "food") else g.pick(["thing", "food", "animal"])
    if irregular:
        kind = "any"
    n = g.noun(kind, irregular)
    num = g.pick(["sg", "pl"])
    dem = g.pick(DEMS[num])
    a = [g.pick(ADJS)] if adj else []
    good = subj.words + pred + [dem] + a + [n.form(num), "."]
    if swap == "noun":
        bad = subj.words + pred + [dem] + a + [n.form(_other(num)), "."]
    else:
        bad = subj.words + pred + [DEMS[_other(num)][DEMS[num].index(dem)]] + a + \
            [n.form(num), "."]
    return good, bad, {}


def _sva(g: Grammar, irregular: bool, swap: str):
    """Subject-verb agreement: swap the verb (``_1``) or the subject noun's number (``_2``)."""
    num = g.pick(["sg", "pl"])
    kind = "animate"
    n = g.noun(kind, irregular)
    det = "the" if swap == "noun" else g.pick(["the", "the", *DEMS[num]])
    subj = NP([det, n.form(num)], num, 3, _gender(n), n)
    r = g.rng.random()
    if r < 0.35:
        v = g.pick(TRANS)
        tense = g.pick(["pres", "prog", "perf", "pastprog"])
        neg = g.p(0.3)
        vg = g.verb_group(subj, v, tense, neg)
        rest = g.obj(v.obj, rc=0).words
    elif r < 0.7:
        v = g.pick(INTRANS)
        tense = g.pick(["pres", "prog", "perf"])
        neg = g.p(0.3)
        vg = g.verb_group(subj, v, tense, neg)
        rest = g.pp() if g.p(0.4) else []
    else:
        vg, rest = [be(subj.agr, past=g.p(0.3), neg=g.p(0.2))], [g.pick(ADJS)]
        tense, neg = "", False  # the copula: the bad form is the other number's "be"
    if swap == "noun":
        bad_subj = [det, n.form(_other(num))]
        return subj.words + vg + rest + ["."], bad_subj + vg + rest + ["."], {}
    other = NP(subj.words, _other(num), 3, subj.gender, n)
    bad_vg = g.verb_group(other, v, tense, neg) if tense else [_BE_SWAP[vg[0]]]
    return subj.words + vg + rest + ["."], subj.words + bad_vg + rest + ["."], {}


_BE_SWAP = {"is": "are", "are": "is", "was": "were", "were": "was", "isn't": "aren't",
            "aren't": "isn't", "wasn't": "weren't", "weren't": "wasn't"}


def _anaphor(g: Grammar, what: str):
    if what == "gender":
        gender = g.pick("mf")
        subj = g.name_np(gender) if g.p(0.5) else g.det_np(
            "sg", noun=g.pick([n for n in NOUNS if n.gender == gender]), adj=0.0,
            det=g.pick(["the", "this", "that", "a"]))
        good_r = g.reflexive(subj)
        bad_r = "herself" if good_r == "himself" else "himself"
    else:
        num = g.pick(["sg", "pl"])
        if num == "sg":
            gender = g.pick("mf")
            subj = g.name_np(gender) if g.p(0.5) else g.det_np(
                "sg", noun=g.pick([n for n in NOUNS if n.gender == gender]), adj=0.0,
                det=g.pick(["the", "this", "that", "a"]))
        else:
            subj = g.det_np("pl", kind="human", adj=0.0, det=g.pick(["the", "these", "those"]))
        good_r = g.reflexive(subj)
        bad_r = "themselves" if num == "sg" else g.pick(["himself", "herself"])
    v = g.pick(REFL_VERBS)
    vg = g.verb_group(subj, v, g.pick(["past", "perf", "pres", "prog", "modal"]), neg=g.p(0.2))
    return subj.words + vg + [good_r, "."], subj.words + vg + [bad_r, "."], {}


def _irregular_pp(g: Grammar):
    v = g.pick(IRREG_PP)
    subj = g.subject(kind="animate", rc=0)
    rest = g.obj(v.obj, rc=0).words if v.obj else (g.pp() if g.p(0.5) else [])
    return subj.words + [v.past] + rest + ["."], subj.words + [v.pp] + rest + ["."], {}


def _pp_adjective(g: Grammar):
    adj = g.pick(list(PART_ADJS))
    num = g.pick(["sg", "pl"])
    n = g.noun(PART_ADJ_KINDS[adj])
    subj = NP(["the", adj, n.form(num)], num, 3, "n", n)
    rest = [be(subj.agr, past=g.p(0.4))] + ([g.pick(ADJS)] if g.p(0.5) else g.pp(True))
    return subj.words + rest + ["."], ["the", PART_ADJS[adj], n.form(num)] + rest + ["."], {}


def _distractor_rc(g: Grammar):
    num = g.pick(["sg", "pl"])
    head = g.det_np(num, kind="animate", adj=0.0, det=g.pick(["the", *DEMS[num]]))
    v = g.pick([v for v in TRANS if v.obj in ("animate", "any")])
    rel = ["who" if head.head.kind == "human" else "that"]
    rc = rel + g.verb_group(head, v, g.pick(["past", "perf", "pres"])) + \
        g.det_np(_other(num), kind="animate", adj=0.0, det="the").words
    other = NP(head.words, _other(num), 3)
    if g.p(0.5):
        neg, past = g.p(0.3), g.p(0.3)
        good_v, bad_v = be(head.agr, past, neg), be(other.agr, past, neg)
        rest = [g.pick(ADJS)]
    else:
        v2 = g.pick(TRANS)
        neg = g.p(0.3)
        good_v, bad_v = have(head.agr, neg), have(other.agr, neg)
        rest = [v2.pp] + g.obj(v2.obj, rc=0).words
    good = head.words + rc + [good_v] + rest + ["."]
    bad = head.words + rc + [bad_v] + rest + ["."]
    return good, bad, {"dependency_length": len(rc)}


PARADIGMS = [
    Paradigm("determiner_noun_agreement_1", "morphology", "determiner_noun_agreement", "one",
             True, lambda g: _dna_object(g, False, False, "noun")),
    Paradigm("determiner_noun_agreement_2", "morphology", "determiner_noun_agreement", "two",
             True, lambda g: _dna_object(g, False, False, "det")),
    Paradigm("determiner_noun_agreement_irregular_1", "morphology", "determiner_noun_agreement",
             "one", True, lambda g: _dna_object(g, True, False, "noun")),
    Paradigm("determiner_noun_agreement_with_adjective_1", "morphology",
             "determiner_noun_agreement", "one", True,
             lambda g: _dna_object(g, False, True, "noun")),
    Paradigm("regular_plural_subject_verb_agreement_1", "morphology", "subject_verb_agreement",
             "one", False, lambda g: _sva(g, False, "verb")),
    Paradigm("irregular_plural_subject_verb_agreement_1", "morphology", "subject_verb_agreement",
             "one", False, lambda g: _sva(g, True, "verb")),
    Paradigm("irregular_plural_subject_verb_agreement_2", "morphology", "subject_verb_agreement",
             "two", False, lambda g: _sva(g, True, "noun")),
    Paradigm("anaphor_gender_agreement", "morphology", "anaphor_agreement", "one", False,
             lambda g: _anaphor(g, "gender")),
    Paradigm("anaphor_number_agreement", "morphology", "anaphor_agreement", "one", True,
             lambda g: _anaphor(g, "number")),
    Paradigm("irregular_past_participle_verbs", "morphology", "irregular_forms", "one", False,
             _irregular_pp),
    Paradigm("irregular_past_participle_adjectives", "morphology", "irregular_forms", "two",
             False, _pp_adjective),
    Paradigm("distractor_agreement_relative_clause", "morphology", "subject_verb_agreement",
             "one", False, _distractor_rc),
]
PARADIGM_NAMES = [p.uid for p in PARADIGMS]


def blimp_record(p: Paradigm, good: list[str], bad: list[str], extra: dict, pair_id: int) -> dict:
    """One jsonl record with the keys, key order and value types of the real BLiMP paradigm."""
    sg, sb = detok(good), detok(bad)
    tg, tb = sg.split(), sb.split()
    diff = [i for i, (a, b) in enumerate(zip(tg, tb)) if a != b]
    assert len(tg) == len(tb) and len(diff) == 1, (sg, sb)
    i = diff[0]
    rec: dict = {"sentence_good": sg, "sentence_bad": sb}
    if p.method == "one":
        rec.update(one_prefix_prefix=" ".join(tg[:i]), one_prefix_word_good=tg[i].rstrip(".?!"),
                   one_prefix_word_bad=tb[i].rstrip(".?!"))
    else:
        rec.update(two_prefix_prefix_good=" ".join(tg[:i + 1]),
                   two_prefix_prefix_bad=" ".join(tb[:i + 1]),
                   two_prefix_word=tg[i + 1].rstrip(".?!") if i + 1 < len(tg) else "")
    rec.update(extra)
    rec.update(field=p.field, linguistics_term=p.term, UID=p.uid, simple_LM_method=True,
               one_prefix_method=p.method == "one", two_prefix_method=p.method == "two",
               lexically_identical=p.lexically_identical, pairID=str(pair_id))
    return rec


def _norm(s: str) -> str:
    return " ".join(tokens(s))


def make_pairs(p: Paradigm, n: int, seed: int, avoid: set[str] = frozenset(),
               stream: str = "blimp") -> list[tuple[list[str], list[str], dict]]:
    """``n`` distinct pairs of paradigm ``p`` from their own random stream, avoiding ``avoid``
    (normalised corpus sentences) so the suite is not copied from the train text."""
    rng = random.Random(f"{seed}:{stream}:{p.uid}")
    g = Grammar(rng)
    out, used = [], set()
    for tries in range(n * 200):
        good, bad, extra = p.make(g)
        key = _norm(detok(good))
        if key in used or (key in avoid and tries < n * 100):
            continue
        used.add(key)
        out.append((good, bad, extra))
        if len(out) == n:
            return out
    raise UserError(f"--pairs {n}: paradigm {p.uid} cannot make that many distinct pairs; "
                    "ask for fewer")


def write_blimp(dir_: Path, pairs: int, seed: int, avoid: set[str]) -> dict[str, int]:
    dir_.mkdir(parents=True)
    counts = {}
    for p in PARADIGMS:
        recs = [blimp_record(p, g, b, x, i)
                for i, (g, b, x) in enumerate(make_pairs(p, pairs, seed, avoid))]
        (dir_ / f"{p.uid}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
        counts[p.uid] = len(recs)
    return counts


def write_cola(dir_: Path, n_train: int, n_valid: int, seed: int, avoid: set[str]) -> dict:
    """CoLA-style items: the good or the bad member of a fresh pair, labels about balanced."""
    dir_.mkdir(parents=True)
    rng = random.Random(f"{seed}:cola")
    per = (n_train + n_valid) // len(PARADIGMS) + 2
    pool = []
    for p in PARADIGMS:
        for good, bad, _ in make_pairs(p, per, seed, avoid, stream="cola"):
            pool.append((detok(good), detok(bad)))
    rng.shuffle(pool)
    items = []
    for good, bad in pool[: n_train + n_valid]:
        label = int(rng.random() < 0.5)
        items.append({"sentence": good if label else bad, "label": label})
    stats = {}
    for name, part in (("train", items[:n_train]), ("valid", items[n_train:])):
        lines = [json.dumps({**it, "idx": i}) + "\n" for i, it in enumerate(part)]
        (dir_ / f"cola.{name}.jsonl").write_text("".join(lines), encoding="utf-8")
        stats[name] = {"n": len(part), "positive": sum(it["label"] for it in part)}
    return stats


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


# --------------------------------------------------------------------------------------------
# The whole world
# --------------------------------------------------------------------------------------------


def source_budgets(words: int) -> dict[str, int]:
    total = sum(SOURCE_WEIGHTS.values())
    return {s: max(50, round(words * w / total)) for s, w in SOURCE_WEIGHTS.items()}


def build_world(root: Path, seed: int = 1234, words: int = 300_000, pairs: int = 200,
                cola_train: int = 2000, cola_valid: int = 500) -> dict:
    """Write the whole demo world into the (new) directory ``root``; returns its statistics."""
    seen: set[str] = set()
    stats: dict = {"seed": seed, "words_target": words, "corpus": {}}
    jobs = [(TRAIN_SPLIT, "train", words), (DEV_SPLIT, "dev", words // 10)]
    bar = tqdm(total=len(jobs) * len(SOURCES) + 2, desc="demo world", unit="part")
    for split, ext, target in jobs:
        d = root / "corpus" / split
        d.mkdir(parents=True)
        for source, budget in source_budgets(target).items():
            n = write_source(d / f"{source}.{ext}", source, budget, seed, split, seen)
            stats["corpus"][f"{split}/{source}.{ext}"] = n
            bar.update()
    avoid = {_norm(s) for s in seen}
    stats["blimp"] = write_blimp(root / "blimp", pairs, seed, avoid)
    bar.update()
    stats["cola"] = write_cola(root / "glue", cola_train, cola_valid, seed, avoid)
    bar.update()
    bar.close()
    (root / "SOURCE.md").write_text(source_md(stats), encoding="utf-8")
    return stats


def source_md(stats: dict) -> str:
    c = stats["corpus"]
    train = sum(v for k, v in c.items() if k.startswith(TRAIN_SPLIT))
    dev = sum(v for k, v in c.items() if k.startswith(DEV_SPLIT))
    rows = "\n".join(f"| {k} | {v:,} |" for k, v in c.items())
    paradigms = "\n".join(f"- {k}: {v} pairs" for k, v in stats["blimp"].items())
    cola = stats["cola"]
    return f"""# babydistill demo world (generated, seed {stats['seed']})

Written by `python -m babydistill.demo_world --seed {stats['seed']} --words \
{stats['words_target']}` from a small probabilistic grammar of child-directed English
(src/babydistill/demo_world.py). Nothing here is real data; the same seed gives the same bytes.

## corpus/ (BabyLM 2023 raw layout: {TRAIN_SPLIT}/ and {DEV_SPLIT}/)

Ten sources, each in its raw format with the artefacts the Baby Llama mrclean.py removes
(space before punctuation and doubled spaces, `word 's` / `do n't` / `-LRB-` tokens, `= = =`
headings, subtitle credit lines, all-caps QED lines with l for I, blank-line paragraphs,
switchboard `A:`/`B:` turns). Train {train:,} words, dev {dev:,} words (whitespace words).

| file | words |
|---|---|
{rows}

## blimp/ (BLiMP jsonl format, keys as the real paradigm of the same UID)

{paradigms}

Pairs come from a separate random stream and avoid sentences of the train corpus.

## glue/ (BabyLM glue_filtered layout)

cola.train.jsonl: {cola['train']['n']} items ({cola['train']['positive']} acceptable);
cola.valid.jsonl: {cola['valid']['n']} items ({cola['valid']['positive']} acceptable).
Unacceptable items carry the same one-word violations as the minimal pairs.
"""


def generate(out: str | Path, seed: int = 1234, words: int = 300_000, pairs: int = 200,
             cola_train: int = 2000, cola_valid: int = 500) -> dict:
    """Build the world in a temporary directory and rename it onto ``out``."""
    if words < 1000:
        raise UserError(f"--words {words}: too few for ten sources; use at least 1000")
    if pairs < 1:
        raise UserError(f"--pairs {pairs}: must be at least 1")
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out}: is a file; give a directory path")
    with atomic_path(out) as tmp:
        tmp.mkdir()
        stats = build_world(tmp, seed, words, pairs, cola_train, cola_valid)
    return stats


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m babydistill.demo_world", description=__doc__
                                 .split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (replaced atomically)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--words", type=int, default=300_000, help="train words over all sources")
    ap.add_argument("--pairs", type=int, default=200, help="minimal pairs per paradigm")
    ap.add_argument("--cola-train", type=int, default=2000)
    ap.add_argument("--cola-valid", type=int, default=500)
    ap.add_argument("--check", action="store_true",
                    help="also report a trigram model's BLiMP accuracy per paradigm")
    ap.add_argument("--log", default=None, help="also log to this file")
    a = ap.parse_args(argv)
    setup_logging(a.log)
    stats = generate(a.out, a.seed, a.words, a.pairs, a.cola_train, a.cola_valid)
    train = sum(v for k, v in stats["corpus"].items() if k.startswith(TRAIN_SPLIT))
    log.info("wrote %s: %d train words, %d paradigms x %d pairs, cola %s", a.out, train,
             len(stats["blimp"]), a.pairs, stats["cola"])
    if a.check:
        acc = ngram_blimp_accuracy(a.out)
        for k, v in acc.items():
            log.info("trigram BLiMP %-45s %.3f", k, v)
        log.info("trigram BLiMP mean %.3f", sum(acc.values()) / len(acc))


if __name__ == "__main__":
    main()
