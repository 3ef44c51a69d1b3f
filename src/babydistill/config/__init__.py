"""Layer 1, the configuration: loading, schema validation, and the per-job specs.

The package holds the schema (``schema.yaml``, package data; workflow/schemas links to it),
the typed job specs (``specs``), preset sizes (``presets``), the naming of instances, peers
and teacher caches (``names``), and what a model folder records of the spec that made it
(``provenance``). It imports only ``babydistill.common``.

The Snakefile calls :func:`prepare` once; every rule then asks this module for the spec it
passes to a stage CLI (``pretrain_spec``, ``distill_spec``, ...), so the logic that merges
defaults and presets lives here, unit-tested, and the rules stay thin.

``python -m babydistill.config CONFIG.yaml`` validates a config file and prints a summary.
"""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from babydistill.config import challenge, finetune_recipes, names, specs, sweeps
from babydistill.common import PACKAGE_DIR, REPO_ROOT, UserError, cli, in_checkout
from babydistill.config.presets import is_masked, preset_parameters  # exact and torch-free: cheap at Snakefile parse time
from babydistill.config.names import split_instance  # re-exported: callers name instances here too
from babydistill.config.specs import DistillSpec, PretrainSpec

SCHEMA = specs.SCHEMA
# the checkout's config.yaml; an installed wheel carries it as package data (default.yaml)
DEFAULT_CONFIG = REPO_ROOT / "config.yaml" if in_checkout() else PACKAGE_DIR / "config" / "default.yaml"


def _keys_of(definition: str) -> tuple[str, ...]:
    return tuple(specs.schema()["$defs"][definition]["properties"])


# The keys of a run entry that are training hyperparameters, and a distill run's loss keys
# by objective: all as the schema lists them.
_TRAINING_KEYS = _keys_of("training_keys")
_OBJECTIVE_KEYS = {"kd": (*_keys_of("loss_keys"), *_keys_of("kd_keys"), "teachers"),
                   "wml": (*_keys_of("loss_keys"), *_keys_of("wml_keys"), "reference", "peers")}
_WML_DEFAULTS = specs.defaults("wml_keys")


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{p}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping of config keys")
    return data


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, recursively for mappings (lists and scalars replace)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _check_shapes(config: dict, source: str) -> None:
    """Model presets that could not be built or trained fail here, not hours into a job
    (the cross-field checks of babydistill.config.specs, the ones every job spec gets too)."""
    seq_length = config["data"]["seq_length"]
    for name, p in config["models"].items():
        specs.check_preset_shape(p, f"{source}: models.{name}", seq_length)


def _check_digests(config: dict, source: str) -> None:
    """One sha256 per url (a list of urls takes a list of digests of the same length)."""
    ev = config.get("eval") or {}
    locations = {"corpus": config["corpus"], "eval.finetune": ev.get("finetune") or {},
                 **{f"eval.blimp.suites.{k}": v
                    for k, v in ((ev.get("blimp") or {}).get("suites") or {}).items()}}
    for where, loc in locations.items():
        urls, digests = loc.get("url"), loc.get("sha256")
        if not digests:
            continue
        n_urls = len(urls) if isinstance(urls, list) else int(bool(urls))
        n_digests = len(digests) if isinstance(digests, list) else 1
        if n_urls != n_digests:
            raise UserError(f"{source}: {where}.sha256: {n_digests} digest(s) for {n_urls} url(s); "
                            "give one per url, in the same order")


def validate(config: dict, source: str = "config") -> None:
    """Check ``config`` against the schema and the cross-references; raise one-line UserError."""
    specs.check_finite(config, "", source)
    schema = specs.schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    err = specs.worst_error(errors)
    if err is not None:
        raise UserError(f"{source}: {specs.describe(err)}")
    # the checks see sweep:<name>:best as run <name>-best (prepare() rewrites it in place)
    config = copy.deepcopy(config)
    sweeps.expand_best(config, source)
    _check_shapes(config, source)
    _check_digests(config, source)
    _check_references(config, source)
    _check_masked_runs(config, source)
    _check_blimp_scoring(config, source)
    _check_export(config, source)
    sweeps.check(config, source)
    challenge.check(config, source)  # last: the rules, on a config known to be well formed


TEMPERATURE_CONVENTIONS = ("babylm-2025",)  # the pipelines with a temperature scan (eval.scorer)


