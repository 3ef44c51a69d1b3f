"""Typed job specs, parsed once against the JSON schema.

This module owns the *parsing* of what a training job is: the frozen dataclasses
:class:`TrainSpec`, :class:`ModelPreset`, :class:`KDSpec`, :class:`WMLSpec`,
:class:`PretrainSpec` and :class:`DistillSpec`, and the one path that turns JSON (a
config's merged keys, a stage's ``--spec``) into them: validate against the ``$defs`` of
workflow/schemas/config.schema.yaml (``train_spec``, ``pretrain_spec``, ``distill_spec``,
``preset``), fill the defaults the schema gives (the schema is the only place keys, types,
ranges and defaults are written), then run the cross-field checks a schema cannot say
(:func:`check_preset_shape`: heads divide the width, kv heads divide the heads, an even
rotary head size, max_position_embeddings >= seq_length), which babydistill.config uses
for a whole config too. Every failure is one :class:`~babydistill.common.UserError` line
naming the key path (``--spec: train.lr: 0 is not valid (...)``).

``X.from_json(text_or_mapping, where=...)`` parses; ``x.to_json()`` gives the canonical
plain mapping back (``X.from_json(x.to_json()) == x``), which is what the workflow passes
on the command line and what :func:`babydistill.train.checkpoint.run_identity` digests.
Stages receive these objects and check nothing the schema already says.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from babydistill.common import PACKAGE_DIR, UserError, parse_json_arg

# package data (a wheel ships it); workflow/schemas/config.schema.yaml links here
SCHEMA = PACKAGE_DIR / "config" / "schema.yaml"


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    """The config schema (read once; tests may patch its defaults in place)."""
    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def _validator(definition: str) -> jsonschema.Draft202012Validator:
    s = schema()
    return jsonschema.Draft202012Validator({"$defs": s["$defs"], "$ref": f"#/$defs/{definition}"})


# ---------------------------------------------------------------------------- errors

def path_of(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def describe(error: jsonschema.ValidationError) -> str:
    """One line per schema error, phrased for a person editing YAML or JSON."""
    where = path_of(error)
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        known = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - known) if isinstance(error.instance, dict) else []
        if error.validator == "unevaluatedProperties":
            # the message names the unexpected keys; keep ours short
            extra = [k for k in error.instance if f"'{k}'" in error.message] or extra
        keys = ", ".join(extra) or "?"
        return f"{where}: unknown key {keys} (a typo? see workflow/schemas/config.schema.yaml)"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "propertyNames":
        return f"{where}: name {error.instance!r} must use letters, digits, '_', '.', '-'"
    value = error.instance
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return f"{where}: {shown} is not valid ({error.message.split(' is ', 1)[-1]})"


# A config is small: a YAML document whose aliases expand past this many values is an alias
# bomb (5 kB of nested anchors expand to billions), refused before anything walks it.
MAX_VALUES = 1_000_000


def check_size(value: Any, source: str, limit: int = MAX_VALUES) -> int:
    """The number of values ``value`` holds once its YAML aliases are expanded, counted with
    each shared object visited once (linear in the document, not in its expansion); over
    ``limit``: one-line UserError."""
    sizes: dict[int, int] = {}

    def size(v: Any) -> int:
        if not isinstance(v, (dict, list)):
            return 1
        if id(v) in sizes:
            return sizes[id(v)]
        sizes[id(v)] = limit + 1  # a cycle (an alias to an ancestor) never ends: too big
        children = v.values() if isinstance(v, dict) else v
        total = 1
        for c in children:
            total += size(c)
            if total > limit:
                break
        sizes[id(v)] = min(total, limit + 1)
        return sizes[id(v)]

    n = size(value)
    if n > limit:
        raise UserError(f"{source}: the YAML aliases (&anchor / *alias) expand to more than "
                        f"{limit:,} values (an alias bomb?); write the values out")
    return n


def check_finite(value: Any, where: str, source: str) -> None:
    """NaN and infinity pass every JSON-schema range check (comparisons with NaN are false).

    Each object is checked once, under the first key path that reaches it: a value shared by
    YAML aliases is not walked again for every alias."""
    check_size(value, source)
    seen: set[int] = set()

    def walk(v: Any, at: str) -> None:
        if isinstance(v, (dict, list)):
            if id(v) in seen:
                return
            seen.add(id(v))
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, c in items:
                walk(c, (f"{at}.{k}" if at else str(k)) if isinstance(v, dict) else f"{at}[{k}]")
        elif isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{source}: {at}: {v!r} is not a finite number")

    walk(value, where)


def validate(instance: Any, definition: str, where: str) -> None:
    """``instance`` against ``$defs/<definition>``: the deepest error as one UserError line."""
    check_finite(instance, "", where)
    err = worst_error(_validator(definition).iter_errors(instance))
    if err is not None:
        raise UserError(f"{where}: {describe(err).removeprefix('(top level): ')}")


def worst_error(errors) -> jsonschema.ValidationError | None:
    """The error to report: the deepest (the most specific); at equal depth not an unknown
    key from ``unevaluatedProperties`` (a failed if/then leaves its keys unevaluated, so
    that error is a consequence of the other one)."""
    return max(errors, default=None,
               key=lambda e: (len(e.absolute_path), e.validator != "unevaluatedProperties"))


# ---------------------------------------------------------------------------- defaults

def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = {**schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]],
                **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def fill_defaults(node: dict, value: Any) -> Any:
    """``value`` with the schema's ``default:`` filled in for every absent key, recursively
    (through $ref, allOf and if/then); ``value`` must already be valid. Returns a copy."""
    node = _resolve(node)
    value = copy.deepcopy(value)
    if not isinstance(value, dict):
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            return [fill_defaults(node["items"], v) for v in value]
        return value
    for sub in node.get("allOf", []):
        value = fill_defaults(sub, value)
    if "if" in node and "then" in node:
        ifs = {"$defs": schema()["$defs"], **node["if"]}
        if jsonschema.Draft202012Validator(ifs).is_valid(value):
            value = fill_defaults(node["then"], value)
    for key, prop in node.get("properties", {}).items():
        prop = _resolve(prop)
        if key in value:
            value[key] = fill_defaults(prop, value[key])
        elif "default" in prop:
            value[key] = copy.deepcopy(prop["default"])
    return value


def defaults(definition: str) -> dict:
    """The defaults ``$defs/<definition>`` gives its keys (e.g. ``training_keys``)."""
    return fill_defaults({"$ref": f"#/$defs/{definition}"}, {})


def section_defaults(section: str) -> dict:
    """The defaults the schema gives the keys of top-level section ``section`` (e.g. ``tables``)."""
    return fill_defaults(schema()["properties"][section], {})


def _parse(data: Any, definition: str, where: str) -> dict:
    if isinstance(data, (str, bytes)):
        data = parse_json_arg(data, where)
    if not isinstance(data, Mapping):
        raise UserError(f"{where}: expected a JSON object, got {type(data).__name__}")
    data = dict(data)
    validate(data, definition, where)
    return fill_defaults({"$ref": f"#/$defs/{definition}"}, data)


def _plain(value: Any) -> Any:
    """Tuples back to lists, specs to mappings: the JSON form of a field."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------- cross-field checks

