"""babydistill.config.specs: the schema is the one source of keys, types, ranges and defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from babydistill import config as bdconfig
from babydistill.config import specs
from babydistill.common import UserError
from babydistill.config.specs import DistillSpec, KDSpec, ModelPreset, PretrainSpec, TrainSpec, WMLSpec

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["config.yaml", "workflow/demo.yaml", "workflow/laptop.yaml"]

LLAMA = {"arch": "llama", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
         "max_position_embeddings": 64}


def pretrain_json(**over):
    return {"name": "p", "model": dict(LLAMA), "train": {"lr": 1e-3}, "seq_length": 32, **over}


def kd_json(**over):
    return {"name": "s", "objective": "kd", "student": dict(LLAMA), "alpha": 0.5, "temperature": 2.0,
            "teachers": ["t1", "t2"], "train": {}, "seq_length": 32, **over}


def wml_json(**over):
    return {"name": "w", "objective": "wml", "reference": dict(LLAMA), "alpha": 0.5, "train": {},
            "seq_length": 32, **over}


def one_line_error(parse, data, match):
    with pytest.raises(UserError, match=match) as e:
        parse(data)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("mutate,match", [
    (lambda s: s["train"].update(lr=0), r"^--spec: train\.lr: 0 is not valid"),
    (lambda s: s["train"].update(betas=[0.9, 1.0]), r"^--spec: train\.betas\.1: 1\.0 is not valid"),
    (lambda s: s["train"].update(random_offset="sometimes"), r"^--spec: train\.random_offset: 'sometimes'"),
    (lambda s: s["train"].update(curriculum={"buckets": []}), r"^--spec: train\.curriculum\.buckets: list"),
    (lambda s: s["train"].update(lr=float("nan")), r"^--spec: train\.lr: nan is not a finite number"),
    (lambda s: s["train"].update(lr_typo=1), r"^--spec: train: unknown key lr_typo"),
    (lambda s: s["model"].update(num_layers=0), r"^--spec: model\.num_layers: 0 is not valid"),
    (lambda s: s["model"].update(num_heads=3), r"^--spec: model\.num_heads: 3 does not divide"),
    (lambda s: s["model"].update(num_kv_heads=3, num_heads=4), r"^--spec: model\.num_kv_heads: 3 does not"),
    (lambda s: s["model"].pop("intermediate_size"), r"^--spec: model: arch llama needs 'intermediate_size'"),
    (lambda s: s.update(seq_length=128), r"^--spec: model\.max_position_embeddings: 64 is less than"),
    (lambda s: s.update(eval_chunks=0), r"^--spec: eval_chunks: 0 is not valid"),
    (lambda s: s.pop("name"), r"^--spec: 'name' is a required property"),
])
def test_a_bad_pretrain_spec_is_one_line_naming_the_key(mutate, match):
    s = pretrain_json()
    mutate(s)
    one_line_error(PretrainSpec.from_json, s, match)


@pytest.mark.parametrize("make,match", [
    (lambda: kd_json(alpha=1.5), r"^--spec: alpha: 1\.5 is not valid"),
    (lambda: kd_json(temperature=0), r"^--spec: temperature: 0 is not valid"),
    (lambda: kd_json(kl_direction="up"), r"^--spec: kl_direction: 'up' is not valid"),
    (lambda: kd_json(kl_reduction="sum"), r"^--spec: kl_reduction: 'sum' is not valid"),
    (lambda: kd_json(cache={"k": 0}), r"^--spec: cache\.k: 0 is not valid"),
    (lambda: {k: v for k, v in kd_json().items() if k != "temperature"}, "'temperature' is a required"),
    (lambda: kd_json(student={**LLAMA, "dropout": 1.0}), r"^--spec: student\.dropout: 1\.0 is not valid"),
    (lambda: kd_json(num_peers=2), r"^--spec: unknown key num_peers"),
    (lambda: wml_json(num_peers=3), r"^--spec: num_peers: 3 is not valid"),
    (lambda: wml_json(step_size=0), r"^--spec: step_size: 0 is not valid"),
    (lambda: wml_json(use_bilevel="yes"), r"^--spec: use_bilevel: 'yes' is not valid"),
    (lambda: wml_json(val_batch_size=0), r"^--spec: val_batch_size: 0 is not valid"),
    (lambda: wml_json(temperature=2.0), r"^--spec: unknown key temperature"),
    (lambda: wml_json(peers=[{**LLAMA, "num_heads": 3}]), r"^--spec: peers\.0\.num_heads: 3 does not"),
    (lambda: {k: v for k, v in wml_json().items() if k != "reference"}, "needs 'reference'"),
    (lambda: wml_json(objective="mkd"), r"^--spec: objective: 'mkd' is not valid"),
    (lambda: wml_json(train={"grad_accum": 0}), r"^--spec: train\.grad_accum: 0 is not valid"),
])
def test_a_bad_distill_spec_is_one_line_naming_the_key(make, match):
    one_line_error(DistillSpec.from_json, make(), match)


def test_a_bad_json_text_is_one_line():
    one_line_error(PretrainSpec.from_json, "{not json", r"^--spec: not valid JSON")
    one_line_error(PretrainSpec.from_json, "[1]", r"^--spec: expected a JSON object, got list")


def test_defaults_come_from_the_schema():
    t = TrainSpec.from_json({})
    training = specs.schema()["$defs"]["training_keys"]["properties"]
    for key, value in t.to_json().items():
        prop = training.get(key) or specs.schema()["$defs"]["train_spec"]["properties"][key]
        assert value == prop["default"], key
    p = PretrainSpec.from_json(pretrain_json())
    assert p.eval_chunks == specs.schema()["$defs"]["eval_chunks"]["default"] == 8192
    kd = DistillSpec.from_json(kd_json()).kd
    assert (kd.kl_direction, kd.kl_reduction, kd.cache) == ("forward", "batchmean", None)
    w = DistillSpec.from_json(wml_json()).wml
    assert (w.num_peers, w.weight_update_frequency, w.val_batch_size) == (4, 5, None)
    cur = TrainSpec.from_json({"curriculum": {"buckets": [["a"]]}}).curriculum
    assert cur == {"buckets": [["a"]], "epochs_per_bucket": 3}  # nested defaults too


def test_changing_a_schema_default_changes_the_parsed_value(monkeypatch):
    defs = specs.schema()["$defs"]
    monkeypatch.setitem(defs["training_keys"]["properties"]["lr"], "default", 0.125)
    monkeypatch.setitem(defs["eval_chunks"], "default", 77)
    monkeypatch.setitem(defs["wml_keys"]["properties"]["step_size"], "default", 0.5)
    monkeypatch.setitem(defs["kd_keys"]["properties"]["kl_direction"], "default", "reverse")
    assert TrainSpec.from_json({}).lr == 0.125
    assert TrainSpec.from_json({"lr": 0.5}).lr == 0.5
    assert PretrainSpec.from_json({**pretrain_json(), "train": {}}).eval_chunks == 77
    assert DistillSpec.from_json(wml_json()).wml.step_size == 0.5
    assert DistillSpec.from_json(kd_json()).kd.kl_direction == "reverse"


def test_the_code_reads_its_defaults_from_the_schema():
    from babydistill.train.trainer import TRAIN_DEFAULTS
    from babydistill.distill.wml import WML_DEFAULTS

    # a job spec leaves the default disk policy out (TrainSpec.to_json): the rest is the schema's
    assert TRAIN_DEFAULTS == {**TrainSpec.from_json({}).to_json(), "keep_checkpoints": "none"}
    assert TrainSpec.from_json(TrainSpec.from_json({}).to_json()) == TrainSpec.from_json({})
    assert TRAIN_DEFAULTS["checkpoint_every"] == 0 and TRAIN_DEFAULTS["grad_clip"] == 1.0
    assert WML_DEFAULTS == {**specs.defaults("wml_keys"), "kl_reduction": "batchmean"}


def test_schema_accepts_what_the_code_means():
    t = TrainSpec.from_json({"checkpoint_every": 0, "grad_clip": None, "precision": "fp32"})
    assert (t.checkpoint_every, t.grad_clip, t.precision) == (0, None, "fp32")
    with pytest.raises(UserError, match="precision: 'float32'"):
        TrainSpec.from_json({"precision": "float32"})


def test_typed_objects():
    d = DistillSpec.from_json(kd_json(cache={"k": 8}))
    assert isinstance(d.train, TrainSpec) and isinstance(d.student, ModelPreset)
    assert isinstance(d.kd, KDSpec) and d.kd.teachers == ("t1", "t2") and d.kd.top_k == 8
    assert d.wml is None and d.teachers == ("t1", "t2")
    w = DistillSpec.from_json(wml_json(peers=[LLAMA, LLAMA]))
    assert isinstance(w.wml, WMLSpec) and all(isinstance(p, ModelPreset) for p in w.wml.peers)
    assert isinstance(TrainSpec.from_json({}).betas, tuple)
    with pytest.raises(Exception):  # frozen
        d.train.lr = 1.0


@pytest.mark.parametrize("make,cls", [(pretrain_json, PretrainSpec), (kd_json, DistillSpec),
                                      (wml_json, DistillSpec),
                                      (lambda: {**{k: v for k, v in wml_json().items() if k != "reference"},
                                                "peers": [LLAMA]}, DistillSpec)])
def test_json_round_trip(make, cls):
    a = cls.from_json(make())
    text = json.dumps(a.to_json())
    assert cls.from_json(text) == a
    assert cls.from_json(text).to_json() == a.to_json()


@pytest.mark.parametrize("path", CONFIGS)
def test_every_run_of_the_shipped_configs_parses_and_round_trips(path):
    cfg = bdconfig.prepare(bdconfig.load_yaml(REPO / path), source=path)
    names = bdconfig.instances(cfg, "pretrain")
    assert names
    for name in names:
        js = bdconfig.pretrain_spec(cfg, name)
        spec = PretrainSpec.from_json(json.dumps(js))
        assert spec == bdconfig.pretrain_spec_of(cfg, name) and spec.to_json() == js
        assert spec.eval_chunks == cfg["data"].get("eval_chunks", 8192)
    for name in bdconfig.instances(cfg, "distill"):
        js = bdconfig.distill_spec(cfg, name)
        spec = DistillSpec.from_json(json.dumps(js))
        assert spec == bdconfig.distill_spec_of(cfg, name) and spec.to_json() == js
        run = bdconfig.run_of(cfg, "distill", name)
        if run["objective"] == "kd":
            assert spec.kd.alpha == run["alpha"] and spec.kd.temperature == run["temperature"]
            assert list(spec.kd.teachers) == bdconfig.teachers_of(cfg, name)
        else:
            assert spec.wml.num_peers == run.get("num_peers", 4)


def test_a_config_value_the_spec_refuses_names_the_run(tmp_path):
    cfg = bdconfig.prepare(bdconfig.load_yaml(REPO / "workflow/demo.yaml"))
    name = bdconfig.instances(cfg, "pretrain")[0]
    cfg["pretrain"][bdconfig.split_instance(name)[0]]["lr"] = -1.0
    with pytest.raises(UserError, match=r"^pretrain\..*: train\.lr: -1\.0 is not valid"):
        bdconfig.pretrain_spec(cfg, name)


def test_run_identity_is_a_digest_of_the_spec_content():
    from babydistill.train.trainer import run_identity

    a = PretrainSpec.from_json(pretrain_json())
    b = PretrainSpec.from_json(json.dumps(a.to_json()))
    assert run_identity(a) == run_identity(b) == run_identity(a.to_json())
    assert run_identity(a) != run_identity(a.replace(seq_length=16))
    # keys that may change on resumption do not change the identity
    assert run_identity(a) == run_identity(a.replace(train=a.train.replace(log_every=1)))


def test_the_shape_checks_live_in_one_place():
    # config.prepare and spec parsing share babydistill.config.specs.check_preset_shape
    with pytest.raises(UserError, match=r"^x\.num_heads: 3 does not divide hidden_size 32$"):
        specs.check_preset_shape({**LLAMA, "num_heads": 3}, "x")
    import inspect

    assert "check_preset_shape" in inspect.getsource(bdconfig._check_shapes)


def test_start_token_is_in_the_spec_only_when_on():
    """data.start_token: a spec without one is the JSON (and run identity) of before the key
    existed; chunk is named, changes the identity and survives the round trip."""
    from babydistill.train.trainer import run_identity

    plain = PretrainSpec.from_json(pretrain_json())
    assert plain.start_token == "none" and "start_token" not in plain.to_json()
    on = PretrainSpec.from_json(pretrain_json(start_token="chunk"))
    assert on.to_json()["start_token"] == "chunk" and PretrainSpec.from_json(on.to_json()) == on
    assert run_identity(on) != run_identity(plain)
    kd = DistillSpec.from_json(kd_json(start_token="chunk"))
    assert kd.start_token == "chunk" and DistillSpec.from_json(kd.to_json()) == kd
    assert "start_token" not in DistillSpec.from_json(kd_json()).to_json()
    one_line_error(PretrainSpec.from_json, pretrain_json(start_token="line"),
                   r"^--spec: start_token: 'line' is not valid \(not one of")
    cfg = bdconfig.prepare(bdconfig.load_yaml(REPO / "workflow/demo.yaml"))
    name = bdconfig.instances(cfg, "pretrain")[0]
    assert "start_token" not in bdconfig.pretrain_spec(cfg, name)
    cfg["data"]["start_token"] = "chunk"
    assert bdconfig.pretrain_spec(cfg, name)["start_token"] == "chunk"
