# Paths, config validation and small helpers shared by every rule file.

import json
import os
import re
import shlex

from snakemake.exceptions import WorkflowError

from babydistill import config as bdconfig
from babydistill.config import names as bdnames
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


# Wildcards that mean one thing in every rule; a rule's own pattern narrows where it must
# (one_of: the model rules, the cleaned splits).
wildcard_constraints:
    source=alternation(SOURCES),
    split="train|dev|select",
    suite=alternation(SUITES),
    task=alternation(TASKS),
    model=alternation(MODELS),
    key=alternation(CACHES),
    peer=alternation(WML_PEERS),


def one_of(wildcard, names):
    """``{wildcard,<regex>}`` for a path: the wildcard matches exactly one of ``names``."""
    return f"{{{wildcard},{alternation(names)}}}"


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
    "finetune": (1, 8000, 240),
    "wml_peer": (0, 1000, 10),
    "ensemble": (0, 4000, 10),
    "tables": (0, 4000, 30),
}


def job_resources(rule_name):
    """``resources:`` of ``rule_name`` (gpu, mem_mb, runtime): fixed, or per job from the
    training config (bdconfig.gpus / bdconfig.job_resources) for the rules that train.
    """
    if rule_name in RESOURCES:
        return dict(zip(("gpu", "mem_mb", "runtime"), RESOURCES[rule_name]))
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


def training_args(section):
    """The stage CLI's arguments (pretrain / distill): the spec as JSON, shell-quoted (config
    text never runs), the splits' prefixes, the model and checkpoint folders, the teachers.
    """

    def args(w, input, output):
        spec = (
            bdconfig.pretrain_spec if section == "pretrain" else bdconfig.distill_spec
        )
        blimp = " ".join(f"--blimp-suite {d}" for d in input.blimp_suite)
        out = (
            f"--spec {shlex.quote(as_json(spec(config, w.name)))}"
            f" --train {token_prefix(input.train)} --dev {token_prefix(input.dev)}"
            f" --tokenizer {input.tokenizer} --out {output[0]} --checkpoint-dir"
            f" {R}/checkpoints/{w.name} {blimp}"
        )
        if section == "distill":  # cached targets replace the live teachers
            live = [] if input.cache else input.teachers
            out += " " + " ".join(f"--teacher {t}" for t in live)
            out += " " + " ".join(f"--cache {c}" for c in input.cache)
        return out

    return args


def teacher_cache_args(w, input):
    c = CACHES[w.key]
    return (
        " ".join(f"--teacher {t}" for t in c["teachers"])
        + f" --train {token_prefix(input.train)} --seq-length {config['data']['seq_length']}"
        + f" --k {c['k']} --temperature {c['temperature']}"
    )


BLIMP = EVAL.get("blimp", {})
BLIMP_LIMIT = f"--limit {BLIMP['limit']}" if BLIMP.get("limit") else ""


def glue_location(w):
    """download glue's location (a list, shell-quoted item by item in the rule); a function:
    a brace in a path is text, not a wildcard."""
    return location_args(FINETUNE, f"{R}/demo_world/glue") if TASKS else []


def eval_blimp_inputs(w):
    return {
        "model": f"{R}/models/{w.model}",
        "suite": f"{R}/data/suites/{w.suite}",
        "tasks": f"{R}/lm_eval_tasks/{w.suite}",
    }


def eval_blimp_args(w, input, output):
    """eval_blimp's arguments after --model; no --trust-remote-code: ensembles load with
    babydistill's own classes."""
    return (
        f"--suite-dir {input.suite} --suite {w.suite} --out {output.scores}"
        f" --pairs-out {output.pairs} --backend {BLIMP.get('backend', 'lmeval')}"
        f" --batch-size {BLIMP.get('batch_size', 64)} {BLIMP_LIMIT}"
        f" --tasks-dir {input.tasks}"
    )


def finetune_args(w, input, output):
    """finetune's arguments but --threads: the task's spec as JSON, shell-quoted, and the
    eval.finetune max_train / max_valid limits."""
    limits = " ".join(
        f"--{k.replace('_', '-')} {FINETUNE[k]}" if FINETUNE.get(k) else ""
        for k in ("max_train", "max_valid")
    )
    return (
        f"--model {input.model} --task {w.task} --data-dir {input.data}"
        f" --spec {shlex.quote(as_json(TASKS[w.task]))} --out {output[0]} {limits}"
    )


# The raw corpus folders (train and dev splits) and the cleaned files' pattern.
RAW = [f"{R}/corpus/raw/{CORPUS[s]}" for s in ("train_split", "dev_split")]
CLEAN = f"{R}/corpus/clean/{{split}}/{{source}}"
# report() captions and categories of the files shown in `snakemake --report`
REPORT = {
    name: {"caption": f"../report/{caption}.rst", "category": category}
    for name, caption, category in [
        ("clean_stats", "clean_stats", "Corpus"),
        ("summary", "summary", "Tables"),
        ("zero_shot", "zero_shot", "Tables"),
        ("finetune", "finetune", "Tables"),
        ("provenance", "provenance", "Tables"),
        ("paper", "paper_table", "Paper tables"),
        ("paper_figures", "paper_figure", "Paper tables"),
        ("zero_shot_figure", "zero_shot_figure", "Figures"),
        ("finetune_figure", "finetune_figure", "Figures"),
        ("curves", "curves", "Figures"),
    ]
}