# Keys models.build_model needs beyond the schema's required ones, per architecture.
PRESET_NEEDS = {"llama": ("intermediate_size", "max_position_embeddings"),
                "gpt2": ("max_position_embeddings",),
                "roberta": ("intermediate_size", "max_position_embeddings")}
# Positions a model needs beyond a chunk's: RoBERTa numbers its positions from the padding
# id + 1 (pad is 0 here), so a chunk of L tokens uses positions 1..L (roberta-base: 514 for
# 512, the WML authors' block_size + 2).
EXTRA_POSITIONS = {"roberta": 1}


def check_preset_shape(p: Mapping | "ModelPreset", where: str, seq_length: int | None = None) -> None:
    """What the schema cannot say about a preset: the keys its arch needs, heads that divide
    the width (and kv heads the heads), an even rotary head size, and room for a chunk."""
    p = p.to_json() if isinstance(p, ModelPreset) else p
    for key in PRESET_NEEDS[p["arch"]]:
        if p.get(key) is None:
            raise UserError(f"{where}: arch {p['arch']} needs {key!r}")
    hidden, heads = p["hidden_size"], p["num_heads"]
    if hidden % heads:
        raise UserError(f"{where}.num_heads: {heads} does not divide hidden_size {hidden}")
    if p["arch"] == "llama":
        kv = p.get("num_kv_heads") or heads
        if heads % kv:
            raise UserError(f"{where}.num_kv_heads: {kv} does not divide num_heads {heads}")
        if (hidden // heads) % 2:
            raise UserError(f"{where}.num_heads: head size hidden_size/num_heads = "
                            f"{hidden // heads} is odd; rotary embeddings need an even one")
    extra = EXTRA_POSITIONS.get(p["arch"], 0)
    if seq_length is not None and p["max_position_embeddings"] < seq_length + extra:
        needs = f"data.seq_length {seq_length}" + (f" + {extra} (arch {p['arch']}'s positions "
                                                   "start after the padding id)" if extra else "")
        raise UserError(f"{where}.max_position_embeddings: {p['max_position_embeddings']} is "
                        f"less than {needs}; the model could not see a whole training chunk")


# ---------------------------------------------------------------------------- the specs

class _Spec:
    """JSON in and out for a flat dataclass whose fields are the JSON keys."""

    def to_json(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainSpec(_Spec):
    """The training keys (``$defs/train_spec``: ``training_keys`` + the test hook)."""

    optimizer: str
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    grad_clip: float | None
    schedule: str
    warmup_steps: int
    epochs: int
    batch_size: int
    eval_batch_size: int | None
    grad_accum: int
    random_offset: bool | str
    curriculum: dict | None
    keep: str
    keep_checkpoints: str
    checkpoint_every: int
    eval_every: int
    log_every: int
    tensorboard: bool
    blimp_every_epoch: bool
    blimp_limit: int | None
    precision: str
    compile: bool
    gpus: int
    seed: int
    max_steps: int | None
    stop_after_steps: int | None

    def to_json(self) -> dict:
        # the default disk policy is left out: the key frees disk and changes no model, and a
        # job spec that names it would rerun every training job of an existing results folder
        out = super().to_json()
        if out["keep_checkpoints"] == defaults("training_keys")["keep_checkpoints"]:
            del out["keep_checkpoints"]
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "train") -> "TrainSpec":
        return cls._of(_parse(data, "train_spec", where))

    @classmethod
    def _of(cls, d: dict) -> "TrainSpec":
        return cls(**{**d, "betas": tuple(d["betas"])})

    @classmethod
    def of(cls, spec: "TrainSpec | Mapping", where: str = "train") -> "TrainSpec":
        """``spec`` itself when it is one, else parsed (a mapping of training keys)."""
        return spec if isinstance(spec, TrainSpec) else cls.from_json(spec, where)


@dataclass(frozen=True)
class ModelPreset(_Spec):
    """One ``models:`` entry. A key the preset leaves out is None: the arch's default
    (models.py: dropout 0.1 GPT-2 / 0 LLaMA, tied GPT-2 / untied LLaMA embeddings, kv
    heads = heads, GPT-2 MLP 4x)."""

    arch: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int | None = None
    intermediate_size: int | None = None
    max_position_embeddings: int | None = None
    tie_word_embeddings: bool | None = None
    dropout: float | None = None
    gpus: int | None = None

    def to_json(self) -> dict:  # only the keys the preset gives: the config's mapping again
        return {k: v for k, v in super().to_json().items() if v is not None}

    @classmethod
    def from_json(cls, data: Any, where: str = "model", seq_length: int | None = None) -> "ModelPreset":
        p = cls(**_parse(data, "preset", where))
        check_preset_shape(p, where, seq_length)
        return p

    @classmethod
    def of(cls, preset: "ModelPreset | Mapping", where: str = "model") -> "ModelPreset":
        return preset if isinstance(preset, ModelPreset) else cls.from_json(preset, where)


@dataclass(frozen=True)
class KDSpec(_Spec):
    """The knowledge-distillation loss and its teachers: alpha * CE + (1 - alpha) * T^2 * KL."""

    alpha: float
    temperature: float
    kl_direction: str
    kl_reduction: str
    teachers: tuple[str, ...] = ()
    cache: dict | None = None  # {"k": top-k} to distill from stored targets

    @property
    def top_k(self) -> int | None:
        return self.cache["k"] if self.cache else None


@dataclass(frozen=True)
class WMLSpec(_Spec):
    """Weighted mutual learning (babydistill.distill.wml): the loss, the peers and the weight update."""

    alpha: float
    kl_reduction: str
    num_peers: int
    use_bilevel: bool
    weight_update_frequency: int
    step_size: float
    min_step_size: float
    num_batches: int
    val_batches: int
    val_batch_size: int | None
    reference: ModelPreset | None = None
    reference_preset: str | None = None
    peers: tuple[ModelPreset, ...] | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in super().to_json().items()
                if v is not None or k in ("val_batch_size", "peers")}


