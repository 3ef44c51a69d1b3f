"""Stage 1b: per-source cleaning of the BabyLM corpus files.

Owns the cleaning rules, one function per source, in two modes:

* ``reference``: the Baby Llama paper's cleaning (timinar/BabyLlama ``mrclean.py``, as
  run by its ``cleaning_and_tokenization.ipynb``: ``Path.read_text()`` -> cleanup ->
  ``Path.write_text()``), byte for byte, quirks included: paragraph breaks ("\\n\\n")
  are deleted so paragraphs run together, wikipedia loses its first character and its
  ``= = = Title = = =`` headings are glued to the next line, qed's mostly-uppercase lines
  are ``l -> I`` repaired and then sentence-capitalised (which lowercases every other
  letter, "I" included), cbt's ``word 's`` becomes ``word's`` (and so does an opening
  quote: ``said 'Hello``), and open_subtitles drops every line mentioning "subtitle"
  except the last. The reference START/END/PAD tokens are empty strings, so they vanish.
  One deliberate difference: a qed line made only of punctuation/parentheses makes the
  reference divide by zero; here it is kept as is.
* ``improved`` (default for new experiments): what the paper describes but the code does
  not do: strip HTML tags and unescape entities, drop non-verbal cues in spoken sources
  ([music], (laughs), <laughter>, (( ))), keep paragraph breaks (one blank line),
  normalise whitespace, and join split contractions (cbt ``do n't`` -> ``don't``).

2024 source names are accepted: ``childes`` uses the aochildes rules, ``simple_wiki``
the simple_wikipedia ones.

Stats: each file's row (``--stats``) holds lines, words and characters before and after
cleaning. :func:`merge_stats` (``python -m babydistill.data.clean_stats``, one job for the whole
corpus) joins the rows and adds the five readability metrics of each cleaned text that Baby
Llama's curriculum (Appendix B) orders sources by, computed with textstat: Flesch reading
ease, Flesch-Kincaid grade, Gunning fog, ARI and SMOG (:func:`readability`), on an evenly
spaced sample of lines of at most ``READABILITY_CHARS`` characters (~0.5 s a source once
textstat is loaded; loading it, which pulls in NLTK, takes seconds, hence one job, not
one per file).

CLI: ``python -m babydistill.data.clean --source NAME --mode reference|improved INPUT OUTPUT
[--stats TSV] [--split NAME]``
"""

from __future__ import annotations

import argparse
import html
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Callable

from babydistill.common import UserError, atomic_path, cli, require_file, setup_logging

log = logging.getLogger("babydistill.data.clean")

MODES = ("reference", "improved")
SOURCES_2023 = (
    "aochildes", "bnc_spoken", "cbt", "children_stories", "gutenberg",
    "open_subtitles", "qed", "simple_wikipedia", "switchboard", "wikipedia",
)
SOURCES_2024 = ("bnc_spoken", "childes", "gutenberg", "open_subtitles", "simple_wiki", "switchboard")
ALIASES = {"childes": "aochildes", "simple_wiki": "simple_wikipedia"}
KNOWN_SOURCES = tuple(sorted(set(SOURCES_2023) | set(SOURCES_2024)))
READABILITY = ("flesch_reading_ease", "flesch_kincaid_grade", "gunning_fog",
               "automated_readability_index", "smog_index")
STATS_COLUMNS = ("source", "split", "mode", "lines_in", "words_in", "chars_in",
                 "lines_out", "words_out", "chars_out")
READABILITY_CHARS = 100_000  # sample size for the metrics


def canonical_source(name: str) -> str:
    """Map a 2023 or 2024 source name to the rule set it uses (UserError if unknown)."""
    if name not in KNOWN_SOURCES:
        raise UserError(f"--source {name!r}: unknown source; known: {', '.join(KNOWN_SOURCES)}")
    return ALIASES.get(name, name)


# ---------------------------------------------------------------------------------------
# Reference mode: timinar/BabyLlama mrclean.py with its empty START/END/PAD tokens folded
# away. tests/reference_mrclean.py holds the verbatim original; tests check byte equality.

_MULTI_SPACE = re.compile(r"[ \t\u00A0]+")
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t\u00A0]([.,;!?])")


