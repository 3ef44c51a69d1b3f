"""babydistill.data.clean: reference mode equals the Baby Llama mrclean byte for byte; every
rule of every source, both modes, on hand-made lines and on the real BabyLM 2023 files."""

from __future__ import annotations

import csv
import itertools
import math
import re
from pathlib import Path

import pytest

import reference_mrclean as ref
from babydistill.data.clean import (ALIASES, KNOWN_SOURCES, READABILITY, SOURCES_2023, clean_file,
                               clean_text, main, normalise_ws, readability, readability_sample)

FIXTURES = Path(__file__).parent / "fixtures" / "babylm_mini"
FIXTURE_FILES = sorted(p for p in FIXTURES.glob("*/*") if p.suffix in (".train", ".dev"))
REAL_TRAIN = ["aochildes", "cbt", "children_stories", "switchboard"]


def normalise_block(block: str) -> str:
    # per-line whitespace rules are checked by the concrete cases; here: the paragraphs
    return "\n".join(normalise_ws(line) for line in block.strip().split("\n"))


def reference(source: str, text: str) -> str:
    return ref.CLEANUP_FUNCTIONS[source](text, ref.SEQ_LENGTH)


# --- byte equality with the verbatim reference --------------------------------------

@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reference_equals_mrclean_on_fixtures(path):
    text = path.read_text(encoding="utf-8")
    assert clean_text(path.stem, text, "reference") == reference(path.stem, text)


def test_fixtures_cover_every_source_and_split():
    assert {p.stem for p in FIXTURE_FILES if p.suffix == ".train"} == set(SOURCES_2023)
    assert {p.stem for p in FIXTURE_FILES if p.suffix == ".dev"} == set(SOURCES_2023)


@pytest.mark.parametrize("source", REAL_TRAIN)
def test_reference_equals_mrclean_on_real_train(shared_subdir, source):
    path = shared_subdir("babylm_2023_partial") / "babylm_10M" / f"{source}.train"
    with open(path, encoding="utf-8") as f:
        text = "".join(itertools.islice(f, 2000))
    out = clean_text(source, text, "reference")
    assert out.encode("utf-8") == reference(source, text).encode("utf-8")


@pytest.mark.parametrize("source", list(SOURCES_2023))
def test_reference_equals_mrclean_on_synthetic_mix(source):
    # Lines from every fixture through every source's rules: edge cases each rule's
    # fixture alone would not reach (headings in subtitles, tabs in qed, ...).
    text = "".join(p.read_text(encoding="utf-8") for p in FIXTURE_FILES) + " \t\u00a0x ,\n\n\n"
    assert clean_text(source, text, "reference") == reference(source, text)


def test_reference_sizes_match_the_papers_notebook(shared_subdir):
    # cleaning_and_tokenization.ipynb printed "(size N -> M)" in characters for each file;
    # these are the four files of the real data we have.
    published = {
        "babylm_10M/switchboard.train": (601050, 601050),
        "babylm_10M/children_stories.train": (1797174, 1797174),
        "babylm_10M/cbt.train": (2627694, 2554890),
        "babylm_10M/aochildes.train": (1900547, 1820547),
        "babylm_dev/switchboard.dev": (670013, 670013),
        "babylm_dev/children_stories.dev": (1382334, 1382334),
        "babylm_dev/cbt.dev": (1182610, 1152267),
        "babylm_dev/aochildes.dev": (1777198, 1707198),
    }
    root = shared_subdir("babylm_2023_partial")
    for rel, sizes in published.items():
        text = (root / rel).read_text(encoding="utf-8")
        assert (len(text), len(clean_text(Path(rel).stem, text, "reference"))) == sizes, rel


# --- every rule, concrete before/after -----------------------------------------------

