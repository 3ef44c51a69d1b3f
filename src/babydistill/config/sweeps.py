"""Layer 1, the ``sweeps:`` section: the search space's vocabulary, its checks, the worker's
spec and a trial's parameters applied to a job spec. Torch- and Optuna-free (Snakemake reads
it at parse time); babydistill.sweep runs the search.

The vocabulary is BabyLlama-2's sweep (JLTastet/BabyLlama-2@8c6685d
``config/SmolLlama-345M-sweep/sweep.yaml``, ``scripts/sweep.py``), plus the distillation
loss keys. Each name sets one key of the base run's job spec (:data:`PARAMS`)::

    batch_size -> train.batch_size      one_minus_adam_beta1 -> train.betas[0] = 1 - v
    num_epochs -> train.epochs          one_minus_adam_beta2 -> train.betas[1] = 1 - v
    lr -> train.lr                      adam_epsilon -> train.eps
    lr_scheduler_type -> train.schedule weight_decay -> train.weight_decay
    max_grad_norm -> train.grad_clip    num_warmup_steps -> train.warmup_steps
    attention_dropout -> the preset's dropout (model / student)
    alpha, temperature, kl_direction -> the distill spec's keys; k -> cache.k

A sweep's best trial is a run of its own where the config names ``sweep:<name>:best`` (a
``baseline``, a paper table's ``models`` or ``reference``): :func:`expand_best` adds run
``<name>-best`` (the base run's entry and seeds) and :func:`apply_best` sets the best
trial's keys (``best.json``) on each seed's job spec when it trains.

A space entry is ``{low, high, log}`` (a range; integers for integer keys) or ``{choices}``
(two or more distinct values).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from babydistill.common import UserError

INF = float("inf")


@dataclass(frozen=True)
class Param:
    """One name of the space: where it goes, its type and the values it may take."""

    target: str            # train.<key>, train.betas.<i>, preset.dropout, <kd key>, cache.k
    kind: str              # int | float | choice
    low: float = -INF      # the domain, for int and float
    high: float = INF
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()    # the allowed values of a choice key
    objectives: tuple = ("pretrain", "kd", "wml")  # the runs it applies to
    one_minus: bool = False  # the spec gets 1 - v (BabyLlama-2's one_minus_adam_beta*)


_TRAIN = ("pretrain", "kd", "wml")
PARAMS: dict[str, Param] = {
    "batch_size": Param("train.batch_size", "int", 1, 2**20),
    "num_epochs": Param("train.epochs", "int", 1, 10000),
    "lr": Param("train.lr", "float", 0, 10, low_open=True),
    "one_minus_adam_beta1": Param("train.betas.0", "float", 0, 1, low_open=True, one_minus=True),
    "one_minus_adam_beta2": Param("train.betas.1", "float", 0, 1, low_open=True, one_minus=True),
    "adam_epsilon": Param("train.eps", "float", 0, INF, low_open=True),
    "lr_scheduler_type": Param("train.schedule", "choice", choices=("linear", "cosine", "constant")),
    "weight_decay": Param("train.weight_decay", "float", 0, INF),
    "max_grad_norm": Param("train.grad_clip", "float", 0, INF),
    "num_warmup_steps": Param("train.warmup_steps", "int", 0, INF),
    "attention_dropout": Param("preset.dropout", "float", 0, 1, high_open=True,
                               objectives=("pretrain", "kd")),
    "alpha": Param("alpha", "float", 0, 1, objectives=("kd", "wml")),
    "temperature": Param("temperature", "float", 0, INF, low_open=True, objectives=("kd",)),
    "kl_direction": Param("kl_direction", "choice", choices=("forward", "reverse"),
                          objectives=("kd",)),
    "k": Param("cache.k", "int", 1, INF, objectives=("kd",)),
}


def _domain(p: Param) -> str:
    lo = "(" if p.low_open else "["
    hi = ")" if p.high_open else "]"
    return f"{lo}{p.low:g}, {p.high:g}{hi}"


def _inside(p: Param, v: float) -> bool:
    above = v > p.low if p.low_open else v >= p.low
    below = v < p.high if p.high_open else v <= p.high
    return above and below


def _check_value(p: Param, v: Any, where: str) -> None:
    if p.kind == "choice":
        if v not in p.choices:
            raise UserError(f"{where}: {v!r} is not one of {', '.join(map(str, p.choices))}")
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UserError(f"{where}: {v!r} is not a number")
    if p.kind == "int" and v != int(v):
        raise UserError(f"{where}: {v!r} is not an integer (this key takes whole numbers)")
    if not _inside(p, v):
        raise UserError(f"{where}: {v!r} is outside {_domain(p)}")


def check_entry(key: str, entry: dict, objective: str, where: str) -> dict:
    """One space entry checked; returns its normalized form: ``{"type": int|float, "low",
    "high", "log"}`` or ``{"type": "categorical", "choices"}``."""
    where = f"{where}.{key}"
    if key not in PARAMS:
        raise UserError(f"{where}: unknown hyperparameter; use one of {', '.join(PARAMS)}")
    p = PARAMS[key]
    if objective not in p.objectives:
        raise UserError(f"{where}: does not apply to a {objective} run (it applies to "
                        f"{', '.join(p.objectives)} runs); drop it")
    has_range = "low" in entry or "high" in entry
    if "choices" in entry:
        if has_range or "log" in entry:
            raise UserError(f"{where}: give either choices or low/high, not both")
        choices = list(entry["choices"])
        if len(choices) < 2 or len(set(map(repr, choices))) != len(choices):
            raise UserError(f"{where}.choices: {choices!r}: give two or more distinct values "
                            "(one value is not a search; set it in the base run instead)")
        for i, v in enumerate(choices):
            _check_value(p, v, f"{where}.choices[{i}]")
        return {"type": "categorical", "choices": choices}
    if p.kind == "choice":
        raise UserError(f"{where}: a choice key; give choices: [{', '.join(p.choices)}]")
    if "low" not in entry or "high" not in entry:
        raise UserError(f"{where}: give low and high (a range) or choices (a list)")
    low, high, log = entry["low"], entry["high"], bool(entry.get("log", False))
    _check_value(p, low, f"{where}.low")
    _check_value(p, high, f"{where}.high")
    if low >= high:
        what = "an empty" if low == high else "an inverted"
        raise UserError(f"{where}: low {low:g} >= high {high:g} is {what} range; "
                        "give low < high")
    if log and low <= 0:
        raise UserError(f"{where}: log scale over {low:g}..{high:g} needs low > 0")
    kind = p.kind
    return {"type": kind, "low": int(low) if kind == "int" else float(low),
            "high": int(high) if kind == "int" else float(high), "log": log}


def _section_of(config: dict, run: str) -> str | None:
    if run in config["pretrain"]:
        return "pretrain"
    return "distill" if run in (config.get("distill") or {}) else None


def base_of(config: dict, name: str) -> tuple[str, str, str]:
    """(section, instance, objective) of sweep ``name``'s base run; ``base: run@seed`` picks
    a seed of a seeded run, ``base: run`` its first seed."""
    from babydistill.config.names import instance, split_instance

    where = f"sweeps.{name}.base"
    text = config["sweeps"][name]["base"]
    run, seed = split_instance(text)
    section = _section_of(config, run)
    if section is None:
        raise UserError(f"{where}: {run!r} is not a pretrain or distill run")
    entry = config[section][run]
    seeds = entry.get("seeds") or []
    if seed is not None and seed not in seeds:
        raise UserError(f"{where}: {text!r}: run {run} has no seed {seed} "
                        f"(its seeds: {', '.join(map(str, seeds)) or 'none'})")
    if seed is None and seeds:
        seed = seeds[0]
    objective = "pretrain" if section == "pretrain" else entry["objective"]
    return section, instance(run, seed) if seed is not None else run, objective


def check(config: dict, source: str) -> None:
    """Every ``sweeps:`` entry: its base run, its space, its objective's suite."""
    from babydistill.config import section as section_of_config
    from babydistill.config.names import sweep_best_run

    suites = list(section_of_config(config, "eval", "blimp").get("suites") or {})
    for section in ("pretrain", "distill"):
        for run, entry in (config.get(section) or {}).items():
            made_by = entry.get("sweep_best")
            if made_by and (made_by not in (config.get("sweeps") or {})
                            or run != sweep_best_run(made_by)):
                raise UserError(f"{source}: {section}.{run}.sweep_best: set by the config "
                                f"itself; name the run sweep:<name>:best instead")
    for name, sweep in (config.get("sweeps") or {}).items():
        where = f"{source}: sweeps.{name}"
        try:
            section, base, objective = base_of(config, name)
        except UserError as e:
            raise UserError(f"{source}: {e}") from None
        run = config[section][base.split("@")[0]]
        for key, entry in sweep["space"].items():
            check_entry(key, entry, objective, f"{where}.space")
            target = PARAMS[key].target.split(".")
            if target[0] == "train" and target[1] in (sweep.get("train") or {}):
                raise UserError(f"{where}.space.{key}: sets train.{target[1]}, which "
                                f"sweeps.{name}.train fixes; drop one of them")
        _fixed_train(config, name, f"{where}.train")
        if "k" in sweep["space"] and not run.get("cache"):
            raise UserError(f"{where}.space.k: base run {base} distills from live teachers; k "
                            "is the top-k of a teacher cache (give the base run cache: {k: ..})")
        if sweep.get("objective") == "blimp":
            suite = sweep.get("suite") or (suites[0] if suites else None)
            if suite not in suites:
                raise UserError(f"{where}.suite: {suite!r} is not in eval.blimp.suites "
                                f"(known: {', '.join(suites) or 'none'})")