def _ref_extra_spaces(text: str) -> str:
    text = _MULTI_SPACE.sub(" ", text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def _ref_drop_paragraph_breaks(text: str) -> str:
    # The reference replaces "\n\n" by END+PAD+START tokens, all empty: paragraphs merge.
    return text.replace("\n\n", "")


def ref_aochildes(text: str) -> str:
    return _ref_extra_spaces(text)


def ref_bnc_spoken(text: str) -> str:
    return _ref_drop_paragraph_breaks(_ref_extra_spaces(text))


_REF_CBT_APOSTROPHE = re.compile(r"([\w\d])[ \t\u00A0](['’]\w)")


def ref_cbt(text: str) -> str:
    return _REF_CBT_APOSTROPHE.sub(r"\1\2", _ref_extra_spaces(text))


def ref_identity(text: str) -> str:
    # children_stories, gutenberg, switchboard: the reference changes nothing.
    return text


_REF_SUBTITLE_CREDIT = re.compile(r"^.*subtitle.*$\n", re.MULTILINE | re.IGNORECASE)


def ref_open_subtitles(text: str) -> str:
    return _REF_SUBTITLE_CREDIT.sub("", text)


_REF_QED_PUNCT = re.compile(r"([.!?]\s*)")
_REF_QED_UNIMPORTANT = re.compile(r"\(.*?\)|[.!?]")


def ref_qed(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line:
            body = _REF_QED_UNIMPORTANT.sub("", line)
            # The reference divides by len(body) and crashes when it is 0; keep such lines.
            if body and sum(c.isupper() for c in body) / len(body) >= 0.5:
                pieces = _REF_QED_PUNCT.split(line.replace("l", "I"))
                line = "".join(p.capitalize() for p in pieces)
        lines.append(line.strip())
    return "\n".join(lines)


def ref_simple_wikipedia(text: str) -> str:
    return _ref_drop_paragraph_breaks(text)


_REF_WIKI_HEADING = re.compile(r"= = = (.+?) = = =\n")


def ref_wikipedia(text: str) -> str:
    text = _REF_WIKI_HEADING.sub(r"\1", text)
    joined = "\n".join(line.strip() for line in text.splitlines())
    return _ref_drop_paragraph_breaks(joined[1:])  # [1:]: the reference drops the first char


REFERENCE: dict[str, Callable[[str], str]] = {
    "aochildes": ref_aochildes,
    "bnc_spoken": ref_bnc_spoken,
    "cbt": ref_cbt,
    "children_stories": ref_identity,
    "gutenberg": ref_identity,
    "open_subtitles": ref_open_subtitles,
    "qed": ref_qed,
    "simple_wikipedia": ref_simple_wikipedia,
    "switchboard": ref_identity,
    "wikipedia": ref_wikipedia,
}


# ---------------------------------------------------------------------------------------
# Improved mode. Every source goes line by line through _tidy(): a per-source line
# function, then whitespace normalisation; original blank lines become one paragraph
# break, lines that only held noise (a cue, a tag) disappear.

_HTML_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>\n]*)?/?>")
_CUES = re.compile(
    r"\(\([^\n]*?\)\)"        # switchboard's (( )) / (( word )) unintelligible marks
    r"|\[[^\[\]\n]*\]"        # [music], [LAUGHTER]
    r"|\([^()\n]*\)"          # (laughs), (Applause)
    r"|<[^<>\n]*>"            # <laughter>, <talking>
    r"|[♪♫]+"
)
_NEW_SPACE_BEFORE_PUNCT = re.compile(r" +([.,;:!?])")
_CONTRACTION = re.compile(r"(\w) (n't|'s|'re|'ve|'ll|'d|'m)\b", re.IGNORECASE)
_WIKI_HEADING = re.compile(r"^\s*(?:= )+(.+?)(?: =)+\s*$")


def strip_html(line: str) -> str:
    """Remove HTML tags and decode entities (&amp; -> &)."""
    return html.unescape(_HTML_TAG.sub(" ", line))


def drop_cues(line: str) -> str:
    """Remove non-verbal cues from a transcript line."""
    return _CUES.sub(" ", line)


def normalise_ws(line: str) -> str:
    """One space between words, none at the ends or before . , ; : ! ?"""
    line = _MULTI_SPACE.sub(" ", line).strip()
    return _NEW_SPACE_BEFORE_PUNCT.sub(r"\1", line)