REFERENCE_CASES = [
    # (source, before, after): extra spaces, space before punctuation
    ("aochildes", "look at   the doggie .\nwhat is\tthat ?\n", "look at the doggie.\nwhat is that?\n"),
    ("childes", "more\u00a0juice !\n", "more juice!\n"),
    # bnc: spaces, and the "\n\n" paragraph break deleted (paragraphs run together)
    ("bnc_spoken", "Yeah , I know .\n\nNew one .\n", "Yeah, I know.New one.\n"),
    # cbt: word 's -> word's, n't left alone, opening quote glued too (the quirk)
    ("cbt", "the queen 's head , do n't\n", "the queen's head, don't\n".replace("don't", "do n't")),
    ("cbt", "she said 'Hello\n", "she said'Hello\n"),
    ("cbt", "it ’s mine\n", "it’s mine\n"),
    # identity sources keep everything, double spaces and blank lines included
    ("children_stories", "A  b .\n\nC\n", "A  b .\n\nC\n"),
    ("gutenberg", "A  <i>b</i> .\n\n\n", "A  <i>b</i> .\n\n\n"),
    ("switchboard", "so <laughter> (( )) .\n", "so <laughter> (( )) .\n"),
    # open_subtitles: lines mentioning "subtitle" go, except an unterminated last line
    ("open_subtitles", "Hi.\nSubtitles by X\nBye.\nsubtitle credit", "Hi.\nBye.\nsubtitle credit"),
    # qed: all-caps lines: l -> I, then sentence .capitalize() lowercases the rest ("i")
    ("qed", "WHAT DO l KNOW? lT lS OK.\n", "What do i know? It is ok."),
    # qed: parentheses do not count for the caps test; lines stripped; no final newline
    ("qed", "  normal line (LAUGHTER)  \n(Applause) THANK YOU.\n", "normal line (LAUGHTER)\n(appiause) thank you."),
    # simple_wikipedia: paragraphs glued, a third newline survives
    ("simple_wikipedia", "A.\n\nB.\n\n\nC.\n", "A.B.\nC.\n"),
    ("simple_wiki", "A.\n\nB.\n", "A.B.\n"),
    # wikipedia: heading glued to the next line, lines stripped, first character dropped,
    # paragraphs glued, final newline gone
    ("wikipedia", " = = = Early life = = =\nBorn  here .\n\nNext.\n", "arly lifeBorn  here .Next."),
    ("wikipedia", "\nText.\n", "Text."),
]


@pytest.mark.parametrize("source,before,after", REFERENCE_CASES)
def test_reference_rules(source, before, after):
    assert clean_text(source, before, "reference") == after
    assert reference(ALIASES.get(source, source), before) == after  # the cases are right


def test_reference_qed_punctuation_only_line_does_not_crash():
    # mrclean divides by zero here; we keep the line.
    with pytest.raises(ZeroDivisionError):
        reference("qed", "(Applause)\n")
    assert clean_text("qed", "(Applause)\n...\nOK\n", "reference") == "(Applause)\n...\nOk"


IMPROVED_CASES = [
    # spoken: cues in brackets / parentheses / angle brackets dropped, spaces normalised
    ("aochildes", "xxx [laughs] more   juice !\n", "xxx more juice!\n"),
    ("childes", "(laughing) hi .\n[music]\n", "hi.\n"),
    ("bnc_spoken", "Yeah , I know .\n\n\n\nNew one .\n", "Yeah, I know.\n\nNew one.\n"),
    ("switchboard", "I think so <laughter>.\nvery, very (( )).\n<talking> Yeah.\n",
     "I think so.\nvery, very.\nYeah.\n"),
    ("switchboard", "so <Laughter> &amp; (( word )) fine\n", "so & fine\n"),
    # cbt: split contractions joined, quotes left alone
    ("cbt", "you do n't say , said Tom 's   father ; I 'm he 'll\n",
     "you don't say, said Tom's father; I'm he'll\n"),
    ("cbt", "she said ' Hello\n", "she said ' Hello\n"),
    # written: paragraph break kept (one blank line), tags stripped, parentheses kept
    ("children_stories", "A  b.\n\n\n\nC (see Appendix).\n", "A b.\n\nC (see Appendix).\n"),
    ("gutenberg", "It was <i>dark</i>.  \n\n[Footnote 2: x]\n", "It was dark.\n\n[Footnote 2: x]\n"),
    # open_subtitles: credit lines (last one too), cues, tags, entities
    ("open_subtitles", "[door slams] I'm off.\n<i>Tonight</i>, we ride &amp; fight.\nSubtitles by X",
     "I'm off.\nTonight, we ride & fight.\n"),
    # qed: OCR l -> I in caps lines, sentence case with the pronoun I kept, cues dropped
    ("qed", "WHAT DO l KNOW? lT lS OK. l'M HERE.\n", "What do I know? It is ok. I'm here.\n"),
    ("qed", "  &gt;&gt; SPEAKER: HELLO THERE.  \n(Applause)\n", "Speaker: hello there.\n"),
    ("qed", "a normal line (Laughter) here, Bill.\n", "a normal line here, Bill.\n"),
    # wiki: headings on their own line, nothing dropped, tags/entities, paragraphs kept
    ("wikipedia", " = = = Early life = = =\nBorn in  Paris .\n\nShe sang <ref>x</ref> &amp; won.\n",
     "Early life\nBorn in Paris.\n\nShe sang x & won.\n"),
    ("simple_wikipedia", "April.\n\n\nMay <b>follows</b> it (mostly).\n", "April.\n\nMay follows it (mostly).\n"),
    ("simple_wiki", "\n\nJune.\n", "June.\n"),
]


