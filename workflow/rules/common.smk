# Shared by the rule files. The prepared config, a run's folders, the instance lists
# (models, suites, tasks, teacher caches), the wildcard constraints, the resources table,
# and the functions of more than one line (a download's location, the training inputs,
# the targets of rule all). A rule file keeps its own constants and one-line lambdas
# beside its rules (Snakemake's lint wants no function definitions there).

import json
import re
import types

from snakemake.exceptions import WorkflowError

from babydistill import config as bdconfig
from babydistill.config import finetune_recipes
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

# The instances: sources, models, suites, tasks (names from config, all checked by prepare).
CORPUS = bdconfig.section(config, "corpus")
SOURCES = CORPUS["sources"]
# BabyLlama-2: a line-wise selection split of the cleaned train files is the eval-loss set.
SELECT_FRACTION = CORPUS["select_fraction"]
EVAL_SPLIT = "select" if SELECT_FRACTION else "dev"
PRETRAIN = bdconfig.instances(config, "pretrain")
DISTILL = bdconfig.instances(config, "distill")
ENSEMBLES = list(config.get("ensembles") or {})
# Each peer of a wml run is a model of its own: <run>-peer<i> -> (run, i)
WML_PEERS = bdconfig.wml_peers(config)
MODELS = bdconfig.model_names(config)
# Revisions by words seen (checkpoints.at_words, else the challenge's schedule), written
# inside each training rule's model folder (revisions/, hub.git): "" = none
AT_WORDS = ",".join(str(w) for w in bdconfig.challenge.at_words(config))
# The logit-averaged ensemble is scored zero-shot only: it has no single network to fine-tune.
FINETUNE_MODELS = PRETRAIN + DISTILL + list(WML_PEERS)
# The models a training stage wrote, each with its ledger and revisions/ (eval_revisions)
TRAINED = bdconfig.trained_models(config)
SUITES = bdconfig.section(config, "eval", "blimp").get("suites") or {}
FINETUNE = bdconfig.section(config, "eval", "finetune")
# task -> --spec: eval.finetune.tasks (babylm-2023), or the babylm-2025 recipe's own set
TASKS = finetune_recipes.task_specs(FINETUNE)


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
                "precision": _run["cache"].get("precision"),  # None: fp32, no flag
                "user": _name,
            },
        )


def alternation(names):
    """A wildcard constraint that matches exactly one of ``names``."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def one_of(wildcard, names):
    """``{wildcard,<regex>}`` for a path: the wildcard matches exactly one of ``names``."""
    return f"{{{wildcard},{alternation(names)}}}"


# Wildcards that mean one thing in every rule; a rule's own pattern narrows where it must
# (one_of: the model rules, the cleaned splits).
# The paper tables that name a BabyLM pipeline's scoring (tables.paper.<t>.convention, their
# paper's year) have their models scored that way too on their suites, where that is not the
# suite's own convention: (suite, convention, model) -> eval/blimp/<suite>/<convention>/<model>.json
PAPER_SCORINGS = sorted(
    {
        (suite, table["convention"], model)
        for table in ((config.get("tables") or {}).get("paper") or {}).values()
        if table["kind"] == "zero_shot" and table.get("convention")
        for suite in table.get("suites") or SUITES
        if table["convention"] != bdconfig.blimp_scoring(config, suite)[0]
        for model in MODELS
        if bdconfig.in_table(model, table["models"])
    }
)
CONVENTIONS = bdconfig.specs.schema()["$defs"]["blimp_convention"]["enum"]
# Hyperparameter sweeps: each one's worker spec, and its workers' indices.
SWEEPS = {n: bdconfig.sweep_spec(config, n) for n in config.get("sweeps") or {}}
SWEEP_WORKERS = {n: list(range(s["workers"])) for n, s in SWEEPS.items()}
# The best trial of a sweep the config names (sweep:<name>:best), retrained with its base run's
# seeds (the sweep_best jobs; pretrain and distill train the rest): instance -> {sweep, section}
SWEEP_BEST = bdconfig.sweep_best_models(config)
PRETRAIN_RUNS = [n for n in PRETRAIN if n not in SWEEP_BEST]
DISTILL_RUNS = [n for n in DISTILL if n not in SWEEP_BEST]


wildcard_constraints:
    convention=alternation(CONVENTIONS),
    source=alternation(SOURCES),
    split="train|dev|select",
    suite=alternation(SUITES),
    task=alternation(TASKS),
    model=alternation(MODELS),
    key=alternation(CACHES),
    peer=alternation(WML_PEERS),
    sweep=alternation(SWEEPS),
    worker=r"\d+",


def as_json(obj):
    """A spec passed on the command line (quoted in the shell with {params.x:q}); a params
    function, not a string: Snakemake would take the JSON's braces for wildcards."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def flags(flag, values):
    """An optional or repeated CLI flag: [flag, v] for every value (a list, or one value;
    None gives []). Rules pass it with {params.x:q}: each item is shell-quoted."""
    values = values if isinstance(values, (list, tuple)) else [values]
    return [a for v in values if v is not None for a in (flag, str(v))]