def _tidy(text: str, line_fn: Callable[[str], str]) -> str:
    out: list[str] = []
    for raw in text.splitlines():
        if not raw.strip():
            if out and out[-1]:
                out.append("")  # one paragraph break, however many blank lines
            continue
        line = normalise_ws(line_fn(raw))
        if line:
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""


def _spoken(line: str) -> str:
    return drop_cues(strip_html(line))


def imp_spoken(text: str) -> str:
    # aochildes/childes, bnc_spoken, switchboard
    return _tidy(text, _spoken)


def imp_written(text: str) -> str:
    # children_stories, gutenberg: parentheses are content here, only tags go.
    return _tidy(text, strip_html)


def imp_cbt(text: str) -> str:
    return _tidy(text, lambda line: _CONTRACTION.sub(r"\1\2", normalise_ws(strip_html(line))))


def _is_subtitle_credit(line: str) -> bool:
    return "subtitle" in line.lower()


def imp_open_subtitles(text: str) -> str:
    return _tidy(text, lambda line: "" if _is_subtitle_credit(line) else _spoken(line))


_QED_SENTENCE = re.compile(r"([.!?]\s*)")
_PRONOUN_I = re.compile(r"\bi\b")


def _mostly_upper(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) / len(letters) >= 0.5


def imp_qed_line(line: str) -> str:
    line = normalise_ws(_spoken(line).replace(">>", " "))  # &gt;&gt; speaker-change marks
    if _mostly_upper(line):
        # In all-caps OCR a lowercase l is a misread I; then sentence case, keeping "I".
        pieces = _QED_SENTENCE.split(line.replace("l", "I").lower())
        line = "".join(p[:1].upper() + p[1:] for p in pieces)
        line = _PRONOUN_I.sub("I", line)
    return line


def imp_qed(text: str) -> str:
    return _tidy(text, imp_qed_line)


def _wiki_line(line: str) -> str:
    m = _WIKI_HEADING.match(line)
    return strip_html(m.group(1) if m else line)


def imp_wikipedia(text: str) -> str:
    # Headings stay on their own line; nothing is glued or dropped.
    return _tidy(text, _wiki_line)


IMPROVED: dict[str, Callable[[str], str]] = {
    "aochildes": imp_spoken,
    "bnc_spoken": imp_spoken,
    "cbt": imp_cbt,
    "children_stories": imp_written,
    "gutenberg": imp_written,
    "open_subtitles": imp_open_subtitles,
    "qed": imp_qed,
    "simple_wikipedia": imp_wikipedia,
    "switchboard": imp_spoken,
    "wikipedia": imp_wikipedia,
}


# ---------------------------------------------------------------------------------------

def clean_text(source: str, text: str, mode: str = "improved") -> str:
    """Clean one whole file's text with the rules of ``source`` (2023 or 2024 name)."""
    if mode not in MODES:
        raise UserError(f"--mode {mode!r}: unknown mode; use one of {', '.join(MODES)}")
    rules = REFERENCE if mode == "reference" else IMPROVED
    return rules[canonical_source(source)](text)