@pytest.mark.parametrize("source,before,after", IMPROVED_CASES)
def test_improved_rules(source, before, after):
    assert clean_text(source, before, "improved") == after


@pytest.mark.parametrize("source", list(KNOWN_SOURCES))
def test_improved_is_idempotent_and_tidy(source):
    text = "".join(p.read_text(encoding="utf-8") for p in FIXTURE_FILES)
    once = clean_text(source, text, "improved")
    assert clean_text(source, once, "improved") == once
    assert once.endswith("\n") and "\n\n\n" not in once and "  " not in once


def test_improved_on_real_lines(shared_subdir):
    root = shared_subdir("babylm_2023_partial") / "babylm_10M"
    sw = (root / "switchboard.train").read_text(encoding="utf-8")
    out = clean_text("switchboard", sw, "improved")
    assert "<laughter>" in sw and "<laughter>" not in out and "((" not in out
    assert "it wasn't really pollution, just the steamy weather.\n" in out
    cbt = (root / "cbt.train").read_text(encoding="utf-8")
    out = clean_text("cbt", cbt, "improved")
    assert "queen 's head" in cbt and "queen's head" in out and " n't" not in out
    stories = (root / "children_stories.train").read_text(encoding="utf-8")
    out = clean_text("children_stories", stories, "improved")
    paragraphs = [b for b in re.split(r"\n(?:\s*\n)+", stories) if b.strip()]
    assert out.endswith(".\n") and out[:-1].split("\n\n") == [normalise_block(b) for b in paragraphs]


# --- CLI --------------------------------------------------------------------------------

def test_cli_writes_output_and_stats(tmp_path):
    src = FIXTURES / "babylm_10M" / "cbt.train"
    out, stats = tmp_path / "clean" / "cbt.train", tmp_path / "stats" / "cbt.tsv"
    main(["--source", "cbt", "--mode", "reference", str(src), str(out), "--stats", str(stats)])
    text = src.read_text(encoding="utf-8")
    assert out.read_bytes() == reference("cbt", text).encode("utf-8")
    rows = list(csv.DictReader(stats.open(encoding="utf-8"), delimiter="\t"))
    assert len(rows) == 1
    row = rows[0]
    assert (row["source"], row["split"], row["mode"]) == ("cbt", "train", "reference")
    assert int(row["words_in"]) == len(text.split()) and int(row["chars_in"]) == len(text)
    assert int(row["lines_in"]) == 3 and int(row["chars_out"]) == len(reference("cbt", text))
    assert int(row["words_out"]) < int(row["words_in"])  # "queen 's" -> "queen's"


def test_cli_reads_crlf_like_the_reference(tmp_path):
    # Path.read_text() turns \r\n into \n; so does the CLI.
    src = tmp_path / "x.dev"
    src.write_bytes(b"Hi , there .\r\n\r\nBye .\r\n")
    row = clean_file("bnc_spoken", "reference", src, tmp_path / "o.dev", split="dev")
    assert (tmp_path / "o.dev").read_bytes() == b"Hi, there.Bye.\n"
    assert row["split"] == "dev" and row["lines_out"] == 1