def blimp_scoring(config: dict, suite: str) -> tuple[str, list[float] | None]:
    """(convention, temperatures) suite ``suite`` is scored with: its own keys in
    ``eval.blimp.suites.<suite>``, else ``eval.blimp``'s, else the schema's default
    convention (``$defs/blimp_convention``) and no scan."""
    blimp = (config.get("eval") or {}).get("blimp") or {}
    own = (blimp.get("suites") or {}).get(suite) or {}
    convention = (own.get("convention") or blimp.get("convention")
                  or specs.schema()["$defs"]["blimp_convention"]["default"])
    temperatures = own["temperatures"] if "temperatures" in own else blimp.get("temperatures")
    return convention, temperatures


def in_table(model: str, columns: list[str]) -> bool:
    """Whether model instance ``model`` is a column of a paper table listing ``columns``: its
    run is listed, or it is a peer of a listed WML run (tables expand a run to its peers)."""
    base = names.base_name(model)
    peer = names.split_peer(base)
    return base in columns or (peer is not None and peer[0] in columns)


def _check_blimp_scoring(config: dict, source: str) -> None:
    """A temperature scan only where the suite's convention has one (babylm-2025)."""
    for suite in ((config.get("eval") or {}).get("blimp") or {}).get("suites") or {}:
        convention, temperatures = blimp_scoring(config, suite)
        if temperatures and convention not in TEMPERATURE_CONVENTIONS:
            raise UserError(f"{source}: eval.blimp.suites.{suite}: temperatures with convention "
                            f"{convention}, which has no temperature scan; use convention "
                            f"{' or '.join(TEMPERATURE_CONVENTIONS)} or drop temperatures")
        backend = section(config, "eval", "blimp")["backend"]
        if backend == "lmeval" and (convention == "babylm-2025" or temperatures):
            # lm-eval cannot drop the first token's score: the fast scorer implements it
            raise UserError(f"{source}: eval.blimp.suites.{suite}: convention {convention}"
                            f"{' with temperatures' if temperatures else ''} needs "
                            "eval.blimp.backend: fast (lm-eval cannot score it)")


def _run_presets(config: dict) -> list[tuple[str, str]]:
    """(``section.run``, preset name) of every model a pretrain or distill run trains."""
    out = [(f"pretrain.{n}", r["model"]) for n, r in config["pretrain"].items()]
    for n, r in (config.get("distill") or {}).items():
        presets = [r["student"]] if r["objective"] == "kd" else (list(r.get("peers") or [])
                                                                 or [r["reference"]])
        out += [(f"distill.{n}", p) for p in presets]
    return out


def _check_masked_runs(config: dict, source: str) -> None:
    """Masked LMs (``arch: roberta``): KD only between models of one kind, from live
    teachers; WML peers of one kind; scored by the fast backend (lm-eval has no masked-LM
    scorer). Runs after _check_references: every name here is known."""
    models, pretrain = config["models"], config["pretrain"]
    for name, run in (config.get("distill") or {}).items():
        where = f"{source}: distill.{name}"
        if run["objective"] == "kd":
            student = is_masked(models[run["student"]])
            for t in run["teachers"]:
                if is_masked(models[pretrain[t]["model"]]) != student:
                    kinds = ("masked", "causal") if student else ("causal", "masked")
                    raise UserError(f"{where}.teachers: {t!r} is a {kinds[1]} LM and the student "
                                    f"{run['student']!r} a {kinds[0]} one; KD needs teacher and "
                                    "student of one kind (the same inputs, the same positions)")
            if student and run.get("cache"):
                raise UserError(f"{where}.cache: a masked-LM student distils from live teachers "
                                "only (the top-k cache is not keyed by the masks); drop cache")
        else:
            presets = list(run.get("peers") or []) + ([run["reference"]] if "reference" in run else [])
            if len({is_masked(models[p]) for p in presets}) > 1:
                raise UserError(f"{where}: its peers and reference mix masked and causal presets "
                                f"({', '.join(presets)}); all peers see one batch: use one kind")
    if section(config, "eval", "blimp")["backend"] != "fast":
        for where, preset in _run_presets(config):
            if is_masked(models[preset]):
                raise UserError(f"{source}: {where}: {preset!r} is a masked LM "
                                f"(arch {models[preset]['arch']}) and lm-eval has no masked-LM "
                                "scorer; set eval.blimp.backend: fast")