def _fixed_train(config: dict, name: str, where: str) -> dict:
    """The base run's training keys with the sweep's ``train:`` over them, checked."""
    from babydistill.config import specs, training_of

    section, base, _ = base_of(config, name)
    train = training_of(config, config[section][base.split("@")[0]])
    fixed = config["sweeps"][name].get("train") or {}
    return specs.TrainSpec.from_json({**train, **fixed}, where=where).to_json()


def sweep_spec(config: dict, name: str) -> dict:
    """The spec of sweep ``name``'s workers (``python -m babydistill.sweep.worker --spec``):
    the base run's job spec, the normalized space, the objective, the sampler and pruner, and
    the trials; everything the search needs, nothing from outside."""
    from babydistill.config import blimp_scoring, distill_spec, pretrain_spec, section, specs

    sweep = specs.fill_defaults({"$ref": "#/$defs/sweep"}, config["sweeps"][name])
    kind, base, objective = base_of(config, name)
    stage = pretrain_spec(config, base) if kind == "pretrain" else distill_spec(config, base)
    stage["train"].update(sweep["train"])  # every trial's fixed keys (checked by check())
    space = {k: check_entry(k, v, objective, f"sweeps.{name}.space")
             for k, v in sweep["space"].items()}
    suite = convention = temperatures = None
    if sweep["objective"] == "blimp":
        suites = list(section(config, "eval", "blimp").get("suites") or {})
        suite = sweep.get("suite") or suites[0]
        convention, temperatures = blimp_scoring(config, suite)
    blimp = section(config, "eval", "blimp")
    return {"name": name, "base": base, "section": kind, "objective_kind": objective,
            "stage": stage, "space": space, "objective": sweep["objective"],
            "direction": "maximize" if sweep["objective"] == "blimp" else "minimize",
            "suite": suite, "convention": convention, "temperatures": temperatures,
            "blimp_limit": blimp.get("limit"), "blimp_batch_size": blimp["batch_size"],
            "sampler": sweep["sampler"], "pruner": sweep["pruner"],
            "min_resource": sweep["min_resource"], "reduction_factor": sweep["reduction_factor"],
            "trials": sweep["trials"], "workers": sweep["workers"],
            "seed": sweep["seed"] if sweep.get("seed") is not None else config["seed"],
            "max_retries": sweep["max_retries"], "heartbeat_seconds": sweep["heartbeat_seconds"],
            "max_micro_batch_size": sweep.get("max_micro_batch_size")}