def count_lines(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def text_stats(text: str) -> tuple[int, int, int]:
    """(lines, words, chars) of a text; words are whitespace-separated, like wc -w."""
    return count_lines(text), len(text.split()), len(text)


def readability_sample(text: str, max_chars: int = READABILITY_CHARS) -> str:
    """Every k-th non-blank line, k chosen so the sample has at most ~``max_chars``
    characters (the whole text when it is short): deterministic and spread over the file."""
    lines = [line for line in text.splitlines() if line.strip()]
    total = sum(len(line) + 1 for line in lines)
    step = max(1, -(-total // max_chars))
    picked, size = [], 0
    for line in lines[::step]:
        if size and size + len(line) > max_chars:
            break
        picked.append(line)
        size += len(line) + 1
    return "\n".join(picked)


def readability(text: str, max_chars: int = READABILITY_CHARS) -> dict[str, float]:
    """The five metrics of :data:`READABILITY` (textstat) on a sample of ``text``; NaN for
    an empty text."""
    from textstat.textstat import textstat

    sample = readability_sample(text, max_chars)
    if not sample.split():
        return {k: float("nan") for k in READABILITY}
    # "en-US", not "en": the English formulas and constants, with syllables from pyphen's
    # en_US dictionary. With "en", textstat 0.7 downloads NLTK's cmudict at run time.
    textstat.set_lang("en-US")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no easy words vocabulary for en-US" (unused here)
        return {k: round(float(getattr(textstat, k)(sample)), 3) for k in READABILITY}


def read_text(path: str | Path) -> str:
    """Read like the reference (Path.read_text: universal newlines), as UTF-8."""
    p = require_file(path, "corpus file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{p}: not UTF-8 text (byte {e.start}); re-download the corpus") from None


def split_of(path: str | Path) -> str:
    """babylm_10M/cbt.train -> 'train'; anything else -> its suffix without the dot."""
    return Path(path).suffix.lstrip(".") or "unknown"


def clean_file(source: str, mode: str, input_path: str | Path, output_path: str | Path,
               stats_path: str | Path | None = None, split: str | None = None) -> dict:
    """Clean INPUT into OUTPUT (atomically); return the stats row (and write it as TSV)."""
    canonical_source(source)
    text = read_text(input_path)
    t0 = time.perf_counter()
    cleaned = clean_text(source, text, mode)
    seconds = time.perf_counter() - t0
    with atomic_path(output_path) as tmp:
        tmp.write_text(cleaned, encoding="utf-8", newline="\n")
    row = dict(zip(STATS_COLUMNS, (source, split or split_of(input_path), mode,
                                   *text_stats(text), *text_stats(cleaned))))
    if stats_path:
        with atomic_path(stats_path) as tmp:
            tmp.write_text("\t".join(STATS_COLUMNS) + "\n"
                           + "\t".join(str(row[c]) for c in STATS_COLUMNS) + "\n",
                           encoding="utf-8")
    if row["words_in"] == 0:
        log.warning("%s: source %s is empty (0 words); it adds nothing to the corpus. Check the "
                    "download (or corpus.dir), or drop it from corpus.sources", input_path, source)
    elif row["words_out"] == 0:
        log.warning("%s: source %s is empty after cleaning (%d words in, 0 out)", input_path,
                    source, row["words_in"])
    log.info("cleaned %s (%s, %s): %d -> %d words, %d -> %d chars, %.0f words/s",
             input_path, source, mode, row["words_in"], row["words_out"],
             row["chars_in"], row["chars_out"], row["words_in"] / max(seconds, 1e-9))
    return row


def merge_stats(stats_paths: list[str | Path], text_paths: list[str | Path],
                out: str | Path) -> list[dict]:
    """One TSV of every file's stats row plus the readability of its cleaned text
    (``text_paths[i]`` belongs to ``stats_paths[i]``); written atomically."""
    import csv

    if len(stats_paths) != len(text_paths):
        raise UserError(f"clean_stats: {len(stats_paths)} stats files but {len(text_paths)} "
                        "texts; give one cleaned text per stats file")
    rows = []
    for stats_path, text_path in zip(stats_paths, text_paths):
        with require_file(stats_path, "stats file").open(encoding="utf-8", newline="") as f:
            file_rows = list(csv.DictReader(f, delimiter="\t"))
        if len(file_rows) != 1 or not set(STATS_COLUMNS) <= set(file_rows[0]):
            raise UserError(f"{stats_path}: expected one row of {', '.join(STATS_COLUMNS)}; "
                            "re-run the clean stage")
        row = {**{c: file_rows[0][c] for c in STATS_COLUMNS}, **readability(read_text(text_path))}
        rows.append(row)
        log.info("%s (%s): Flesch reading ease %.1f, Flesch-Kincaid grade %.1f", row["source"],
                 row["split"], row["flesch_reading_ease"], row["flesch_kincaid_grade"])
    columns = (*STATS_COLUMNS, *READABILITY)
    with atomic_path(out) as tmp:
        tmp.write_text("\t".join(columns) + "\n" + "".join(
            "\t".join(str(r[c]) for c in columns) + "\n" for r in rows), encoding="utf-8")
    return rows


@cli
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m babydistill.data.clean", description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True, help=f"one of {', '.join(KNOWN_SOURCES)}")
    ap.add_argument("--mode", choices=MODES, default="improved")
    ap.add_argument("--stats", help="write a one-row TSV of line/word/char counts here")
    ap.add_argument("--split", help="split name for the stats row (default: INPUT's suffix)")
    ap.add_argument("--log", help="also log to this file")
    ap.add_argument("input")
    ap.add_argument("output")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    return clean_file(args.source, args.mode, args.input, args.output, args.stats, args.split)


if __name__ == "__main__":
    main()