def _check_export(config: dict, source: str) -> None:
    """export.models names trained models (an ensemble has no checkpoints to export)."""
    trained = trained_models(config)
    for m in (config.get("export") or {}).get("models") or []:
        if m not in trained:
            raise UserError(f"{source}: export.models: {m!r} is not a trained model "
                            f"(one of {', '.join(trained)})")


def export_track(config: dict) -> str:
    """The official collation's track of the export: export.track, else the challenge's."""
    track = (config.get("export") or {}).get("track")
    return track or challenge.TRACKS.get(config.get("challenge"), "strict-small")


def _check_references(config: dict, source: str) -> None:
    models = config["models"]
    pretrain = config["pretrain"]
    distill = config.get("distill") or {}
    ensembles = config.get("ensembles") or {}
    seen: dict[str, str] = {}
    for section, entries in (("pretrain", pretrain), ("distill", distill), ("ensembles", ensembles)):
        for name in entries:
            if name in seen:
                raise UserError(f"{source}: {section}.{name}: name already used in {seen[name]}; "
                                "model names must be unique")
            seen[name] = section
    for name, run in pretrain.items():
        if run["model"] not in models:
            raise UserError(f"{source}: pretrain.{name}.model: unknown preset {run['model']!r} "
                            f"(known: {', '.join(models)})")
        if run.get("baseline") and run["baseline"] not in pretrain:
            raise UserError(f"{source}: pretrain.{name}.baseline: {run['baseline']!r} is not a "
                            "pretrain run")
        if run.get("baseline") == name:
            raise UserError(f"{source}: pretrain.{name}.baseline: a run cannot be its own "
                            "baseline; name another pretrain run or drop the key")
    for name, run in distill.items():
        where = f"{source}: distill.{name}"
        if run["objective"] == "kd":
            for key in ("student", "teachers", "alpha", "temperature"):
                if key not in run:
                    raise UserError(f"{where}: objective kd needs {key!r}")
            if run["student"] not in models:
                raise UserError(f"{where}.student: unknown preset {run['student']!r}")
            for t in run["teachers"]:
                if t not in pretrain:
                    raise UserError(f"{where}.teachers: {t!r} is not a pretrain run "
                                    f"(known: {', '.join(pretrain)})")
            _check_unique(run["teachers"], f"{where}.teachers", "teacher")
            if run.get("cache") and training_of(config, run).get("random_offset"):
                raise UserError(f"{where}.cache: cached teacher targets need fixed chunks; "
                                "set random_offset: false for this variant")
        if run.get("baseline") and run["baseline"] not in pretrain:
            raise UserError(f"{where}.baseline: {run['baseline']!r} is not a pretrain run")
        if run["objective"] == "wml":
            for key in ("alpha",):
                if key not in run:
                    raise UserError(f"{where}: objective wml needs {key!r}")
            for key in ("temperature", "kl_direction", "teachers", "cache", "student"):
                if key in run:
                    raise UserError(f"{where}.{key}: objective wml has no {key} (the reference "
                                    "loss is teacher-less, without temperature); drop it")
            presets = list(run.get("peers") or [])
            if not presets and "reference" not in run:
                raise UserError(f"{where}: objective wml needs 'reference' (size search) or 'peers'")
            for p in presets + ([run["reference"]] if "reference" in run else []):
                if p not in models:
                    raise UserError(f"{where}: unknown preset {p!r} (known: {', '.join(models)})")
    for peer, (run_name, _) in wml_peers(config).items():
        if names.base_name(peer) in seen:
            raise UserError(f"{source}: distill.{run_name}: its peer model {peer!r} has the name of "
                            "another run; rename one of them")
    _check_curricula(config, source)
    for name, members in ensembles.items():
        for m in members:
            if m not in pretrain:
                raise UserError(f"{source}: ensembles.{name}: {m!r} is not a pretrain run")
        _check_unique(members, f"{source}: ensembles.{name}", "member")
    _check_baseline_cycles(pretrain, source)
    _check_tables(config, source)


