"""The demo world's lexicon and grammar: noun phrases carry number/person/gender, verb
phrases agree with their subject, so agreement is always respected."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterable




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
