"""Config validation: both shipped configs pass, and each kind of mistake is one clear line."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml

from babydistill import config as bdconfig
from babydistill.common import UserError


@pytest.fixture(scope="module")
def demo(repo_root):
    return yaml.safe_load((repo_root / "workflow" / "demo.yaml").read_text())


@pytest.fixture(scope="module")
def paper(repo_root):
    return yaml.safe_load((repo_root / "config.yaml").read_text())


def test_shipped_configs_are_valid(demo, paper):
    bdconfig.validate(copy.deepcopy(demo))
    bdconfig.validate(copy.deepcopy(paper))


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["training"].update(lrr=1.0), "training: unknown key lrr"),
        (lambda c: c["pretrain"]["gpt2-tiny"].update(lrx=3), "pretrain.gpt2-tiny: unknown key lrx"),
        (lambda c: c["training"].update(epochs="two"), "training.epochs: 'two' is not valid"),
        (lambda c: c["distill"]["student-tiny-reverse-single"].update(kl_direction="sideways"),
         "distill.student-tiny-reverse-single.kl_direction: 'sideways' is not valid"),
        (lambda c: c["distill"]["student-tiny-reverse-single"].update(teachers=["nope"]),
         "'nope' is not a pretrain run"),
        (lambda c: c["pretrain"]["llama-tiny"].update(model="llama-huge"),
         "pretrain.llama-tiny.model: unknown preset 'llama-huge'"),
        (lambda c: c["corpus"].update(layout="2025"), "corpus.layout: '2025' is not valid"),
        (lambda c: c.pop("tokenizer"), "'tokenizer' is a required property"),
        (lambda c: c["ensembles"].update({"llama-tiny": ["llama-tiny", "gpt2-tiny"]}),
         "name already used in pretrain"),
        (lambda c: c["distill"]["student-tiny-reverse-single"].update(cache={"k": 8}),
         "cached teacher targets need fixed chunks"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(demo, mutate, expected):
    cfg = copy.deepcopy(demo)
    mutate(cfg)
    with pytest.raises(UserError) as e:
        bdconfig.validate(cfg, source="demo.yaml")
    msg = str(e.value)
    assert expected in msg
    assert "\n" not in msg and msg.startswith("demo.yaml: ")


def test_overrides_merge_onto_config_yaml(paper):
    cfg = {"training": {"lr": 1e-3}, "clean": {"mode": "improved"}}
    bdconfig.prepare(cfg)
    assert cfg["run"] == paper["run"]
    assert cfg["training"]["lr"] == 1e-3
    assert cfg["training"]["epochs"] == paper["training"]["epochs"]  # untouched keys kept
    assert cfg["clean"]["mode"] == "improved"


def test_full_config_does_not_inherit_paper_runs(demo, paper):
    cfg = bdconfig.prepare(copy.deepcopy(demo))
    assert set(cfg["pretrain"]) == set(demo["pretrain"])
    assert not set(cfg["pretrain"]) & set(paper["pretrain"])


def test_pretrain_spec_merges_defaults_preset_and_overrides(paper):
    spec = bdconfig.pretrain_spec(paper, "gpt2-705M")
    assert spec["model"] == paper["models"]["gpt2-705M"]
    assert spec["train"]["lr"] == 2.5e-4  # the run's own value
    assert spec["train"]["batch_size"] == 256
    assert spec["train"]["grad_clip"] == paper["training"]["grad_clip"]  # default
    assert "model" not in spec["train"]
    assert spec["seq_length"] == 128


def test_distill_spec_baby_llama(paper):
    spec = bdconfig.distill_spec(paper, "baby-llama-58M")
    assert spec["objective"] == "kd"
    assert spec["student"] == paper["models"]["llama-58M"]
    assert spec["teachers"] == ["llama-360M", "gpt2-705M"]
    assert (spec["alpha"], spec["temperature"]) == (0.5, 2.0)
    assert spec["kl_direction"] == "forward" and spec["kl_reduction"] == "batchmean"
    assert spec["train"]["lr"] == 3.0e-4 and spec["train"]["weight_decay"] == 0.1  # the paper's lr
    assert "alpha" not in spec["train"] and "teachers" not in spec["train"]


def test_distill_spec_wml_carries_reference_preset(paper):
    spec = bdconfig.distill_spec(paper, "wml-58M-4peers")
    assert spec["objective"] == "wml"
    assert spec["reference"] == paper["models"]["llama-58M"]
    assert spec["num_peers"] == 4 and spec["use_bilevel"] is True
    assert "temperature" not in spec and "use_bilevel" not in spec["train"]


def test_wml_peers_are_models_of_their_own(demo):
    cfg = copy.deepcopy(demo)
    peers = [f"student-tiny-wml-4peers-peer{i}" for i in range(1, 5)]
    assert list(bdconfig.wml_peers(cfg)) == peers
    names = bdconfig.model_names(cfg)
    assert names.index(peers[0]) > names.index("student-tiny-wml-4peers")
    cfg["distill"]["student-tiny-wml-4peers"]["seeds"] = [1, 2]
    assert bdconfig.wml_peers(cfg)["student-tiny-wml-4peers-peer3@2"] == ("student-tiny-wml-4peers@2", 3)
    cfg["pretrain"]["student-tiny-wml-4peers-peer1"] = {"model": "llama-tiny"}
    with pytest.raises(UserError, match="peer model"):
        bdconfig.validate(cfg)
    bad = copy.deepcopy(demo)
    bad["distill"]["student-tiny-wml-4peers"]["temperature"] = 2.0
    with pytest.raises(UserError, match="no temperature"):
        bdconfig.validate(bad)


def test_job_resources_scale_with_model_size(paper):
    small = bdconfig.job_resources(paper, "pretrain", "llama-58M-nodistill")
    large = bdconfig.job_resources(paper, "pretrain", "gpt2-705M")
    assert large["mem_mb"] > small["mem_mb"] and large["runtime"] > small["runtime"]
    kd = bdconfig.job_resources(paper, "distill", "baby-llama-58M")
    assert kd["mem_mb"] > small["mem_mb"]  # the teachers sit in memory too


def test_cli_reports_one_line(tmp_path, demo):
    bad = copy.deepcopy(demo)
    bad["data"]["seq_length"] = "long"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    r = subprocess.run([sys.executable, "-m", "babydistill.config", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {f}: data.seq_length: 'long' is not valid "
                                             "(not of type 'integer')"]


def test_seeds_expand_into_instances_with_matching_teachers(demo):
    cfg = copy.deepcopy(demo)
    cfg["pretrain"]["llama-tiny"]["seeds"] = [1, 2]
    cfg["pretrain"]["student-tiny-nodistill"]["seeds"] = [1, 2]
    cfg["distill"]["student-tiny-kd-ensemble"]["seeds"] = [2, 3]
    bdconfig.validate(cfg)
    names = bdconfig.model_names(cfg)
    assert "llama-tiny@1" in names and "llama-tiny@2" in names and "llama-tiny" not in names
    assert "student-tiny-kd-ensemble@3" in names
    spec = bdconfig.distill_spec(cfg, "student-tiny-kd-ensemble@2")
    assert spec["train"]["seed"] == 2
    assert spec["teachers"] == ["llama-tiny@2", "gpt2-tiny"]  # same seed where the teacher has it
    assert bdconfig.teachers_of(cfg, "student-tiny-kd-ensemble@3") == ["llama-tiny@1", "gpt2-tiny"]
    assert bdconfig.baseline_of(cfg, "student-tiny-kd-ensemble@2") == "student-tiny-nodistill@2"
    assert bdconfig.pretrain_spec(cfg, "llama-tiny@1")["train"]["seed"] == 1
    assert bdconfig.ensemble_members(cfg, "tiny-ensemble") == ["llama-tiny@1", "gpt2-tiny"]


def test_cache_key_is_shared_by_seeds_and_variants_with_the_same_teachers_k_and_t():
    from babydistill.config import cache_key
    kd = {"objective": "kd", "student": "s", "teachers": ["a", "b"], "alpha": 0.5,
          "temperature": 2.0, "cache": {"k": 64}}
    config = {"pretrain": {"a": {"model": "m"}, "b": {"model": "m"}},
              "distill": {"x": {**kd, "seeds": [1, 2]}, "y": dict(kd),
                          "z": {**kd, "temperature": 1.0}, "live": {**kd, "cache": None}}}
    assert cache_key(config, "x@1") == cache_key(config, "x@2") == cache_key(config, "y") == "a+b.k64.T2"
    assert cache_key(config, "z") == "a+b.k64.T1"
    assert cache_key(config, "live") is None


# Issue 11, case 11: shapes that cannot work and non-finite numbers fail at config time,
# through `python -m babydistill.config`, in one line naming the key.
IMPOSSIBLE = [
    ("models:\n  llama-tiny: {arch: llama, hidden_size: 128, num_layers: 4, num_heads: 3, "
     "num_kv_heads: 3, intermediate_size: 256, max_position_embeddings: 256}",
     "models.llama-tiny.num_heads: 3 does not divide hidden_size 128"),
    ("models:\n  llama-tiny: {arch: llama, hidden_size: 128, num_layers: 4, num_heads: 4, "
     "num_kv_heads: 3, intermediate_size: 256, max_position_embeddings: 256}",
     "models.llama-tiny.num_kv_heads: 3 does not divide num_heads 4"),
    ("models:\n  gpt2-tiny: {arch: gpt2, hidden_size: 128, num_layers: 4, num_heads: 4, "
     "max_position_embeddings: 64}",
     "models.gpt2-tiny.max_position_embeddings: 64 is less than data.seq_length 128"),
    ("models:\n  llama-tiny: {arch: llama, hidden_size: 24, num_layers: 4, num_heads: 8, "
     "intermediate_size: 256, max_position_embeddings: 256}",
     "models.llama-tiny.num_heads: head size hidden_size/num_heads = 3 is odd"),
    ("models:\n  llama-bare: {arch: llama, hidden_size: 128, num_layers: 4, num_heads: 4}",
     "models.llama-bare: arch llama needs 'intermediate_size'"),  # unused presets too
    ("training:\n  lr: .nan", "training.lr: nan is not a finite number"),
    ("training:\n  grad_clip: .inf", "training.grad_clip: inf is not a finite number"),
    ("training:\n  betas: [0.9, -.inf]", "training.betas[1]: -inf is not a finite number"),
    ("distill:\n  student-tiny-reverse-single: {temperature: .nan}",
     "distill.student-tiny-reverse-single.temperature: nan is not a finite number"),
]


@pytest.mark.parametrize("override, expected", IMPOSSIBLE)
def test_impossible_shapes_and_numbers_fail_at_config_time(override, expected, tmp_path, repo_root):
    cfg = bdconfig.deep_merge(yaml.safe_load((repo_root / "workflow" / "demo.yaml").read_text()),
                              yaml.safe_load(override))
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "babydistill.config", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {f}: {expected}")


def test_command_line_overrides_get_yaml_types(repo_root):
    """Issue 11, case 12: Snakemake hands nested --config values over as strings; they are
    read as YAML, except where the schema wants the string."""
    cfg = yaml.safe_load((repo_root / "workflow" / "demo.yaml").read_text())
    over = {"training": {"lr": "0.001", "eps": "1e-6", "compile": "true", "epochs": "3",
                         "max_steps": "null"},
            "corpus": {"layout": "2023", "dir": "123", "url": "null"}}
    cfg = bdconfig.deep_merge(cfg, over)
    bdconfig.coerce_overrides(cfg, over)
    t = cfg["training"]
    assert (t["lr"], t["eps"], t["compile"], t["epochs"], t["max_steps"]) == (0.001, 1e-6, True, 3, None)
    assert cfg["corpus"]["layout"] == "2023" and cfg["corpus"]["dir"] == "123"
    assert cfg["corpus"]["url"] is None
    bdconfig.validate(cfg)


def test_sha256_beside_every_url(paper):
    """Case 4: the schema takes a digest beside each url; their counts must agree."""
    cfg = copy.deepcopy(paper)
    cfg["corpus"]["sha256"] = "ab" * 32
    cfg["eval"]["blimp"]["suites"]["blimp"]["sha256"] = "sha256:" + "CD" * 32
    bdconfig.validate(cfg)
    for bad, expected in ((["ab" * 32, "cd" * 32], "corpus.sha256: 2 digest(s) for 1 url(s)"),
                          ("xyz", "corpus.sha256: 'xyz' is not valid")):
        cfg["corpus"]["sha256"] = bad
        with pytest.raises(UserError, match=re.escape(expected)):
            bdconfig.validate(cfg, "paper.yaml")
    # a list of urls takes a list of as many digests (the only check: the rules trust it)
    cfg["corpus"].update(url=["https://a/1.zip", "https://a/2.zip"], sha256=["ab" * 32, "cd" * 32])
    bdconfig.validate(cfg)
    for bad in (["ab" * 32], "ab" * 32):
        cfg["corpus"]["sha256"] = bad
        with pytest.raises(UserError, match=re.escape("corpus.sha256: 1 digest(s) for 2 url(s)")):
            bdconfig.validate(cfg, "paper.yaml")
    cfg = copy.deepcopy(paper)  # a digest without a url
    cfg["eval"]["blimp"]["suites"]["blimp"].update(url=None, sha256="ab" * 32)
    with pytest.raises(UserError, match=re.escape("eval.blimp.suites.blimp.sha256: 1 digest(s) for 0 url(s)")):
        bdconfig.validate(cfg, "paper.yaml")


def test_section_fills_the_schemas_defaults(demo):
    """What the rules read of optional keys: the config's value, else the schema's default
    (the only place a default is written); an absent section gives the defaults alone."""
    props = bdconfig.specs.schema()["properties"]
    blimp_props = props["eval"]["properties"]["blimp"]["properties"]
    blimp = bdconfig.section({"eval": {"blimp": {"batch_size": 8, "suites": {}}}}, "eval", "blimp")
    defaults = bdconfig.section({}, "eval", "blimp")  # every default, $refs resolved
    assert blimp == {**defaults, "batch_size": 8, "suites": {}}
    assert defaults["convention"] == bdconfig.specs.schema()["$defs"]["blimp_convention"]["default"]
    assert blimp["backend"] == blimp_props["backend"]["default"]
    world = bdconfig.section({}, "demo_world")
    assert world == {k: v["default"] for k, v in props["demo_world"]["properties"].items()}
    cfg = copy.deepcopy(demo)
    cfg["tokenizer"].pop("min_frequency")
    tokenizer = bdconfig.section(cfg, "tokenizer")
    assert tokenizer["min_frequency"] == props["tokenizer"]["properties"]["min_frequency"]["default"]
    assert "min_frequency" not in cfg["tokenizer"]  # the config itself is left as it is
    assert bdconfig.section(demo, "corpus")["select_fraction"] == 0

def test_curriculum_runs_and_their_twins(paper, demo):
    assert bdconfig.baseline_of(paper, "llama-58M-curriculum") == "llama-58M-nodistill"
    assert bdconfig.baseline_of(demo, "student-tiny-curriculum") == "student-tiny-nodistill"
    assert bdconfig.baseline_of(paper, "llama-360M") is None
    spec = bdconfig.pretrain_spec(paper, "llama-58M-curriculum")
    assert spec["train"]["curriculum"]["epochs_per_bucket"] == 3
    assert len(spec["train"]["curriculum"]["buckets"]) == 5
    assert "baseline" not in spec["train"]
    # Every source in exactly one bucket: the full corpus is reached.
    listed = [s for b in spec["train"]["curriculum"]["buckets"] for s in b]
    assert sorted(listed) == sorted(paper["corpus"]["sources"])


@pytest.mark.parametrize("change, message", [
    (lambda c: c["pretrain"]["llama-58M-curriculum"]["curriculum"]["buckets"].append(["qed"]),
     "more than one bucket"),
    (lambda c: c["pretrain"]["llama-58M-curriculum"]["curriculum"]["buckets"][0].append("childes"),
     "childes not in corpus.sources"),
    (lambda c: c["pretrain"]["llama-58M-curriculum"].update(epochs=12),
     "never reach the last curriculum bucket"),
    (lambda c: c["pretrain"]["llama-58M-curriculum"].update(baseline="nope"),
     "is not a pretrain run"),
])
def test_bad_curriculum_configs_name_the_key(paper, change, message):
    bad = copy.deepcopy(paper)
    change(bad)
    with pytest.raises(UserError, match=message):
        bdconfig.validate(bad, "config.yaml")


# --- issue 27, round 2: nonsense that used to pass the check --------------------------------

@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["pretrain"]["student-tiny-nodistill"].update(baseline="student-tiny-nodistill"),
         "pretrain.student-tiny-nodistill.baseline: a run cannot be its own baseline"),
        (lambda c: (c["pretrain"]["llama-tiny"].update(baseline="gpt2-tiny"),
                    c["pretrain"]["gpt2-tiny"].update(baseline="llama-tiny")),
         "the baselines form a loop (llama-tiny -> gpt2-tiny -> llama-tiny)"),
        (lambda c: c["distill"]["student-tiny-kd-ensemble"].update(teachers=["llama-tiny", "llama-tiny"]),
         "distill.student-tiny-kd-ensemble.teachers: teacher 'llama-tiny' listed twice"),
        (lambda c: c["ensembles"].update({"tiny-ensemble": ["gpt2-tiny", "gpt2-tiny"]}),
         "ensembles.tiny-ensemble: member 'gpt2-tiny' listed twice"),
        (lambda c: c.update(seed=-1), "seed: -1 is not valid"),
        (lambda c: c["pretrain"]["llama-tiny"].update(seeds=[1, -2]), "-2 is not valid"),
        (lambda c: c["training"].update(lr=1e9), "training.lr: 1000000000.0 is not valid"),
        (lambda c: c["training"].update(epochs=1_000_000), "training.epochs: 1000000 is not valid"),
        (lambda c: c["training"].update(batch_size=10**12), "training.batch_size: 1000000000000 is not valid"),
    ],
)
def test_nonsense_references_and_absurd_values_are_one_line(demo, mutate, expected):
    cfg = copy.deepcopy(demo)
    if "student-tiny-nodistill" not in cfg["pretrain"]:
        pytest.skip("the demo config renamed its baseline")
    mutate(cfg)
    with pytest.raises(UserError) as e:
        bdconfig.validate(cfg, source="demo.yaml")
    msg = str(e.value)
    assert expected in msg, msg
    assert "\n" not in msg and msg.startswith("demo.yaml: ")


def _alias_bomb(levels: int = 12, width: int = 10) -> str:
    """The billion-laughs shape: each level lists the previous one ``width`` times (5 kB of
    text that expands to width**levels values)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_at_once(demo, tmp_path):
    """5 kB of YAML aliases kept the config check at 100% CPU for minutes (check_finite walked
    every alias); now it is counted with each shared object once and refused in one line."""
    import time

    bomb = yaml.safe_load(_alias_bomb())
    cfg = copy.deepcopy(demo)
    cfg["training"]["blimp_limit"] = bomb["a11"]  # nested under a real key, not just top level
    t0 = time.perf_counter()
    with pytest.raises(UserError) as e:
        bdconfig.validate(cfg, source="bomb.yaml")
    assert time.perf_counter() - t0 < 5
    assert "alias" in str(e.value) and "\n" not in str(e.value)
    # the CLI, on the file as written
    path = tmp_path / "bomb.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in demo.items()}) + _alias_bomb())
    res = subprocess.run([sys.executable, "-m", "babydistill.config", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode != 0 and "alias" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_shared_aliases_of_a_small_config_still_pass(demo):
    """Anchors are fine in moderation: a block shared by alias passes, and a NaN in a shared
    block is still found (under the first key that reaches it)."""
    from babydistill.config import specs

    cfg = copy.deepcopy(demo)
    shared = {"lr": 0.001}
    for run in cfg["pretrain"].values():
        run.update(shared)
    bdconfig.validate(cfg)
    nan = {"x": float("nan")}
    with pytest.raises(UserError, match=r"c.yaml: a.x: nan is not a finite number"):
        specs.check_finite({"a": nan, "b": nan}, "", "c.yaml")


def test_a_convention_lmeval_cannot_score_is_refused_at_config_time(demo):
    cfg = copy.deepcopy(demo)
    cfg["eval"]["blimp"].update(convention="babylm-2025", backend="lmeval")
    with pytest.raises(UserError, match=r"convention babylm-2025 needs eval.blimp.backend: fast"):
        bdconfig.validate(cfg, source="demo.yaml")
    cfg["eval"]["blimp"]["backend"] = "fast"
    bdconfig.validate(cfg, source="demo.yaml")


# ---------------------------------------------------------------- challenge: and at_words

def test_strict_small_names_the_curriculum_runs_15_epochs_in_one_line(tmp_path, paper):
    held = {**copy.deepcopy(paper), "challenge": "strict-small-2026"}
    f = tmp_path / "config.yaml"
    f.write_text(yaml.safe_dump(held))
    r = subprocess.run([sys.executable, "-m", "babydistill.config", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {f}: challenge strict-small-2026: ")
    assert "pretrain.llama-58M-curriculum trains 15 epochs, the rules allow 10 (150M words seen)" \
        in lines[0]
    assert "(and 4 more:" in lines[0]
    r = subprocess.run([sys.executable, "-m", "babydistill.config", str(f), "--words"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    outside = [ln for ln in r.stdout.splitlines() if ln.startswith("outside")]
    assert len(outside) == 5
    # Baby Llama: 6 epochs + its teachers' 4 and 6, over 10M words
    assert ("outside strict-small-2026: distill.baby-llama-58M sees 160M words with its "
            "teachers' (llama-360M, gpt2-705M), over the 100M cap") in outside


def test_the_paper_config_sits_outside_the_rules_but_checks_none(paper):
    assert paper["challenge"] is None
    bdconfig.validate(copy.deepcopy(paper))
    found = bdconfig.challenge.violations({**copy.deepcopy(paper), "challenge": "strict-2026"})
    # strict: a 1B words-seen cap over the 10M-word split; only the 15 epochs break it
    assert found == ["pretrain.llama-58M-curriculum trains 15 epochs, the rules allow 10 "
                     "(150M words seen)"]


def test_word_budget_counts_teachers_and_the_data(demo):
    c = {**copy.deepcopy(demo), "challenge": "strict-small-2026"}
    bdconfig.validate(copy.deepcopy(c))  # the demo keeps the rules
    plan = bdconfig.challenge.planned_words(c)
    words = demo["demo_world"]["words"]
    kd = plan["distill.student-tiny-kd-ensemble"]
    assert kd["own"] == kd["epochs"] * words
    assert kd["total"] == kd["own"] + sum(plan[f"pretrain.{t}"]["own"] for t in kd["teachers"])
    big = copy.deepcopy(c)
    big["demo_world"]["words"] = 20_000_000
    with pytest.raises(UserError, match=r"over the 100M cap"):
        bdconfig.validate(big)
    data = copy.deepcopy(c)
    data["corpus"] = {**data["corpus"], "demo_world": False, "train_split": "train_100M"}
    assert bdconfig.challenge.violations(data)[-1] == (
        "the training data holds 100M words (corpus.train_split train_100M), over the 10M budget")


def test_at_words_defaults_to_the_challenges_schedule(demo):
    c = copy.deepcopy(demo)
    assert bdconfig.challenge.at_words(c) == [50_000, 100_000, 200_000]
    del c["checkpoints"]
    assert bdconfig.challenge.at_words(c) == []
    c["challenge"] = "strict-small-2026"
    assert bdconfig.challenge.at_words(c) == bdconfig.challenge.schedule("strict-small-2026")
    c["checkpoints"] = {"at_words": "strict-2026"}
    assert len(bdconfig.challenge.at_words(c)) == 28
    c["checkpoints"] = {"at_words": [1500]}
    with pytest.raises(UserError, match="checkpoints.at_words"):
        bdconfig.validate(c)
    c["challenge"] = "strict-tiny"
    c["checkpoints"] = {"at_words": [2000]}
    with pytest.raises(UserError, match="challenge: 'strict-tiny' is not valid"):
        bdconfig.validate(c)


# ---------------------------------------------------------------- eval.finetune.recipe


@pytest.mark.parametrize("name", ["config.yaml", "workflow/demo.yaml", "workflow/laptop.yaml"])
def test_finetune_recipe_defaults_to_2023_and_keeps_the_task_specs(repo_root, name):
    """The shipped configs stay on babylm-2023: the rule's --spec per task is the config's
    object, unchanged (so their fine-tuning jobs and outputs do not change)."""
    from babydistill.config import finetune_recipes

    cfg = bdconfig.prepare(yaml.safe_load((repo_root / name).read_text()), name)
    section = bdconfig.section(cfg, "eval", "finetune")
    assert section["recipe"] == "babylm-2023"
    assert finetune_recipes.task_specs(section) == cfg["eval"]["finetune"]["tasks"]


def test_finetune_recipe_2025_has_the_official_set(demo):
    from babydistill.config import finetune_recipes

    cfg = copy.deepcopy(demo)
    cfg["eval"]["finetune"]["recipe"] = "babylm-2025"
    bdconfig.validate(cfg, source="demo.yaml")
    specs = finetune_recipes.task_specs(bdconfig.section(cfg, "eval", "finetune"))
    assert list(specs) == ["boolq", "multirc", "rte", "wsc", "mrpc", "qqp", "mnli"]
    assert {t: (s["batch_size"], s["epochs"], s["max_train"]) for t, s in specs.items()} == {
        "boolq": (16, 10, None), "multirc": (16, 10, None), "rte": (32, 10, None),
        "wsc": (32, 30, None), "mrpc": (32, 10, None), "qqp": (32, 10, 10_000),
        "mnli": (32, 10, 10_000)}
    assert {(s["lr"], s["seed"], s["recipe"]) for s in specs.values()} == {(3e-5, 42, "babylm-2025")}
    for s in specs.values():  # what the finetune rule passes is a valid --spec
        bdconfig.specs.validate(s, "finetune_task_2025", "--spec")


def test_unknown_finetune_recipe_is_one_line(demo):
    cfg = copy.deepcopy(demo)
    cfg["eval"]["finetune"]["recipe"] = "babylm-2024"
    with pytest.raises(UserError) as e:
        bdconfig.validate(cfg, source="demo.yaml")
    msg = str(e.value)
    assert msg.startswith("demo.yaml: eval.finetune.recipe: 'babylm-2024'") and "\n" not in msg


def test_paper_tables_check_the_recipe_tasks(demo):
    cfg = copy.deepcopy(demo)
    cfg["eval"]["finetune"]["recipe"] = "babylm-2025"
    cfg["tables"]["paper"]["baby-llama-table2"]["tasks"] = ["rte", "cola"]
    with pytest.raises(UserError, match=r"'cola' is not in eval.finetune.tasks \(known: boolq"):
        bdconfig.validate(cfg, source="demo.yaml")


def _with_masked_runs(demo):
    """The demo config with a roberta teacher, a masked KD student and masked WML peers."""
    cfg = copy.deepcopy(demo)
    cfg["pretrain"]["roberta-tiny"] = {"model": "roberta-tiny"}
    cfg["distill"]["roberta-kd"] = {"objective": "kd", "student": "roberta-tiny",
                                    "teachers": ["roberta-tiny"], "alpha": 0.5, "temperature": 2.0}
    cfg["distill"]["roberta-wml"] = {"objective": "wml", "reference": "roberta-tiny", "alpha": 0.5}
    return cfg


def test_masked_runs_validate_with_the_fast_backend(demo):
    bdconfig.validate(_with_masked_runs(demo))


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["distill"]["roberta-kd"].update(teachers=["llama-tiny"]),
     "distill.roberta-kd.teachers: 'llama-tiny' is a causal LM and the student 'roberta-tiny' a "
     "masked one; KD needs teacher and student of one kind"),
    (lambda c: c["distill"]["student-tiny-kd-ensemble"].update(teachers=["llama-tiny", "roberta-tiny"]),
     "distill.student-tiny-kd-ensemble.teachers: 'roberta-tiny' is a masked LM and the student "
     "'llama-student-tiny' a causal one"),
    (lambda c: c["distill"]["roberta-kd"].update(cache={"k": 8}, random_offset=False),
     "distill.roberta-kd.cache: a masked-LM student distils from live teachers only"),
    (lambda c: c["distill"]["roberta-wml"].update(peers=["roberta-tiny", "llama-student-tiny"]),
     "distill.roberta-wml: its peers and reference mix masked and causal presets"),
    (lambda c: c["eval"]["blimp"].update(backend="lmeval"),
     "pretrain.roberta-tiny: 'roberta-tiny' is a masked LM (arch roberta) and lm-eval has no "
     "masked-LM scorer; set eval.blimp.backend: fast"),
])
def test_masked_run_mistakes_are_one_line(demo, mutate, expected):
    cfg = _with_masked_runs(demo)
    mutate(cfg)
    with pytest.raises(UserError) as e:
        bdconfig.validate(cfg, source="demo.yaml")
    msg = str(e.value)
    assert expected in msg and "\n" not in msg and msg.startswith("demo.yaml: ")


def test_lmeval_backend_names_a_masked_distill_run_too(demo):
    cfg = copy.deepcopy(demo)
    cfg["eval"]["blimp"]["backend"] = "lmeval"
    cfg["distill"]["roberta-wml"] = {"objective": "wml", "reference": "roberta-tiny", "alpha": 0.5}
    with pytest.raises(UserError, match=r"distill.roberta-wml: 'roberta-tiny' is a masked LM"):
        bdconfig.validate(cfg)


def test_paper_config_names_the_mlm_and_the_causal_wml_runs(paper):
    runs = paper["distill"]
    mlm, causal = runs["wml-98M-4peers-mlm"], runs["wml-58M-4peers"]
    assert paper["models"][mlm["reference"]]["arch"] == "roberta"
    assert paper["models"][causal["reference"]]["arch"] == "llama"
    train = bdconfig.training_of(paper, mlm)
    assert train["betas"] == [0.9, 0.95] and train["weight_decay"] == 0.1  # theirs
    assert bdconfig.section(paper, "eval", "blimp")["backend"] == "fast"


def test_cache_precision_names_its_cache_and_is_absent_from_an_fp32_spec(demo):
    """distill.<run>.cache.precision: bf16 gets a cache folder of its own (``.bf16``) and is
    in the job's spec; without it (fp32) the cache key and the spec are those of before."""
    name = next(n for n, r in demo["distill"].items() if r.get("cache"))
    fp32_key = bdconfig.cache_key(demo, name)
    assert not fp32_key.endswith(".bf16")
    assert "precision" not in bdconfig.distill_spec(demo, name)["cache"]
    cfg = copy.deepcopy(demo)
    cfg["distill"][name]["cache"]["precision"] = "bf16"
    bdconfig.validate(cfg, source="demo.yaml")
    assert bdconfig.cache_key(cfg, name) == fp32_key + ".bf16"
    assert bdconfig.distill_spec(cfg, name)["cache"]["precision"] == "bf16"
    cfg["distill"][name]["cache"]["precision"] = "fp16"
    with pytest.raises(UserError, match="precision"):
        bdconfig.validate(cfg, source="demo.yaml")


def test_default_keep_checkpoints_is_left_out_of_the_job_spec(demo):
    """A job spec names keep_checkpoints only when it is not the default (none): the key frees
    disk and changes no model, and a spec that named it would make Snakemake rerun every
    training job of a results folder made before the key (params changed)."""
    name = next(iter(demo["pretrain"]))
    assert "keep_checkpoints" not in bdconfig.pretrain_spec_of(demo, name).to_json()["train"]
    cfg = copy.deepcopy(demo)
    cfg["training"]["keep_checkpoints"] = "last"
    assert bdconfig.pretrain_spec_of(cfg, name).to_json()["train"]["keep_checkpoints"] == "last"