_KD_FIELDS = [f.name for f in dataclasses.fields(KDSpec)]
_WML_FIELDS = [f.name for f in dataclasses.fields(WMLSpec)]


def _without_default_start(out: dict) -> dict:
    """A spec without a start token names none: the run identity (a digest of the spec) of
    every run made before ``data.start_token`` existed stays what it was."""
    if out.get("start_token") == "none":
        del out["start_token"]
    return out


@dataclass(frozen=True)
class PretrainSpec(_Spec):
    """``python -m babydistill.train.pretrain --spec``: one preset trained from scratch."""

    name: str
    model: ModelPreset
    train: TrainSpec
    seq_length: int
    eval_chunks: int
    start_token: str = "none"

    def to_json(self) -> dict:
        return _without_default_start(super().to_json())

    @classmethod
    def from_json(cls, data: Any, where: str = "--spec") -> "PretrainSpec":
        d = _parse(data, "pretrain_spec", where)
        model = ModelPreset(**d["model"])
        check_preset_shape(model, f"{where}: model", d["seq_length"])
        return cls(name=d["name"], model=model, train=TrainSpec._of(d["train"]),
                   seq_length=d["seq_length"], eval_chunks=d["eval_chunks"],
                   start_token=d["start_token"])


@dataclass(frozen=True)
class DistillSpec(_Spec):
    """``python -m babydistill.distill.student --spec``: a kd variant (student + :class:`KDSpec`) or
    a wml one (:class:`WMLSpec`). The JSON is flat: the kd or wml keys sit beside name."""

    name: str
    objective: str
    train: TrainSpec
    seq_length: int
    eval_chunks: int
    start_token: str = "none"
    kd: KDSpec | None = None
    student: ModelPreset | None = None
    student_preset: str | None = None
    wml: WMLSpec | None = None

    def to_json(self) -> dict:
        out = {"name": self.name, "objective": self.objective, "train": self.train.to_json(),
               "seq_length": self.seq_length, "eval_chunks": self.eval_chunks,
               "start_token": self.start_token}
        out = _without_default_start(out)
        if self.kd is not None:
            out.update(self.kd.to_json())
            out["student"] = self.student.to_json()
            if self.student_preset is not None:
                out["student_preset"] = self.student_preset
        if self.wml is not None:
            out.update(self.wml.to_json())
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "--spec") -> "DistillSpec":
        d = _parse(data, "distill_spec", where)
        seq = d["seq_length"]
        common = dict(name=d["name"], objective=d["objective"], train=TrainSpec._of(d["train"]),
                      seq_length=seq, eval_chunks=d["eval_chunks"], start_token=d["start_token"])
        if d["objective"] == "kd":
            student = ModelPreset(**d["student"])
            check_preset_shape(student, f"{where}: student", seq)
            kd = KDSpec(**{k: d[k] for k in _KD_FIELDS if k in d})
            kd = kd.replace(teachers=tuple(kd.teachers))
            return cls(**common, kd=kd, student=student, student_preset=d.get("student_preset"))
        if not d.get("peers") and not d.get("reference"):
            raise UserError(f"{where}: objective wml needs 'reference' (a model preset) or 'peers'")
        w = {k: d[k] for k in _WML_FIELDS if k in d}
        if w.get("reference") is not None:
            w["reference"] = ModelPreset(**w["reference"])
            check_preset_shape(w["reference"], f"{where}: reference", seq)
        if w.get("peers"):
            w["peers"] = tuple(ModelPreset(**p) for p in w["peers"])
            for i, p in enumerate(w["peers"]):
                check_preset_shape(p, f"{where}: peers.{i}", seq)
        return cls(**common, wml=WMLSpec(**w))

    @property
    def teachers(self) -> tuple[str, ...]:
        return self.kd.teachers if self.kd else ()


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "config.specs", "python -m babydistill.config, babydistill.train.pretrain and "
                 "babydistill.distill.student")