def _check_curricula(config: dict, source: str) -> None:
    """Each run's curriculum buckets name corpus sources once each, and its epochs reach the
    last bucket."""
    pretrain, distill = config["pretrain"], config.get("distill") or {}
    sources = set(config["corpus"]["sources"])
    for section, runs in (("pretrain", pretrain), ("distill", distill)):
        for name, run in runs.items():
            cur = training_of(config, run).get("curriculum")
            if not cur:
                continue
            listed = [s for b in cur["buckets"] for s in b]
            unknown = sorted(set(listed) - sources)
            if unknown:
                raise UserError(f"{source}: {section}.{name}.curriculum.buckets: "
                                f"{', '.join(unknown)} not in corpus.sources")
            if len(listed) != len(set(listed)):
                raise UserError(f"{source}: {section}.{name}.curriculum.buckets: a source is "
                                "listed in more than one bucket")
            epochs = training_of(config, run)["epochs"]
            last_opens = (len(cur["buckets"]) - 1) * cur["epochs_per_bucket"]
            if epochs <= last_opens:
                raise UserError(f"{source}: {section}.{name}.epochs: {epochs} epochs never reach "
                                f"the last curriculum bucket (opened at epoch {last_opens + 1}); "
                                f"use at least {last_opens + 1}")


def _check_unique(names: list, where: str, what: str) -> None:
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"{where}: {what} {', '.join(map(repr, dup))} listed twice; list each once")


def _check_baseline_cycles(pretrain: dict, source: str) -> None:
    """pretrain baselines form chains, never a loop (a -> b -> a compares nothing with nothing)."""
    for start in pretrain:
        path, name = [start], pretrain[start].get("baseline")
        while name:
            if name in path:
                loop = " -> ".join([*path[path.index(name):], name])
                raise UserError(f"{source}: pretrain.{start}.baseline: the baselines form a loop "
                                f"({loop}); a baseline must be a run without that chain")
            path.append(name)
            name = (pretrain.get(name) or {}).get("baseline")


