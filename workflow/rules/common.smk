# Paths, config validation and small helpers shared by every rule file.

import json
import os
import re

from snakemake.exceptions import WorkflowError

from babydistill import config as bdconfig
from babydistill.common import UserError

try:
    bdconfig.prepare(config, source=" + ".join(map(str, workflow.configfiles)) or "config")
except UserError as e:
    raise WorkflowError(f"config error: {e}")

RUN = config["run"]
R = f"results/{RUN}"  # outputs
LOGS = f"results/logs/{RUN}"  # one log per job
BENCH = f"results/benchmarks/{RUN}"  # Snakemake's per-job benchmark TSVs
ENV = "../../envs/babydistill.yaml"  # for --software-deployment-method conda

CORPUS = config["corpus"]
SOURCES = CORPUS["sources"]
SPLITS = ["train", "dev"]
SPLIT_DIR = {"train": CORPUS["train_split"], "dev": CORPUS["dev_split"]}
PRETRAIN = bdconfig.instances(config, "pretrain")
DISTILL = bdconfig.instances(config, "distill")
ENSEMBLES = list(config.get("ensembles") or {})
MODELS = bdconfig.model_names(config)
# The logit-averaged ensemble is scored zero-shot only: it has no single network to fine-tune.
FINETUNE_MODELS = PRETRAIN + DISTILL
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
    """CLI arguments that say where a download stage takes its data from."""
    if loc.get("demo_world"):
        return f"--dir {demo_path}"
    sub = f" --subdir {loc['subdir']}" if loc.get("subdir") else ""
    if loc.get("dir"):
        return f"--dir {loc['dir']}{sub}"
    if loc.get("url"):
        urls = loc["url"] if isinstance(loc["url"], list) else [loc["url"]]
        return " ".join(f"--url {u}" for u in urls) + sub
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


def cache_dirs(name):
    run = bdconfig.run_of(config, "distill", name)
    return [f"{R}/teacher_cache/{name}"] if run.get("cache") else []


def blimp_curve_suite(section, name):
    """[the first BLiMP suite's directory] when training run ``name`` records per-epoch
    BLiMP curves (training key blimp_every_epoch), else []."""
    train = bdconfig._training(config, bdconfig.run_of(config, section, name))
    if not (train.get("blimp_every_epoch") and SUITES):
        return []
    return [f"{R}/data/suites/{next(iter(SUITES))}"]


def demo_world_input(loc):
    return [f"{R}/demo_world"] if loc.get("demo_world") else []


def token_prefix(meta_json):
    """results/<run>/tokens/train.json -> results/<run>/tokens/train (the CLIs take prefixes)."""
    return meta_json.removesuffix(".json")


def all_targets():
    targets = [f"{R}/corpus/clean_stats.tsv", f"{R}/tokens/train.json", f"{R}/tokens/dev.json"]
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
    loc = FINETUNE.get("msgs") or {}
    if not (loc.get("url") or loc.get("dir")):
        return ""
    sub = f" --msgs-subdir {loc['subdir']}" if loc.get("subdir") else ""
    if loc.get("dir"):
        return f"--msgs-dir {loc['dir']}{sub}"
    urls = loc["url"] if isinstance(loc["url"], list) else [loc["url"]]
    return " ".join(f"--msgs-url {u}" for u in urls) + sub
