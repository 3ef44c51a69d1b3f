"""Tests for babydistill.data.demo_world: the generated corpus, BLiMP-format pairs and CoLA task."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from babydistill.data import demo_world as dw
WORDS = 60_000
PAIRS = 50
CORE_KEYS = ["sentence_good", "sentence_bad", "field", "linguistics_term", "UID",
             "simple_LM_method", "one_prefix_method", "two_prefix_method", "lexically_identical",
             "pairID"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "demo"
    dw.generate(out, seed=7, words=WORDS, pairs=PAIRS, cola_train=300, cola_valid=100)
    return out


def read(world: Path, source: str, split: str = "babylm_10M") -> str:
    ext = "train" if split == "babylm_10M" else "dev"
    return (world / "corpus" / split / f"{source}.{ext}").read_text(encoding="utf-8")


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(words=4000, pairs=8, cola_train=30, cola_valid=10)
    dw.generate(tmp_path / "a", seed=3, **kw)
    dw.generate(tmp_path / "b", seed=3, **kw)
    dw.generate(tmp_path / "c", seed=4, **kw)
    a, b, c = (tree_bytes(tmp_path / x) for x in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["corpus/babylm_10M/aochildes.train"] != c["corpus/babylm_10M/aochildes.train"]
    assert a["blimp/anaphor_gender_agreement.jsonl"] != c["blimp/anaphor_gender_agreement.jsonl"]


def test_layout_and_word_counts(world):
    for split, ext, target in (("babylm_10M", "train", WORDS), ("babylm_dev", "dev", WORDS // 10)):
        files = sorted((world / "corpus" / split).iterdir())
        assert [f.name for f in files] == sorted(f"{s}.{ext}" for s in dw.SOURCES)
        total = sum(len(f.read_text(encoding="utf-8").split()) for f in files)
        assert abs(total - target) / target < 0.05, (split, total)
    # sources keep roughly the real 2023 proportions: open_subtitles is the biggest
    sizes = {s: len(read(world, s).split()) for s in dw.SOURCES}
    assert max(sizes, key=sizes.get) == "open_subtitles"
    assert min(sizes, key=sizes.get) == "switchboard"
    assert "seed 7" in (world / "SOURCE.md").read_text(encoding="utf-8")


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_every_source_carries_its_artefacts(world):
    ao = read(world, "aochildes")
    assert ao == ao.lower() and re.search(r"\w [.?!]$", ao, re.M) and "  " in ao
    bnc = read(world, "bnc_spoken")
    assert "\n\n" in bnc and " ." in bnc and "  " in bnc
    cbt = read(world, "cbt")
    assert re.search(r"^_BOOK_TITLE_ : \S+\.txt\.out$", cbt, re.M)
    assert re.search(r"\w 's ", cbt) and re.search(r"\w n't ", cbt)
    assert "-LRB-" in cbt and "-RRB-" in cbt and re.search(r"^` .* ' \w+", cbt, re.M)
    cs = read(world, "children_stories")
    assert "\u201c" in cs and "\u201d" in cs and re.search(r"\n\n[A-Z][\w ]+ \n\n", cs)
    gut = read(world, "gutenberg")
    assert re.search(r"^CHAPTER [IVX]+\.$", gut, re.M)
    assert re.search(r"^\[Illustration: .+\]$", gut, re.M) and re.search(r"^\d+\. ", gut, re.M)
    subs = lines(read(world, "open_subtitles"))
    assert any("subtitle" in line.lower() for line in subs)
    assert any(line.startswith("- ") for line in subs)
    qed = lines(read(world, "qed"))
    assert any(re.search(r"\b[A-Z]*l[A-Z]+\b", line) and line.upper().replace("L", "l") == line
               for line in qed)  # an all-caps line with l for I
    assert any(re.search(r"\((Laughter|Applause|Music)\)", line) for line in qed)
    assert "\n\n" in read(world, "simple_wikipedia")
    sw = lines(read(world, "switchboard"))
    assert all(re.match(r"[AB]: ", line) for line in sw)
    assert sw[0].startswith("A: ") and sw[1].startswith("B: ") and any("  " in s for s in sw)
    wiki = read(world, "wikipedia")
    assert wiki.startswith("\n") and re.search(r"^= = = \w+ = = =$", wiki, re.M)
    assert re.search(r"^ = .+ = $", wiki, re.M) and "<br />" in wiki


def test_reference_cleaner_has_work_on_each_source(world):
    mrclean = pytest.importorskip("reference_mrclean")
    for source in ("aochildes", "bnc_spoken", "cbt", "open_subtitles", "qed", "wikipedia"):
        text = read(world, source)
        cleaned = mrclean.CLEANUP_FUNCTIONS[source](text, 128)
        assert cleaned != text, source
    # the QED fix turns the OCR'd caps back into sentences with a real I
    qed = mrclean.CLEANUP_FUNCTIONS["qed"](read(world, "qed"), 128)
    assert not any(re.search(r"\b[A-Z]*l[A-Z]+\b", line) for line in qed.splitlines()
                   if line.isupper())


def test_agreement_is_consistent_in_the_corpus(world):
    sg = {n.sg for n in dw.NOUNS}
    pl = {n.pl for n in dw.NOUNS}
    adjs = set(dw.ADJS) | set(dw.PART_ADJS)
    sg_dets, pl_dets = {"this", "that", "a", "an", "every"}, {"these", "those", "two", "three",
                                                              "many", "some"}
    bad_verbs = {"sg": {"are", "were", "have", "don't", "aren't", "weren't", "haven't"},
                 "pl": {"is", "was", "has", "doesn't", "isn't", "wasn't", "hasn't"}}
    checked = 0
    for source in dw.SOURCES:
        if source == "qed":  # subtitle lines may split a sentence anywhere
            continue
        for line in read(world, source).splitlines():
            toks = dw.tokens(re.sub(r"^[AB]: ", "", line))  # not the switchboard speaker "A"
            for i, t in enumerate(toks):
                j = i + 1
                while j < len(toks) and toks[j] in adjs:
                    j += 1
                if j >= len(toks):
                    continue
                n = toks[j]
                assert not (t in sg_dets and n in pl), line
                assert not (t in pl_dets and n in sg), line
                # sentence-initial "the dog(s) <verb>": the verb agrees with the noun
                if t in sg_dets | pl_dets | {"the"} and (i == 0 or toks[i - 1] in ".!?,") \
                        and j + 1 < len(toks) and (n in sg or n in pl):
                    num = "sg" if n in sg else "pl"
                    assert toks[j + 1] not in bad_verbs[num], line
                    checked += 1
    assert checked > 500


def test_blimp_suite_format_and_minimal_pairs(world):
    files = sorted((world / "blimp").glob("*.jsonl"))
    assert len(files) >= 8 and [f.stem for f in files] == sorted(dw.PARADIGM_NAMES)
    terms = set()
    for f in files:
        recs = jsonl(f)
        assert len(recs) == PAIRS
        assert [r["pairID"] for r in recs] == [str(i) for i in range(PAIRS)]
        assert len({r["sentence_good"] for r in recs}) == PAIRS  # all distinct
        for r in recs:
            assert [k for k in r if k in CORE_KEYS] == CORE_KEYS
            assert r["UID"] == f.stem
            g, b = r["sentence_good"].split(), r["sentence_bad"].split()
            assert r["sentence_good"] != r["sentence_bad"] and len(g) == len(b)
            assert sum(x != y for x, y in zip(g, b)) == 1, r
            if r["one_prefix_method"]:
                assert r["sentence_good"].startswith(r["one_prefix_prefix"])
            terms.add(r["linguistics_term"])
    assert {"determiner_noun_agreement", "subject_verb_agreement", "anaphor_agreement",
            "irregular_forms"} <= terms


def test_blimp_keys_match_real_blimp(world, shared_subdir):
    real_dir = shared_subdir("blimp")
    compared = 0
    for f in sorted((world / "blimp").glob("*.jsonl")):
        real = real_dir / f.name
        if not real.exists():
            continue
        want = json.loads(real.read_text(encoding="utf-8").splitlines()[0])
        got = jsonl(f)[0]
        assert list(got) == list(want), f.name  # same keys, same order
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}
        for k in ("field", "linguistics_term", "one_prefix_method", "two_prefix_method",
                  "lexically_identical"):
            assert got[k] == want[k], (f.name, k)
        compared += 1
    assert compared >= 8


def test_pairs_use_the_corpus_lexicon(world):
    vocab = {t for s in dw.SOURCES for t in dw.tokens(read(world, s))}
    for f in (world / "blimp").glob("*.jsonl"):
        for r in jsonl(f):
            assert set(dw.tokens(r["sentence_good"] + " " + r["sentence_bad"])) <= vocab, r


def test_pairs_are_not_copied_from_the_train_corpus(world):
    sentences = set()
    for f in (world / "corpus" / "babylm_10M").glob("*.train"):
        for line in f.read_text(encoding="utf-8").splitlines():
            cur: list[str] = []
            for t in dw.tokens(line):
                cur.append(t)
                if t in ".!?":
                    sentences.add(" ".join(cur))
                    cur = []
    goods = [r["sentence_good"] for f in (world / "blimp").glob("*.jsonl") for r in jsonl(f)]
    copied = sum(" ".join(dw.tokens(s)) in sentences for s in goods)
    assert copied <= 0.02 * len(goods)


def test_cola_task(world, shared_subdir):
    train, valid = jsonl(world / "glue" / "cola.train.jsonl"), jsonl(world / "glue" /
                                                                      "cola.valid.jsonl")
    assert len(train) == 300 and len(valid) == 100
    for part in (train, valid):
        assert [r["idx"] for r in part] == list(range(len(part)))
        assert {r["label"] for r in part} == {0, 1}
        assert 0.4 < sum(r["label"] for r in part) / len(part) < 0.6
    assert not {r["sentence"] for r in train} & {r["sentence"] for r in valid}
    real = json.loads((shared_subdir("babylm_eval_2024") / "glue_filtered" /
                       "cola.train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert list(train[0]) == list(real)


def test_unacceptable_cola_items_carry_a_paradigm_violation(world):
    # A trigram model of the corpus scores the acceptable items higher on average.
    lm = dw.TrigramLM(read(world, s) for s in dw.SOURCES)
    items = jsonl(world / "glue" / "cola.train.jsonl")
    per_word = {0: [], 1: []}
    for r in items:
        per_word[r["label"]].append(lm.logprob(r["sentence"]) / len(r["sentence"].split()))
    mean = {k: sum(v) / len(v) for k, v in per_word.items()}
    assert mean[1] > mean[0]


def test_trigram_model_learns_the_suite_from_the_corpus(world, capsys):
    acc = dw.ngram_blimp_accuracy(world)
    with capsys.disabled():
        print("\ntrigram BLiMP accuracy:", {k: round(v, 2) for k, v in acc.items()})
    assert set(acc) == set(dw.PARADIGM_NAMES)
    assert sum(acc.values()) / len(acc) > 0.65
    # agreement between adjacent words is what a trigram model can see
    assert acc["determiner_noun_agreement_2"] > 0.8
    assert acc["irregular_past_participle_adjectives"] > 0.8


def test_grammar_forms():
    v = {v.base: v for v in dw.TRANS + dw.INTRANS}
    assert (v["eat"].s3, v["eat"].past, v["eat"].pp, v["eat"].ing) == ("eats", "ate", "eaten",
                                                                     "eating")
    assert (v["wash"].s3, v["carry"].s3, v["run"].ing, v["make"].ing, v["see"].ing) == \
        ("washes", "carries", "running", "making", "seeing")
    assert all(x.pp != x.past and x.pp != x.base for x in dw.IRREG_PP)
    n = {n.sg: n.pl for n in dw.NOUNS}
    assert (n["child"], n["mouse"], n["foot"], n["person"], n["box"]) == \
        ("children", "mice", "feet", "people", "boxes")


def test_cli_writes_world_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "w"
    dw.main(["--out", str(out), "--seed", "5", "--words", "3000", "--pairs", "5",
             "--cola-train", "20", "--cola-valid", "10"])
    assert len(jsonl(out / "blimp" / "anaphor_number_agreement.jsonl")) == 5
    assert "seed 5" in (out / "SOURCE.md").read_text(encoding="utf-8")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    with pytest.raises(SystemExit) as e:
        dw.main(["--out", str(tmp_path / "x"), "--words", "10"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --words 10")
    assert not (tmp_path / "x").exists()
