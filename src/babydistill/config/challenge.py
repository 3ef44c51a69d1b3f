"""The BabyLM challenge rules a config may be held to (``challenge:``), and the checkpoint
schedule by words seen (``checkpoints.at_words``).

Owns: the tracks (:data:`CHALLENGES`: the word budget of the training data and the epoch
cap), the official checkpoint schedule and revision names (:func:`schedule`,
:func:`revision_name`), the words a config's runs will see (:func:`planned_words`) and the
config-time check (:func:`check`), one line naming the run and its numbers.

The rules as read here (the 2025 call for papers and the 2026 guidelines and FAQ,
babylm.github.io/guidelines.html and /faqs.html):

* strict-small: at most 10M words of training data; strict: at most 100M;
* at most 10 epochs over it, so at most 100M (strict-small) / 1B (strict) words seen;
* the training data of ancillary models (teachers, rerankers) counts toward the budget: a
  distilled student's words seen include its teachers' (a teacher cache's teachers too).
  We read this strictly: the words *seen* by every model involved are summed and held to
  the words-seen cap (epoch cap x data budget); the rules do not say whether teachers
  trained on the same 10M words count once or per epoch.

Words are whitespace words, as the BabyLM data statistics count them (``len(line.split())``,
which ``data.tokenize_split`` records per file). At config time the data's words are its
nominal size (a split named ``..._10M`` holds 10M words, the demo world its
``demo_world.words``; otherwise the budget itself); the training stages record the measured
words seen (``train.callbacks.WordsSeen``) and the ``budget`` table holds those to the rules.

The schedule and names follow the official collation, babylm/evaluation-pipeline-2025
``evaluation_pipeline/collate_preds.py`` @591121d (``STRICT_SMALL_FAST_REVISIONS``: chck_1M
.. chck_9M, chck_10M .. chck_100M; ``OTHER_FAST_REVISIONS``: then chck_100M .. chck_1000M).
Counts below a million, for small runs, are named in thousands: ``chck_50K``.

The fast evaluation (:data:`FAST_SIZES`, :func:`official_dataset`, :func:`fast_limit`): the
same collate_preds.py asserts that every paradigm (UID) of a revision's fast predictions holds
``BLIMP_FAST_SIZE`` = 200 pairs (BLiMP), ``SUPPLEMENT_FAST_SIZE`` = 50 (the supplement) and
``EWOK_FAST_SIZE`` = 100 (EWoK) (``FAST_SIZES``, ``_check_size``). The subsets themselves are
files on OSF (``evaluation_data/fast_eval/{blimp,supplement,ewok}_fast``), not code: here a
suite's fast subset is the first N pairs of each paradigm file, which is the whole file for
the official fast folders.
"""

from __future__ import annotations

import re
from typing import Any

from babydistill.common import UserError
from babydistill.config import names

M = 1_000_000
EPOCH_CAP = 10
CHALLENGES: dict[str, dict[str, int]] = {
    "strict-small-2026": {"data_words": 10 * M, "max_epochs": EPOCH_CAP},
    "strict-2026": {"data_words": 100 * M, "max_epochs": EPOCH_CAP},
}


# pairs per paradigm of the official fast subsets (collate_preds.py @591121d, FAST_SIZES)
FAST_SIZES = {"blimp": 200, "supplement": 50, "ewok": 100}
# the official collation's --track of each challenge (its revision list: strict-small's ends
# at chck_100M)
TRACKS = {"strict-small-2026": "strict-small", "strict-2026": "strict"}


def official_dataset(config: dict, suite: str) -> str:
    """The BabyLM 2025 dataset suite ``suite`` stands for (``eval.blimp.suites.<suite>.
    official``), else guessed from its name: *supplement*, *ewok*, else blimp."""
    own = (((config.get("eval") or {}).get("blimp") or {}).get("suites") or {}).get(suite) or {}
    if own.get("official"):
        return own["official"]
    name = suite.lower()
    return "supplement" if "supplement" in name else "ewok" if "ewok" in name else "blimp"


def fast_limit(config: dict, suite: str) -> int:
    """Pairs per paradigm of suite ``suite`` in the fast evaluation: ``eval.revisions.limit``,
    else the official fast size of its dataset."""
    limit = (((config.get("eval") or {}).get("revisions") or {}).get("limit"))
    return int(limit) if limit else FAST_SIZES[official_dataset(config, suite)]


def words_cap(challenge: str) -> int:
    """The most words a model (teachers included) may see: the epoch cap x the data budget."""
    c = CHALLENGES[challenge]
    return c["data_words"] * c["max_epochs"]


def schedule(challenge: str) -> list[int]:
    """The official checkpoints in words seen: every 1M to 10M, every 10M to 100M, and
    every 100M to 1B outside strict-small (collate_preds.py @591121d)."""
    out = [i * M for i in range(1, 10)] + [i * 10 * M for i in range(1, 11)]
    if words_cap(challenge) > 100 * M:
        out += [i * 100 * M for i in range(2, 11)]
    return out