def download_corpus_args(w, output):
    """download corpus's arguments; the location's items shell-quoted one by one (config
    paths and URLs), as {params.location:q} would; a brace in a path is text."""
    location = " ".join(
        shlex.quote(a) for a in location_args(CORPUS, f"{R}/demo_world/corpus")
    )
    return (
        f"--layout {CORPUS['layout']} {location}"
        f" --out {os.path.dirname(os.path.dirname(output[0]))}"
        f" --train-split {CORPUS['train_split']} --dev-split {CORPUS['dev_split']}"
        f" --sources {','.join(SOURCES)}"
    )


TOKENIZER_ARGS = (
    f"--vocab-size {config['tokenizer']['vocab_size']}"
    f" --min-frequency {config['tokenizer'].get('min_frequency', 2)}"
)


def tokenize_inputs(w):
    return {"tokenizer": f"{R}/tokenizer", "texts": split_texts(w)}


def tokenize_args(w, input, output):
    """--tokenizer, --out PREFIX, and data.max_train_tokens (a smoke run's short training
    split)."""
    max_tokens = config["data"].get("max_train_tokens")
    limit = f"--max-tokens {max_tokens}" if w.split == "train" and max_tokens else ""
    return f"--tokenizer {input.tokenizer} --out {token_prefix(output.meta)} {limit}"


# The tables rule's inputs, outputs and arguments: every result, the config's tables.

TABLES = config.get("tables") or {}
PAPER_TABLES = list(TABLES.get("paper") or {})
PAPER_FIGURES = [
    n
    for n, t in (TABLES.get("paper") or {}).items()
    if t["kind"] in ("zero_shot", "finetune")
]
# Only the WML runs' weights trajectories: read when the run wrote wml_weights.csv.
WML = [
    n for n in DISTILL if bdconfig.run_of(config, "distill", n)["objective"] == "wml"
]


TABLE_INPUTS = {
    "blimp": expand(
        f"{R}/eval/blimp/{{suite}}/{{model}}.json", suite=SUITES, model=MODELS
    ),
    "finetune": expand(
        f"{R}/eval/finetune/{{task}}/{{model}}.json", task=TASKS, model=FINETUNE_MODELS
    ),
    "models": expand(f"{R}/models/{{model}}", model=MODELS),
}
T = f"{R}/tables"
F = f"{R}/figures"
# named outputs; the HTML tables and the figures are shown in `snakemake --report`
TABLE_OUTPUTS = {
    "summary": f"{T}/summary.csv",
    "zero_shot": f"{T}/zero_shot.csv",
    "finetune": f"{T}/finetune.csv",
    "markdown": f"{T}/summary.md",
    **{
        f"{n}_html": report(f"{T}/{n}.html", **REPORT[n])
        for n in ("summary", "zero_shot", "finetune", "provenance")
    },
    "paper": report(
        expand(f"{T}/paper/{{name}}.html", name=PAPER_TABLES), **REPORT["paper"]
    ),
    "paper_files": expand(
        f"{T}/paper/{{name}}.{{ext}}", name=PAPER_TABLES, ext=["csv", "md", "tex"]
    ),
    "paper_figures": report(
        expand(f"{F}/paper/{{name}}.png", name=PAPER_FIGURES), **REPORT["paper_figures"]
    ),
    "zero_shot_figure": report(f"{F}/zero_shot.png", **REPORT["zero_shot_figure"]),
    "finetune_figure": report(f"{F}/finetune.png", **REPORT["finetune_figure"]),
    "curves": report(f"{F}/training_curves.png", **REPORT["curves"]),
}


def tables_args(w, input, output):
    """The tables CLI's arguments: every result and model file, and the config's tables."""
    by_model = lambda file: " ".join(
        f"{m}={d}/{file}" for m, d in zip(MODELS, input.models)
    )
    # where a WML run may have written its peer weights (the first that exists is read)
    wml_weights = " ".join(
        f"{n}={R}/{where}/wml_weights.csv"
        for n in WML
        for where in (f"models/{n}", f"models/{bdnames.peer(n, 1)}", f"checkpoints/{n}")
    )
    compare = " ".join(
        f"{n}={bdconfig.baseline_of(config, n)}"
        for n in PRETRAIN + DISTILL
        if bdconfig.baseline_of(config, n)
    )
    return (
        f"--blimp {' '.join(input.blimp)} --finetune {' '.join(input.finetune)}"
        f" --metrics {by_model('metrics.csv')} --provenance {by_model('provenance.json')}"
        f" --models {' '.join(MODELS)} --distilled {' '.join(DISTILL)}"
        f" --wml-weights {wml_weights} --compare {compare}"
        f" --tables-config {shlex.quote(as_json(TABLES))}"
        f" --finetune-tasks {shlex.quote(as_json(TASKS))}"
        f" --out {os.path.dirname(os.path.dirname(output.summary))}"
    )
