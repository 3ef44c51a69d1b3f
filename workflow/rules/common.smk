# Paths, config validation and small helpers shared by every rule file.

import json
import os
import re

from snakemake.exceptions import WorkflowError

from babydistill import config as bdconfig
from babydistill.common import UserError

# --config values arrive as strings (Snakemake reads them with YAML's BaseLoader): type them
CONFIG_OVERRIDES = dict(workflow.config_settings.config or {})
bdconfig.coerce_overrides(config, CONFIG_OVERRIDES)
try:
    bdconfig.prepare(
        config,
        source=" + ".join(
            [
                *(list(map(str, workflow.configfiles)) or ["config.yaml"]),
                *(["--config"] if CONFIG_OVERRIDES else []),
            ]
        ),
    )
except UserError as e:
    raise WorkflowError(f"config error: {e}")

RUN = config["run"]
R = f"results/{RUN}"  # outputs
LOGS = f"results/logs/{RUN}"  # one log per job
BENCH = f"results/benchmarks/{RUN}"  # Snakemake's per-job benchmark TSVs
ENV = "../../envs/babydistill.yaml"  # for --software-deployment-method conda
# SHA-256 of every URL download without a configured sha256, recorded at its first download
DOWNLOAD_LOCK = f"{R}/downloads.lock.json"

CORPUS = config["corpus"]
SOURCES = CORPUS["sources"]
SPLITS = ["train", "dev"]
SPLIT_DIR = {"train": CORPUS["train_split"], "dev": CORPUS["dev_split"]}
# BabyLlama-2: a line-wise selection split of the cleaned train files is the eval-loss set.
SELECT_FRACTION = CORPUS.get("select_fraction") or 0
EVAL_SPLIT = "select" if SELECT_FRACTION else "dev"
PRETRAIN = bdconfig.instances(config, "pretrain")
DISTILL = bdconfig.instances(config, "distill")
ENSEMBLES = list(config.get("ensembles") or {})
# Each peer of a wml run is a model of its own: <run>-peer<i> -> (run, i)
WML_PEERS = bdconfig.wml_peers(config)
MODELS = bdconfig.model_names(config)
# The logit-averaged ensemble is scored zero-shot only: it has no single network to fine-tune.
FINETUNE_MODELS = PRETRAIN + DISTILL + list(WML_PEERS)
EVAL = config.get("eval") or {}
SUITES = EVAL.get("blimp", {}).get("suites", {})
FINETUNE = EVAL.get("finetune", {})
TASKS = FINETUNE.get("tasks", {})


def alternation(names):
    """A wildcard constraint that matches exactly one of ``names``."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def as_json(obj):
    """A spec passed on the command line (quoted in the shell with {params.x:q})."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def location_args(loc, demo_path):
    """CLI arguments (a list) that say where a download stage takes its data from.

    The values come from config (paths, URLs with '&' or '?'), so the rules pass this list
    with {params.location:q}: every element is shell-quoted and reaches the CLI verbatim.
    """
    if loc.get("demo_world"):
        return ["--dir", demo_path]
    sub = ["--subdir", loc["subdir"]] if loc.get("subdir") else []
    if loc.get("dir"):
        return ["--dir", loc["dir"], *sub]
    if loc.get("url"):
        urls = loc["url"] if isinstance(loc["url"], list) else [loc["url"]]
        digests = loc.get("sha256") or []
        digests = digests if isinstance(digests, list) else [digests]
        if digests and len(digests) != len(urls):
            raise WorkflowError(
                f"config error: sha256: give one digest per url ({len(urls)} urls) in {loc}"
            )
        return (
            [arg for u in urls for arg in ("--url", u)]
            + [arg for h in digests for arg in ("--sha256", h)]
            + ["--lock", DOWNLOAD_LOCK]
            + sub
        )
    raise WorkflowError(
        f"config error: give a url, a dir, or demo_world: true for {loc}"
    )


def uses_demo_world():
    suites = (config.get("eval") or {}).get("blimp", {}).get("suites", {})
    return bool(
        CORPUS.get("demo_world")
        or any(s.get("demo_world") for s in suites.values())
        or (config.get("eval") or {}).get("finetune", {}).get("demo_world")
    )


def teacher_dirs(name):
    return [f"{R}/models/{t}" for t in bdconfig.teachers_of(config, name)]


# Teacher caches, one per (teachers, k, temperature): variants and seeds share them.
CACHES = {}
for _name in DISTILL:
    _key = bdconfig.cache_key(config, _name)
    if _key:
        _run = bdconfig.run_of(config, "distill", _name)
        # "user": a variant that reads it, whose job sizes the cache job
        CACHES.setdefault(
            _key,
            {
                "teachers": teacher_dirs(_name),
                "k": _run["cache"]["k"],
                "temperature": _run["temperature"],
                "user": _name,
            },
        )


def cache_dirs(name):
    key = bdconfig.cache_key(config, name)
    return [f"{R}/teacher_cache/{key}"] if key else []


def blimp_curve_suite(section, name):
    """[the first BLiMP suite's directory] when training run ``name`` records per-epoch
    BLiMP curves (training key blimp_every_epoch), else []."""
    train = bdconfig.training_of(config, bdconfig.run_of(config, section, name))
    if not (train.get("blimp_every_epoch") and SUITES):
        return []
    return [f"{R}/data/suites/{next(iter(SUITES))}"]


def demo_world_input(loc):
    return [f"{R}/demo_world"] if loc.get("demo_world") else []


def split_texts(w):
    """The cleaned files a token split is made of (train = the fit part with a selection)."""
    folder = {
        "train": "fit" if SELECT_FRACTION else "train",
        "dev": "dev",
        "select": "select",
    }
    return expand(f"{R}/corpus/clean/{folder[w.split]}/{{source}}.txt", source=SOURCES)


def token_prefix(meta_json):
    """results/<run>/tokens/train.json -> results/<run>/tokens/train (the CLIs take prefixes)."""
    return meta_json.removesuffix(".json")


def all_targets():
    targets = [
        f"{R}/corpus/clean_stats.tsv",
        f"{R}/tokens/train.json",
        f"{R}/tokens/dev.json",
    ]
    if SELECT_FRACTION:
        targets.append(f"{R}/tokens/select.json")
    if SUITES:
        targets.append(f"{R}/tables/summary.csv")
    targets += [f"{R}/models/{m}" for m in MODELS]
    ev = config.get("eval") or {}
    for suite in ev.get("blimp", {}).get("suites", {}):
        targets += [f"{R}/eval/blimp/{suite}/{m}.json" for m in MODELS]
    for task in ev.get("finetune", {}).get("tasks", {}):
        targets += [f"{R}/eval/finetune/{task}/{m}.json" for m in FINETUNE_MODELS]
    return targets


def msgs_args():
    """--msgs-* arguments of download_glue when eval.finetune.msgs names the MSGS data."""
    # a list: quoted item by item in the shell ({params.msgs:q}); config text never runs
    loc = FINETUNE.get("msgs") or {}
    if not (loc.get("url") or loc.get("dir")):
        return []
    sub = ["--msgs-subdir", loc["subdir"]] if loc.get("subdir") else []
    if loc.get("dir"):
        return ["--msgs-dir", loc["dir"], *sub]
    urls = loc["url"] if isinstance(loc["url"], list) else [loc["url"]]
    return [a for u in urls for a in ("--msgs-url", u)] + sub