def token_prefix(meta_json):
    """results/<run>/tokens/train.json -> results/<run>/tokens/train (the CLIs take prefixes)."""
    return meta_json.removesuffix(".json")


# SHA-256 of every URL download without a configured sha256, recorded at its first download
DOWNLOAD_LOCK = f"{R}/downloads.lock.json"


def location_args(loc, demo_path):
    """CLI arguments (a list) that say where a download stage takes its data from.

    The values come from config (paths, URLs with '&' or '?'), so the rules pass this list
    with {params.location:q}: every element is shell-quoted and reaches the CLI verbatim.
    (One sha256 per url: babydistill.config.prepare checked that.)
    """
    if loc.get("demo_world"):
        return ["--dir", demo_path]
    sub = flags("--subdir", loc.get("subdir") or None)
    if loc.get("dir"):
        return ["--dir", loc["dir"], *sub]
    if loc.get("url"):
        return (
            flags("--url", loc["url"])
            + flags("--sha256", loc.get("sha256") or [])
            + ["--lock", DOWNLOAD_LOCK]
            + sub
        )
    raise WorkflowError(
        f"config error: give a url, a dir, or demo_world: true for {loc}"
    )


def msgs_args(loc):
    """download glue's --msgs-* arguments (a list, like location_args) when the
    eval.finetune.msgs location ``loc`` names the MSGS data."""
    sub = flags("--msgs-subdir", loc.get("subdir") or None)
    if loc.get("dir"):
        return ["--msgs-dir", loc["dir"], *sub]
    if loc.get("url"):
        return flags("--msgs-url", loc["url"]) + sub
    return []


def demo_world_input(loc):
    return [f"{R}/demo_world"] if loc.get("demo_world") else []


def blimp_curve_suite(section, name):
    """[the first BLiMP suite's directory] when training run ``name`` records per-epoch
    BLiMP curves (training key blimp_every_epoch), else []."""
    train = bdconfig.training_of(config, bdconfig.run_of(config, section, name))
    if not (train.get("blimp_every_epoch") and SUITES):
        return []
    return [f"{R}/data/suites/{next(iter(SUITES))}"]


def cache_dirs(name):
    key = bdconfig.cache_key(config, name)
    return [f"{R}/teacher_cache/{key}"] if key else []


def training_inputs(section):
    """input: of pretrain / distill (an unpack()ed dict per model)."""

    def inputs(w):
        files = {
            "train": f"{R}/tokens/train.json",
            "dev": f"{R}/tokens/{EVAL_SPLIT}.json",  # the eval-loss split
            "tokenizer": f"{R}/tokenizer",
            # per-epoch BLiMP curves (training key blimp_every_epoch): the first suite
            "blimp_suite": blimp_curve_suite(section, w.name),
        }
        if section == "distill":
            files.update(teachers=teacher_dirs(w.name), cache=cache_dirs(w.name))
        return files

    return inputs


def sweep_inputs(w):
    """input: of sweep_worker: its base run's training inputs (teachers too, for a trial
    with its own teacher cache), and objective blimp's suite."""
    spec = SWEEPS[w.sweep]
    files = training_inputs(spec["section"])(types.SimpleNamespace(name=spec["base"]))
    if spec["objective"] == "blimp":
        files["objective_suite"] = f"{R}/data/suites/{spec['suite']}"
    return files


def sweep_best_inputs(w):
    """input: of sweep_best: its base run's training inputs and the sweep's best.json."""
    best = SWEEP_BEST[w.name]
    files = training_inputs(best["section"])(w)
    files["best"] = f"{R}/sweeps/{best['sweep']}/best.json"
    return files


def sweep_best_args(w, input):
    """The CLI of a sweep_best job: the base run's stage module, and (a distill run's)
    --teacher or --cache flags, as distill's."""
    if SWEEP_BEST[w.name]["section"] == "pretrain":
        return ["babydistill.train.pretrain"]
    live = [] if input.cache else input.teachers
    return [
        "babydistill.distill.student",
        *flags("--teacher", list(live)),
        *flags("--cache", input.cache),
    ]