def test_cli_unknown_source_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--source", "wikipedia_en", str(FIXTURES / "babylm_10M" / "cbt.train"),
              str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "wikipedia_en" in err
    assert all(name in err for name in ("aochildes", "childes", "simple_wiki", "wikipedia"))
    assert not (tmp_path / "o").exists()


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.train"
    bad.write_bytes(b"ok\n\xff\xfe broken\n")
    for args in (["--source", "cbt", str(bad), str(tmp_path / "o")],
                 ["--source", "cbt", str(tmp_path / "nope.train"), str(tmp_path / "o")]):
        with pytest.raises(SystemExit):
            main(args)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and str(tmp_path) in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("mode", ["reference", "improved"])
def test_empty_source_file_warns_naming_it(tmp_path, caplog, mode):
    """Issue 11, case 12: an empty source is cleaned (to nothing) with a warning naming it."""
    src = tmp_path / "babylm_10M" / "cbt.train"
    src.parent.mkdir()
    src.write_text("")
    with caplog.at_level("WARNING", logger="babydistill"):
        row = clean_file("cbt", mode, src, tmp_path / "cbt.txt", tmp_path / "cbt.tsv")
    assert row["words_in"] == 0 and (tmp_path / "cbt.txt").read_text() == ""
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(src) in warnings[0] and "empty" in warnings[0]

# -- readability (Baby Llama's curriculum metrics) ----------------------------------------

CHILD = "Look at the dog.\nThe dog is big.\nDo you see it?\nYes I see the dog.\n" * 20
ENCYCLOPEDIC = ("The constitutional jurisprudence of the federation developed considerably "
                "following the establishment of independent administrative institutions, "
                "particularly regarding intergovernmental responsibilities and "
                "international organisations.\n") * 20


def test_readability_orders_child_speech_before_encyclopedic_text(monkeypatch):
    import nltk

    def no_download(*a, **k):
        raise AssertionError("readability must not download anything")
    monkeypatch.setattr(nltk, "download", no_download)
    easy, hard = readability(CHILD), readability(ENCYCLOPEDIC)
    assert set(easy) == set(READABILITY)
    assert easy["flesch_reading_ease"] > 80 > 20 > hard["flesch_reading_ease"]
    for grade in ("flesch_kincaid_grade", "gunning_fog", "automated_readability_index",
                  "smog_index"):
        assert easy[grade] + 5 < hard[grade], grade
    assert all(math.isnan(v) for v in readability("\n\n").values())


def test_readability_sample_is_bounded_and_spread():
    lines = [f"line {i} " + "word " * 20 for i in range(5000)]
    sample = readability_sample("\n".join(lines), max_chars=10_000)
    picked = sample.splitlines()
    assert len(sample) <= 10_000 + 200
    assert picked[0] == lines[0].strip() or picked[0] == lines[0]
    last = int(picked[-1].split()[1])
    assert last > 4000  # reaches the end of the file, not just its head
    short = "One line.\n\nTwo lines."
    assert readability_sample(short) == "One line.\nTwo lines."


def test_clean_stats_table_joins_rows_and_adds_readability(tmp_path):
    from babydistill.data.clean_stats import main as stats_main

    stats, texts = [], []
    for source in ("aochildes", "wikipedia"):
        stats.append(tmp_path / f"{source}.stats.tsv")
        texts.append(tmp_path / f"{source}.txt")
        main(["--source", source, "--mode", "reference",
              str(FIXTURES / "babylm_10M" / f"{source}.train"), str(texts[-1]),
              "--stats", str(stats[-1])])
    out = tmp_path / "clean_stats.tsv"
    stats_main(["--out", str(out), "--stats", *map(str, stats), "--texts", *map(str, texts)])
    rows = list(csv.DictReader(out.open(encoding="utf-8"), delimiter="\t"))
    assert [r["source"] for r in rows] == ["aochildes", "wikipedia"]
    for row, text in zip(rows, texts):
        single = next(csv.DictReader(stats[texts.index(text)].open(encoding="utf-8"),
                                     delimiter="\t"))
        assert {k: row[k] for k in single} == single
        for k, v in readability(text.read_text(encoding="utf-8")).items():
            assert float(row[k]) == pytest.approx(v)
    # child-directed speech reads easier than Wikipedia
    assert float(rows[0]["flesch_reading_ease"]) > float(rows[1]["flesch_reading_ease"])
    with pytest.raises(SystemExit):
        stats_main(["--out", str(out), "--stats", str(stats[0]), "--texts", *map(str, texts)])