SPEC_KEYS = ("name", "base", "section", "objective_kind", "stage", "space", "objective",
             "direction", "suite", "convention", "temperatures", "blimp_limit",
             "blimp_batch_size", "sampler", "pruner", "min_resource", "reduction_factor",
             "trials", "workers", "seed", "max_retries", "heartbeat_seconds",
             "max_micro_batch_size")


def read_spec(text: str, where: str = "--spec") -> dict:
    """A worker spec from the command line (JSON, or @FILE), checked: every key
    :func:`sweep_spec` writes, a space of known names, a base job spec that parses."""
    from pathlib import Path

    from babydistill.common import parse_json_arg
    from babydistill.config.specs import DistillSpec, PretrainSpec

    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise UserError(f"{where}: {path}: file not found")
        text = path.read_text(encoding="utf-8")
    spec = parse_json_arg(text, where)
    missing = [k for k in SPEC_KEYS if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise UserError(f"{where}: not a sweep spec (missing {', '.join(missing)}); it is "
                        "what babydistill.config.sweep_spec(config, name) writes")
    unknown = [k for k in spec["space"] if k not in PARAMS]
    if unknown or not spec["space"]:
        raise UserError(f"{where}: space: unknown or no hyperparameters ({', '.join(unknown)})")
    kind = PretrainSpec if spec["section"] == "pretrain" else DistillSpec
    kind.from_json(spec["stage"], where=f"{where}: stage")
    return spec


def apply(stage: dict, objective: str, params: dict[str, Any], name: str,
          max_micro_batch_size: int | None = None) -> dict:
    """The base run's job spec with a trial's ``params`` (names of :data:`PARAMS`) set, and
    named ``name``; the caller parses it (PretrainSpec / DistillSpec) to check it. With
    ``max_micro_batch_size``, a batch above it is split into ceil(batch / max) accumulated
    micro-batches and rounded down to a multiple of them (BabyLlama-2's scripts/sweep.py)."""
    spec = copy.deepcopy(stage)
    spec["name"] = name
    for key, value in params.items():
        p = PARAMS[key]
        v = 1 - value if p.one_minus else value
        head, _, rest = p.target.partition(".")
        if head == "train":
            key_, _, index = rest.partition(".")
            if index:
                spec["train"][key_] = list(spec["train"][key_])
                spec["train"][key_][int(index)] = v
            else:
                spec["train"][key_] = v
        elif head == "preset":
            spec["model" if objective == "pretrain" else "student"][rest] = v
        elif head == "cache":
            spec["cache"] = {**(spec.get("cache") or {}), rest: v}
        else:
            spec[head] = v
    train = spec["train"]
    if max_micro_batch_size and train["batch_size"] > max_micro_batch_size * train["grad_accum"]:
        accum = -(-train["batch_size"] // max_micro_batch_size)
        train["grad_accum"], train["batch_size"] = accum, train["batch_size"] // accum * accum
    return spec


def as_run_keys(stage: dict, objective: str, params: dict[str, Any],
                max_micro_batch_size: int | None = None) -> dict[str, Any]:
    """A trial's params as the keys of a config run entry, the values its job spec gets
    (what a user copies into a run): ``{"lr": .., "betas": [b1, b2], "epochs": ..}``;
    ``dropout`` is a preset key (copy it into the run's model preset)."""
    spec = apply(stage, objective, params, stage["name"], max_micro_batch_size)
    out: dict[str, Any] = {}
    for key in sorted(params):
        head, _, rest = PARAMS[key].target.partition(".")
        if head == "train":
            k = rest.split(".")[0]
            out[k] = spec["train"][k]
            if k == "batch_size" and spec["train"]["grad_accum"] != stage["train"]["grad_accum"]:
                out["grad_accum"] = spec["train"]["grad_accum"]
        elif head == "preset":
            out[rest] = spec["model" if objective == "pretrain" else "student"][rest]
        elif head == "cache":
            out["cache"] = spec["cache"]
        else:
            out[head] = spec[head]
    return out


def _best_refs(config: dict):
    """(where, container, key, is a baseline) of every place that may name
    ``sweep:<name>:best``: run baselines, paper tables' models and references."""
    for section in ("pretrain", "distill"):
        for name, run in (config.get(section) or {}).items():
            if "baseline" in run:
                yield f"{section}.{name}.baseline", run, "baseline", True
    for name, table in ((config.get("tables") or {}).get("paper") or {}).items():
        for i in range(len(table.get("models") or [])):
            yield f"tables.paper.{name}.models[{i}]", table["models"], i, False
        if "reference" in table:
            yield f"tables.paper.{name}.reference", table, "reference", False


def _best_entry(config: dict, sweep: str, where: str) -> tuple[str, dict]:
    """(section, run entry) of sweep ``sweep``'s best run: its base run's entry, with every
    seed of that run, no baseline of its own, and ``sweep_best`` naming the sweep."""
    try:
        section, _, _ = base_of(config, sweep)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    space = config["sweeps"][sweep]["space"]
    run = config[section][split_base(config, sweep)]
    if "k" in space or ("temperature" in space and run.get("cache")):
        raise UserError(f"{where}: sweep {sweep}'s space sets its teacher cache (k, or the "
                        "temperature of a cached run): its best trial cannot be retrained "
                        "from the base run's cache; drop k/temperature from the space")
    entry = {k: copy.deepcopy(v) for k, v in run.items() if k != "baseline"}
    entry["sweep_best"] = sweep
    return section, entry


def split_base(config: dict, sweep: str) -> str:
    """The run (no seed) that sweep ``sweep`` searches around."""
    return str(config["sweeps"][sweep]["base"]).partition("@")[0]


def expand_best(config: dict, source: str) -> None:
    """Every ``sweep:<name>:best`` of the config rewritten (in place) to the run
    ``<name>-best``, which is added to its base run's section (:func:`_best_entry`).
    Idempotent; an unknown sweep or a clash of names is one line naming the key."""
    from babydistill.config.names import sweep_best_run, sweep_ref

    sweeps_ = config.get("sweeps") or {}
    for where, container, key, is_baseline in list(_best_refs(config)):
        where = f"{source}: {where}"
        try:
            sweep = sweep_ref(container[key])
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
        if sweep is None:
            continue
        if sweep not in sweeps_:
            raise UserError(f"{where}: {container[key]!r}: no sweep {sweep!r} in sweeps: "
                            f"(known: {', '.join(sweeps_) or 'none'})")
        section, entry = _best_entry(config, sweep, where)
        if is_baseline and section != "pretrain":
            raise UserError(f"{where}: {container[key]!r}: sweep {sweep} searches distill run "
                            f"{split_base(config, sweep)}; a baseline is a pretrain run")
        run = sweep_best_run(sweep)
        for other in ("pretrain", "distill", "ensembles"):
            have = (config.get(other) or {}).get(run)
            if have is not None and (other != section or have.get("sweep_best") != sweep):
                raise UserError(f"{where}: {container[key]!r} is run {run}, which {other}.{run} "
                                "already names; rename that run")
        config[section].setdefault(run, entry)
        container[key] = run


def apply_best(stage: dict, best: dict, where: str = "--sweep-best") -> dict:
    """Job spec ``stage`` of a best run's seed (``<sweep>-best[@seed]``, the base run's spec)
    with the best trial's ``run_keys`` (``best.json`` of rule sweep_results) set."""
    from babydistill.config.names import base_name, sweep_best_run

    keys = best.get("run_keys") if isinstance(best, dict) else None
    if not isinstance(keys, dict) or "sweep" not in best:
        raise UserError(f"{where}: not a sweep's best.json (no sweep, run_keys)")
    if base_name(stage["name"]) != sweep_best_run(best["sweep"]):
        raise UserError(f"{where}: the best trial of sweep {best['sweep']}, but the spec is "
                        f"run {stage['name']}'s; pass its own sweep's best.json")
    train_keys = {p.target.split(".")[1] for p in PARAMS.values()
                  if p.target.startswith("train.")} | {"grad_accum"}
    spec = copy.deepcopy(stage)
    for key, value in keys.items():
        if key in train_keys:
            spec["train"][key] = copy.deepcopy(value)
        elif key == "dropout":
            spec["model" if "model" in spec else "student"][key] = value
        elif key == "cache":
            spec["cache"] = copy.deepcopy(value)
        elif key in ("alpha", "temperature", "kl_direction"):
            spec[key] = value
        else:
            raise UserError(f"{where}: run_keys.{key}: not a key a sweep sets")
    return spec


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "config.sweeps", "python -m babydistill.config (the checks) and "
                 "babydistill.sweep.worker (the spec)")