def _check_tables(config: dict, source: str) -> None:
    """tables.paper: every model, suite, task and reference names something the config runs."""
    runs = [*config["pretrain"], *(config.get("distill") or {}), *(config.get("ensembles") or {})]
    runs += sorted({names.base_name(p) for p in wml_peers(config)})  # <run>-peer<i>
    ev = config.get("eval") or {}
    suites = list((ev.get("blimp") or {}).get("suites") or {})
    tasks = list(finetune_recipes.task_specs(ev.get("finetune") or {}))  # the recipe's set
    for name, table in ((config.get("tables") or {}).get("paper") or {}).items():
        where = f"{source}: tables.paper.{name}"
        for m in table.get("models", []):
            if m not in runs:
                raise UserError(f"{where}.models: {m!r} is not a pretrain, distill or ensemble "
                                f"run (known: {', '.join(runs)})")
        if table.get("reference") and table["reference"] not in table.get("models", []):
            raise UserError(f"{where}.reference: {table['reference']!r} is not one of its models")
        for key, known in (("suites", suites), ("tasks", tasks), ("unstable", tasks)):
            for v in table.get(key, []):
                if v not in known:
                    raise UserError(f"{where}.{key}: {v!r} is not in eval.{'blimp.suites' if key == 'suites' else 'finetune.tasks'}"
                                    f" (known: {', '.join(known) or 'none'})")


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _typed(text: str) -> Any:
    """A command-line string as YAML would read it (1e-3, a bare exponent, counts as a number)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _NUMBER.match(text.strip()):
        return float(text)
    return value if isinstance(value, (int, float, bool, type(None))) else text


def coerce_overrides(config: dict, overrides: Any) -> None:
    """Give ``--config`` values their YAML types in ``config`` (in place).

    Snakemake parses ``--config 'training={lr: 0.001}'`` with YAML's BaseLoader, so every
    nested value arrives as a string. Each such string leaf is read as YAML instead
    (0.001 -> float, true -> bool, null -> None); where the schema wants the string
    (``corpus.layout: "2023"``, a folder called ``123``) the string is kept.
    """
    converted: dict[tuple, tuple[Any, Any]] = {}  # path -> (string, typed)

    def walk(over: Any, path: tuple) -> None:
        if isinstance(over, dict) or hasattr(over, "items") and not isinstance(over, str):
            for k, v in over.items():
                walk(v, (*path, k))
        elif isinstance(over, list):
            for i, v in enumerate(over):
                walk(v, (*path, i))
        elif isinstance(over, str):
            typed = _typed(over)
            if typed is not over and not isinstance(typed, str):
                converted[path] = (over, typed)

    def put(path: tuple, value: Any) -> None:
        node = config
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    walk(overrides, ())
    for path, (_, typed) in converted.items():
        put(path, typed)
    if converted:
        schema = specs.schema()
        for err in jsonschema.Draft202012Validator(schema).iter_errors(config):
            path = tuple(err.absolute_path)
            if path in converted:
                put(path, converted[path][0])  # the schema wants the string here


def prepare(config: dict, source: str = "config") -> dict:
    """Complete ``config`` in place (the Snakefile's global) and validate it.

    A config that names no ``run`` is a set of overrides (``--config key=value``) on top of
    config.yaml; a full config (config.yaml, workflow/demo.yaml) stands alone, so the demo
    never inherits the paper's runs. Each ``sweep:<name>:best`` becomes the run ``<name>-best``
    (``config.sweeps.expand_best``).
    """
    if "run" not in config:
        merged = deep_merge(load_yaml(DEFAULT_CONFIG), config)
        config.clear()
        config.update(merged)
    validate(config, source)
    sweeps.expand_best(config, source)  # sweep:<name>:best -> the run <name>-best
    return config


def section(config: dict, *path: str) -> dict:
    """The config section at ``path`` (``section(config, "eval", "blimp")``) with the schema's
    defaults filled in; an absent section gives the defaults alone. The rules read optional
    keys here, so that a default is written only in the schema."""
    node, value = specs.schema(), config
    for key in path:
        node = node["properties"][key]
        value = (value or {}).get(key)
    return specs.fill_defaults(node, value or {})


def training_of(config: dict, run: dict) -> dict:
    """A run's training keys: the schema's defaults, ``training:`` over them, the run's own
    keys over that (not its seed)."""
    train = dict(config.get("training") or {})
    train.update({k: v for k, v in run.items() if k in _TRAINING_KEYS})
    return specs.fill_defaults({"$ref": "#/$defs/training_keys"}, train)


def _data(config: dict) -> dict:
    # a key the config leaves out gets the schema's default, filled in by babydistill.config.specs
    return {"seq_length": config["data"]["seq_length"],
            **{k: config["data"][k] for k in ("eval_chunks", "start_token")
               if config["data"].get(k, "none") != "none"}}  # no start token: the spec names none


def instances(config: dict, section: str) -> list[str]:
    """Model names of a section's runs: ``name``, or ``name@seed`` for each of its ``seeds``."""
    out = []
    for name, run in (config.get(section) or {}).items():
        seeds = run.get("seeds")
        out += [names.instance(name, s) for s in seeds] if seeds else [name]
    return out


def run_of(config: dict, section: str, name: str) -> dict:
    """The config entry of a model name (an instance ``name@seed`` or a plain run)."""
    return config[section][split_instance(name)[0]]


def instance_of(config: dict, run_name: str, seed: int | None = None) -> str:
    """The instance of pretrain run ``run_name`` to use: the same seed when it has it, else its
    first seed (teachers, baselines and ensemble members name runs, not instances)."""
    seeds = config["pretrain"][run_name].get("seeds")
    if not seeds:
        return run_name
    return names.instance(run_name, seed if seed in seeds else seeds[0])


def teachers_of(config: dict, name: str) -> list[str]:
    """Teacher model names (instances) of distillation model ``name``."""
    seed = split_instance(name)[1]
    return [instance_of(config, t, seed) for t in run_of(config, "distill", name).get("teachers", [])]


def cache_key(config: dict, name: str) -> str | None:
    """The teacher cache distillation model ``name`` reads, or None when it runs live teachers.

    A cache depends only on its teachers, k, the temperature and its precision (and the run's
    data), so variants and seeds that share those share one cache:
    ``<teacher>+<teacher>.k<k>.T<T>`` (``.bf16`` after it for ``cache.precision: bf16``)."""
    run = run_of(config, "distill", name)
    if not run.get("cache"):
        return None
    return names.cache_key(teachers_of(config, name), run["cache"]["k"], run["temperature"],
                           run["cache"].get("precision") or "fp32")


def baseline_of(config: dict, name: str) -> str | None:
    """The run model ``name`` is compared with in the summary table (distill, or a pretrain
    run such as a curriculum student and its twin), as an instance; None without one."""
    section = "distill" if split_instance(name)[0] in (config.get("distill") or {}) else "pretrain"
    base = run_of(config, section, name).get("baseline")
    return instance_of(config, base, split_instance(name)[1]) if base else None


def _seeded_training(config: dict, section: str, name: str) -> dict:
    train = training_of(config, run_of(config, section, name))
    seed = split_instance(name)[1]
    if seed is not None:
        train["seed"] = seed
    return train


def pretrain_spec_of(config: dict, name: str) -> PretrainSpec:
    """The typed spec of pretrain model ``name``: preset + merged training keys."""
    run = run_of(config, "pretrain", name)
    spec = {"name": name, "model": dict(config["models"][run["model"]]),
            "train": _seeded_training(config, "pretrain", name), **_data(config)}
    return PretrainSpec.from_json(spec, where=f"pretrain.{name}")


def pretrain_spec(config: dict, name: str) -> dict:
    """The spec for ``python -m babydistill.train.pretrain --spec``: :func:`pretrain_spec_of` as
    its canonical JSON mapping (every key, defaults filled in)."""
    return pretrain_spec_of(config, name).to_json()


def distill_spec(config: dict, name: str) -> dict:
    """The spec for ``python -m babydistill.distill.student --spec``: :func:`distill_spec_of` as its
    canonical JSON mapping."""
    return distill_spec_of(config, name).to_json()


def distill_spec_of(config: dict, name: str) -> DistillSpec:
    """The typed spec of distillation model ``name``."""
    run = run_of(config, "distill", name)
    spec: dict[str, Any] = {"name": name, "objective": run["objective"],
                            "train": _seeded_training(config, "distill", name), **_data(config)}
    for k in _OBJECTIVE_KEYS[run["objective"]]:
        if k in run:
            spec[k] = copy.deepcopy(run[k])
    if "teachers" in run:
        spec["teachers"] = teachers_of(config, name)
    models = config["models"]
    if run["objective"] == "kd":
        spec["student"] = dict(models[run["student"]])
        spec["student_preset"] = run["student"]
    else:
        if run.get("reference"):
            spec["reference"] = dict(models[run["reference"]])
            spec["reference_preset"] = run["reference"]
        if run.get("peers"):
            spec["peers"] = [dict(models[p]) for p in run["peers"]]
    return DistillSpec.from_json(spec, where=f"distill.{split_instance(name)[0]}")


def gpus(config: dict, section: str, name: str) -> int:
    """GPUs a training job asks for: the run's ``gpus``, else its preset's, else 1."""
    run = run_of(config, section, name)
    train = training_of(config, run)
    preset_name = run.get("model") or run.get("student") or run.get("reference")
    preset = config["models"].get(preset_name, {}) if preset_name else {}
    if "gpus" in run:
        return int(run["gpus"])
    return int(preset.get("gpus", train["gpus"]))


def num_peers(run: dict) -> int:
    """Peers of a wml run: its hand-given presets, else num_peers (default 4, as the reference)."""
    return len(run.get("peers") or []) or int(run.get("num_peers", _WML_DEFAULTS["num_peers"]))


def wml_peers(config: dict) -> dict[str, tuple[str, int]]:
    """Each peer of each wml run as a model: ``<run>-peer<i>`` (``<run>-peer<i>@<seed>`` for
    an instance ``<run>@<seed>``) -> (the run's instance, i), i = 1..N."""
    out = {}
    for name in instances(config, "distill"):
        run = run_of(config, "distill", name)
        if run["objective"] != "wml":
            continue
        for i in range(1, num_peers(run) + 1):
            out[names.peer(name, i)] = (name, i)
    return out


def model_names(config: dict) -> list[str]:
    """Every evaluable model: teachers and baselines, distilled variants, the peers of wml
    runs, ensembles."""
    return [*instances(config, "pretrain"), *instances(config, "distill"), *wml_peers(config),
            *(config.get("ensembles") or {})]


def trained_models(config: dict) -> list[str]:
    """The models a training stage wrote (each with its ledger and revisions): teachers and
    baselines, distilled variants and WML peers, not the ensembles."""
    return [*instances(config, "pretrain"), *instances(config, "distill"), *wml_peers(config)]


def model_roles(config: dict) -> dict[str, str]:
    """Each trained model's role in the learning curves: ``teacher`` (a pretrain model that a
    distillation run or an ensemble learns from), ``baseline`` (any other pretrain model,
    curriculum runs included: nothing is distilled into them), ``student`` (distilled
    variants and WML peers)."""
    teachers = {t for d in instances(config, "distill") for t in teachers_of(config, d)}
    teachers |= {m for e in config.get("ensembles") or {} for m in ensemble_members(config, e)}
    pretrain = instances(config, "pretrain")
    return {m: ("student" if m not in pretrain else "teacher" if m in teachers else "baseline")
            for m in trained_models(config)}


def sweep_spec(config: dict, name: str) -> dict:
    """The spec of sweep ``name``'s workers: :func:`babydistill.config.sweeps.sweep_spec`."""
    return sweeps.sweep_spec(config, name)


def sweep_best_models(config: dict) -> dict[str, dict]:
    """Each instance of a sweep's best run (``sweep:<name>:best``) -> ``{"sweep", "section"}``:
    the models rule sweep_best trains instead of rule pretrain / distill."""
    out = {}
    for section in ("pretrain", "distill"):
        for name, run in (config.get(section) or {}).items():
            if run.get("sweep_best"):
                seeds = run.get("seeds") or [None]
                out.update({names.instance(name, s): {"sweep": run["sweep_best"], "section": section}
                            for s in seeds})
    return out


def ensemble_members(config: dict, name: str) -> list[str]:
    return [instance_of(config, m) for m in config["ensembles"][name]]


@cli
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m babydistill.config", description=__doc__)
    ap.add_argument("configfile", nargs="?", default=str(DEFAULT_CONFIG))
    ap.add_argument("--words", action="store_true",
                    help="list every run's epochs and words seen (teachers' included) against "
                         "the config's challenge (or --challenge) instead of stopping at the first "
                         "run outside its rules")
    ap.add_argument("--challenge", choices=sorted(challenge.CHALLENGES), default=None,
                    help="with --words: hold the config to this track")
    args = ap.parse_args(argv)
    raw = load_yaml(args.configfile)
    if args.words:
        track = args.challenge or raw.get("challenge")
        if not track:
            raise UserError(f"{args.configfile}: no challenge: key; pass --challenge NAME")
        cfg = prepare({**raw, "challenge": None}, source=args.configfile)
        print("\n".join(challenge.report(cfg, track)))
        return
    cfg = prepare(raw, source=args.configfile)
    print(f"{args.configfile}: valid (run {cfg['run']!r}: {len(cfg['pretrain'])} pretrain runs, "
          f"{len(cfg.get('distill') or {})} distillation variants, "
          f"{len(cfg.get('ensembles') or {})} ensembles)"
          + (f"; within {cfg['challenge']}" if cfg.get("challenge") else ""))


if __name__ == "__main__":
    main()


def job_resources(config: dict, section: str, name: str) -> dict:
    """mem_mb and runtime (minutes) for a training job, from the model sizes involved.

    Deliberately generous: weights, gradients and AdamW state take ~16 bytes a parameter,
    teachers ~4 (inference only), plus activations; runtime assumes a modest 30% MFU on a
    100 TFLOP/s GPU for full-size runs. A cluster profile can override both per rule.
    """
    vocab = config["tokenizer"]["vocab_size"]
    run = run_of(config, section, name)
    models = config["models"]
    if section == "pretrain":
        trained = [models[run["model"]]]
        frozen: list[dict] = []
    elif run["objective"] == "kd":
        trained = [models[run["student"]]]
        frozen = [models[config["pretrain"][t]["model"]] for t in run["teachers"]]
    else:
        trained = [models[p] for p in run.get("peers") or []]
        frozen = []
    n_train = sum(preset_parameters(p, vocab) for p in trained)
    if section == "distill" and run["objective"] == "wml" and not run.get("peers"):
        # size-searched peers: N/2 + N/3 + ... of the reference
        n_ref = preset_parameters(models[run["reference"]], vocab)
        n_train = int(n_ref * sum(1 / (i + 2) for i in range(num_peers(run))))
    n_frozen = sum(preset_parameters(p, vocab) for p in frozen)
    mem_mb = 2000 + (16 * n_train + 4 * n_frozen) // 2**20 * 2
    train = training_of(config, run)
    tokens = 15_000_000 * train["epochs"]  # ~10M words of BabyLM is ~15M tokens
    flops = 6 * n_train * tokens + 2 * n_frozen * tokens
    runtime = max(30, int(flops / (0.3 * 100e12) / 60 * 2))
    return {"mem_mb": int(mem_mb), "runtime": runtime}