def sweep_best_size(name, key):
    """mem_mb of a best run's job (its base run's), or its runtime: the base run's times the
    longest num_epochs of the sweep's space over the base's (best.json is not read yet).
    """
    best = SWEEP_BEST[name]
    base = bdconfig.job_resources(config, best["section"], name)
    if key != "runtime":
        return base[key]
    spec = SWEEPS[best["sweep"]]
    epochs = spec["space"].get("num_epochs", {}).get("high", 0)
    return int(base[key] * max(1.0, epochs / sweep_best_spec(name)["train"]["epochs"]))


def sweep_best_spec(name):
    """The job spec of a best run's instance before best.json is applied: its base run's."""
    section = SWEEP_BEST[name]["section"]
    spec = bdconfig.pretrain_spec if section == "pretrain" else bdconfig.distill_spec
    return spec(config, name)


def sweep_size(sweep, key):
    """mem_mb of a sweep worker (its base run's), or its runtime: the base run's times the
    trials a worker runs, times the longest num_epochs of the space over the base's."""
    spec = SWEEPS[sweep]
    base = bdconfig.job_resources(config, spec["section"], spec["base"])
    if key != "runtime":
        return base[key]
    epochs = spec["space"].get("num_epochs", {}).get("high", 0)
    longer = max(1.0, epochs / spec["stage"]["train"]["epochs"])
    return int(base[key] * longer * -(-spec["trials"] // spec["workers"]))


def all_targets():
    """The targets of rule all, every model with its evaluations and card, the corpus
    statistics and the tables."""
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
    for suite in SUITES:
        targets += [f"{R}/eval/blimp/{suite}/{m}.json" for m in MODELS]
    for task in TASKS:
        targets += [f"{R}/eval/finetune/{task}/{m}.json" for m in FINETUNE_MODELS]
    targets += [f"{R}/model_cards/{m}/README.md" for m in MODELS]
    if SUITES:  # every checkpoint's fast evaluation and the learning curves
        targets += [f"{R}/eval/revisions/{m}.json" for m in TRAINED]
        targets.append(f"{R}/figures/learning_curves.png")
    targets += [f"{R}/sweeps/{s}/best.yaml" for s in SWEEPS]
    return targets


# resources: of every rule, (gpu, mem_mb, runtime in minutes); the rules that train
# (pretrain, distill, teacher_cache) size each job from its model's training config.
RESOURCES = {
    "demo_world": (0, 1000, 10),
    "download_corpus": (0, 2000, 60),
    "clean_source": (0, 2000, 20),
    "clean_stats": (0, 2000, 10),
    "train_tokenizer": (0, 4000, 30),
    "select_split": (0, 2000, 10),
    "tokenize_split": (0, 4000, 30),
    "download_suite": (0, 1000, 30),
    "download_glue": (0, 1000, 30),
    "lm_eval_tasks": (0, 1000, 10),
    "eval_blimp": (1, 8000, 120),
    "eval_revisions": (1, 8000, 120),
    "learning_curves": (0, 2000, 10),
    "export": (0, 2000, 10),
    "finetune": (1, 8000, 240),
    "wml_peer": (0, 1000, 10),
    "ensemble": (0, 4000, 10),
    "tables": (0, 4000, 30),
    "model_card": (0, 1000, 10),
    "sweep_results": (0, 2000, 10),
}


def job_resources(rule_name):
    """``resources:`` of ``rule_name`` (gpu, mem_mb, runtime): fixed, or per job from the
    training config (bdconfig.gpus / bdconfig.job_resources) for the rules that train.
    """
    if rule_name in RESOURCES:
        return dict(zip(("gpu", "mem_mb", "runtime"), RESOURCES[rule_name]))
    if rule_name == "sweep_best":
        return {
            "gpu": lambda w: bdconfig.gpus(
                config, SWEEP_BEST[w.name]["section"], w.name
            ),
            "mem_mb": lambda w: sweep_best_size(w.name, "mem_mb"),
            "runtime": lambda w: sweep_best_size(w.name, "runtime"),
        }
    if rule_name == "sweep_worker":  # one GPU each: --resources gpu=N runs N at once
        return {
            "gpu": 1,
            "mem_mb": lambda w: sweep_size(w.sweep, "mem_mb"),
            "runtime": lambda w: sweep_size(w.sweep, "runtime"),
        }
    section = "pretrain" if rule_name == "pretrain" else "distill"

    def model(w):  # the model whose training config sizes the job
        return CACHES[w.key]["user"] if rule_name == "teacher_cache" else w.name

    def sized(key):
        return lambda w: bdconfig.job_resources(config, section, model(w))[key]

    gpu = (
        1
        if rule_name == "teacher_cache"
        else lambda w: bdconfig.gpus(config, section, w.name)
    )
    return {"gpu": gpu, "mem_mb": sized("mem_mb"), "runtime": sized("runtime")}