def revision_name(words: int) -> str:
    """``chck_<N>M`` as the official names go; below a million (or between) ``chck_<N>K``."""
    if words % M == 0:
        return f"chck_{words // M}M"
    if words % 1000 == 0:
        return f"chck_{words // 1000}K"
    raise UserError(f"checkpoints.at_words: {words} is not a whole number of thousands")


def at_words(config: dict) -> list[int]:
    """The word counts to write revisions at: ``checkpoints.at_words`` (a list, or a
    challenge's name for its schedule), else the challenge's schedule, else none."""
    value = (config.get("checkpoints") or {}).get("at_words")
    if value is None:
        value = config.get("challenge")
    if value is None:
        return []
    return schedule(value) if isinstance(value, str) else sorted(set(int(v) for v in value))


def data_words(config: dict) -> tuple[int, str]:
    """The training data's nominal words, and where the number comes from."""
    corpus = config["corpus"]
    if corpus.get("demo_world"):
        return int((config.get("demo_world") or {}).get("words", 300_000)), "demo_world.words"
    m = re.search(r"(\d+)M$", str(corpus.get("train_split", "")))
    if m:
        return int(m.group(1)) * M, f"corpus.train_split {corpus['train_split']}"
    return CHALLENGES[config["challenge"]]["data_words"], "the budget (size not in the split name)"


def _epochs(config: dict, section: str, name: str) -> int:
    from babydistill.config import training_of

    return int(training_of(config, config[section][name])["epochs"])


def planned_words(config: dict) -> dict[str, dict[str, Any]]:
    """Per run (``section.name``): its epochs, its own words seen and the total with its
    teachers' (``teachers``: their run names), from the data's nominal words."""
    words, _ = data_words(config)
    out: dict[str, dict[str, Any]] = {}
    for name in config.get("pretrain") or {}:
        e = _epochs(config, "pretrain", name)
        out[f"pretrain.{name}"] = {"epochs": e, "own": e * words, "teachers": [],
                                   "total": e * words}
    for name, run in (config.get("distill") or {}).items():
        e = _epochs(config, "distill", name)
        teachers = [names.split_instance(t)[0] for t in run.get("teachers") or []]
        total = e * words + sum(out[f"pretrain.{t}"]["own"] for t in teachers)
        out[f"distill.{name}"] = {"epochs": e, "own": e * words, "teachers": teachers,
                                  "total": total}
    for name, members in (config.get("ensembles") or {}).items():
        ms = [names.split_instance(m)[0] for m in members]
        out[f"ensembles.{name}"] = {"epochs": 0, "own": 0, "teachers": ms,
                                    "total": sum(out[f"pretrain.{m}"]["own"] for m in ms)}
    return out


def _fmt(n: int) -> str:
    if not n:
        return "0"
    return f"{n / M:g}M" if n >= M else f"{n / 1000:g}K"


def violations(config: dict) -> list[str]:
    """Every way the config's runs break its challenge's rules, each as a phrase (epoch cap
    first, then the words seen with teachers, then the data budget)."""
    challenge = config.get("challenge")
    if not challenge:
        return []
    rules, cap = CHALLENGES[challenge], words_cap(challenge)
    plan = planned_words(config)
    words, where = data_words(config)
    out = [f"{run} trains {p['epochs']} epochs, the rules allow {rules['max_epochs']} "
           f"({_fmt(p['own'])} words seen)"
           for run, p in plan.items() if p["epochs"] > rules["max_epochs"]]
    out += [f"{run} sees {_fmt(p['total'])} words with its teachers' "
            f"({', '.join(p['teachers'])}), over the {_fmt(cap)} cap"
            for run, p in plan.items() if p["teachers"] and p["total"] > cap]
    if words > rules["data_words"]:
        out.append(f"the training data holds {_fmt(words)} words ({where}), over the "
                   f"{_fmt(rules['data_words'])} budget")
    return out


def check(config: dict, source: str = "config") -> None:
    """One line naming the first run outside the challenge's rules and its numbers (and how
    many more there are); nothing when the config keeps them."""
    found = violations(config)
    if found:
        more = (f" (and {len(found) - 1} more: python -m babydistill.config {source} "
                "--words lists them)" if len(found) > 1 else "")
        raise UserError(f"{source}: challenge {config['challenge']}: {found[0]}{more}")


def report(config: dict, challenge: str) -> list[str]:
    """Every run's epochs and words seen (own, with teachers) against ``challenge``, one
    line a run, then each way the config breaks its rules."""
    cap = words_cap(challenge)
    lines = [f"{run}: {p['epochs']} epochs, {_fmt(p['own'])} words seen, "
             f"{_fmt(p['total'])} with teachers (cap {_fmt(cap)})"
             for run, p in planned_words(config).items()]
    return lines + [f"outside {challenge}: {v}"
                    for v in violations({**config, "challenge": challenge})]


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "config.challenge", "python -m babydistill.config (--words) and "
                 "every config check")
