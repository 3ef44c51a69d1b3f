"""The demo world's BLiMP-format minimal pairs (same keys as the real paradigm of the same UID)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from babydistill.common import UserError
from .grammar import ADJS, DEMS, Grammar, INTRANS, IRREG_PP, NOUNS, NP, PART_ADJS, PART_ADJ_KINDS, REFL_VERBS, TRANS, _gender, be, have
from .ngram import tokens
from .sources import detok


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
