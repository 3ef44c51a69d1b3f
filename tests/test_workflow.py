"""The Snakemake workflow itself: both configs resolve, lint is clean, rules declare resources."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
MODEL_RULES = {"pretrain", "distill", "teacher_cache", "eval_blimp", "eval_revisions", "finetune",
               "sweep_worker", "sweep_best"}


def snakemake(repo_root, *args, cwd=None):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run([*SNAKEMAKE, "--directory", str(cwd or repo_root),
                           "--snakefile", str(repo_root / "Snakefile"), *args],
                          capture_output=True, text=True, env=env, cwd=cwd or repo_root)


def job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_demo_dry_run_plans_the_whole_dag(repo_root, tmp_path):
    r = snakemake(repo_root, "-n", "--cores", "2", "--configfile",
                  str(repo_root / "workflow/demo.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counts = job_counts(r.stdout)
    demo = yaml.safe_load((repo_root / "workflow/demo.yaml").read_text())
    n_sources = len(demo["corpus"]["sources"])
    assert counts["clean_source"] == 2 * n_sources  # train and dev of every source
    assert counts["pretrain"] == len(demo["pretrain"])
    assert counts["distill"] == len(demo["distill"])
    assert counts["tokenize_split"] == 2 and counts["train_tokenizer"] == 1
    # every WML peer is a model of its own (<run>-peer<i>)
    n_peers = sum(r.get("num_peers", 0) for r in demo["distill"].values() if r["objective"] == "wml")
    assert counts["wml_peer"] == n_peers
    n_models = len(demo["pretrain"]) + len(demo["distill"]) + n_peers + len(demo["ensembles"])
    assert counts["eval_blimp"] == n_models * len(demo["eval"]["blimp"]["suites"])
    # every trained model is fine-tuned; the logit-averaged ensemble is scored zero-shot only
    n_trained = n_models - len(demo["ensembles"])
    assert counts["finetune"] == n_trained * len(demo["eval"]["finetune"]["tasks"])
    assert counts["tables"] == 1
    assert counts["model_card"] == n_models  # one card per model, after its evaluations
    # every trained model's checkpoints on the fast subsets, and one learning-curve report
    assert counts["eval_revisions"] == n_trained and counts["learning_curves"] == 1
    assert "export" not in counts  # a submission step: snakemake exports


def test_exports_dry_run_exports_every_trained_model_from_its_evaluations(repo_root, tmp_path):
    r = snakemake(repo_root, "exports", "-n", "--cores", "2", "--configfile",
                  str(repo_root / "workflow/demo.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    demo = yaml.safe_load((repo_root / "workflow/demo.yaml").read_text())
    n_peers = sum(r.get("num_peers", 0) for r in demo["distill"].values() if r["objective"] == "wml")
    n_trained = len(demo["pretrain"]) + len(demo["distill"]) + n_peers
    counts = job_counts(r.stdout)
    assert counts["export"] == counts["eval_revisions"] == n_trained
    jobs = [j for j in dry_run_jobs(r.stdout) if j["rule"] == "export"]
    for job in jobs:  # its inputs: the model's fast results and its full eval_blimp pairs
        model = job["output"].rsplit("/", 1)[1]
        assert job["output"] == f"results/demo/export/results/{model}"
        assert f"results/demo/eval/revisions/{model}.json" in job["input"]
        assert f"results/demo/eval/blimp/demo/{model}.pairs.tsv" in job["input"]
    one = snakemake(repo_root, "exports", "-n", "--cores", "2", "--configfile",
                    str(repo_root / "workflow/demo.yaml"), "--config",
                    "export={models: [student-tiny-kd-topk]}", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert job_counts(one.stdout)["export"] == 1


def test_paper_dry_run(repo_root, tmp_path):
    r = snakemake(repo_root, "-n", "--cores", "8", "--resources", "gpu=1", "--configfile",
                  str(repo_root / "config.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counts = job_counts(r.stdout)
    # 7: llama-58M-curriculum; distill 7: WML causal (wml-58M-4peers) and masked (wml-98M-4peers-mlm)
    assert counts["pretrain"] == 7 and counts["distill"] == 7
    # BabyLlama-2's tuned baseline (sweep:smollama-345M:best), trained after its sweep
    assert counts["sweep_best"] == 1 and counts["sweep_results"] == 1
    assert counts["teacher_cache"] == 1
    assert counts["download_corpus"] == 1


def outputs_inside_other_jobs(jobs: list[dict]) -> list[str]:
    """Each output path of a job that lies inside another job's output (a folder), or that
    two jobs declare, as 'PATH (rule) in OUTPUT (rule)'."""
    owner: dict[str, tuple[str, int]] = {}  # output path -> (rule, index) of its job
    clashes = []
    for i, job in enumerate(jobs):
        for path in filter(None, job.get("output", "").split(", ")):
            if path in owner:
                clashes.append(f"{path} ({job['rule']}) in {path} ({owner[path][0]})")
            owner[path] = (job["rule"], i)
    return clashes + [f"{path} ({rule}) in {parent} ({owner[str(parent)][0]})"
                      for path, (rule, i) in owner.items() for parent in Path(path).parents
                      if str(parent) in owner and owner[str(parent)][1] != i]


def test_outputs_inside_other_jobs_finds_a_card_in_a_model_folder():
    jobs = [{"rule": "pretrain", "output": "r/models/m"},
            {"rule": "eval_blimp", "output": "r/eval/blimp/s/m.json, r/eval/blimp/s/m.pairs.tsv"},
            {"rule": "model_card", "output": "r/model_cards/m/README.md"}]
    assert outputs_inside_other_jobs(jobs) == []
    jobs.append({"rule": "card_in_place", "output": "r/models/m/README.md"})
    assert outputs_inside_other_jobs(jobs) == ["r/models/m/README.md (card_in_place) in r/models/m (pretrain)"]


@pytest.mark.parametrize("configfile", ["config.yaml", "workflow/demo.yaml"])
def test_no_job_writes_into_another_jobs_output(repo_root, tmp_path, configfile):
    """Every job keeps to its own outputs: no output of a job lies inside (a folder that is)
    another job's output, e.g. a model card in the trained model's folder."""
    r = snakemake(repo_root, "-n", "--forceall", "--cores", "8", "--configfile",
                  str(repo_root / configfile), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    jobs = dry_run_jobs(r.stdout)
    assert {"pretrain", "eval_blimp", "model_card", "tables"} <= {j["rule"] for j in jobs if j.get("output")}
    assert sum(len(j.get("output", "").split(", ")) for j in jobs) > len(jobs)
    clashes = outputs_inside_other_jobs(jobs)
    assert not clashes, "\n".join(clashes)


@pytest.mark.parametrize("configfile", ["config.yaml", "workflow/demo.yaml"])
def test_lint_is_clean(repo_root, configfile):
    r = snakemake(repo_root, "--lint", "--configfile", str(repo_root / configfile))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("key, value, message", [
    ("tokenizer", {"vocab_size": 2000, "vocab_sise": 100}, "tokenizer: unknown key vocab_sise"),
    # one sha256 per url: babydistill.config.prepare checks it (the rules do not again)
    ("corpus", {"url": ["https://a/1.zip", "https://a/2.zip"], "sha256": ["ab" * 32]},
     "corpus.sha256: 1 digest(s) for 2 url(s)"),
])
def test_bad_config_stops_with_the_key(repo_root, tmp_path, key, value, message):
    cfg = yaml.safe_load((repo_root / "workflow/demo.yaml").read_text())
    cfg[key] = {**cfg[key], **value, **({"demo_world": False} if key == "corpus" else {})}
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(cfg))
    r = snakemake(repo_root, "-n", "--cores", "1", "--configfile", str(f), cwd=tmp_path)
    assert r.returncode != 0
    assert f"config error: {f}: {message}" in r.stdout + r.stderr


RULE_FILES = ("Snakefile", "workflow/rules/*.smk")
MAX_RULE_LINES = 30  # the longest rules write out a stage's whole command line


def rule_blocks(repo_root):
    """(name, text from `rule name:` to its last line) of every rule of the workflow."""
    for smk in [repo_root / "Snakefile", *sorted((repo_root / "workflow" / "rules").glob("*.smk"))]:
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            if m := re.match(r"rule (\w+):", line):
                end = i + 1
                while end < len(lines) and (not lines[end] or lines[end][0].isspace()):
                    end += 1
                while not lines[end - 1].strip():
                    end -= 1
                yield m[1], "\n".join(lines[i:end])


def test_rules_are_short_and_show_their_commands(repo_root):
    """A rule fits on a screen and its shell command names every flag it passes: params
    hold values (or an optional flag with its value), never a whole pre-built argument
    string; config text reaches the shell quoted ({params.x:q})."""
    blocks = dict(rule_blocks(repo_root))
    assert {"all", "tables", "model_card", *MODEL_RULES} <= set(blocks)
    long = {name: n for name, body in blocks.items() if (n := body.count("\n") + 1) > MAX_RULE_LINES}
    assert not long, f"rules longer than {MAX_RULE_LINES} lines: {long}"
    for name, body in blocks.items():
        assert "{params.args" not in body, name
        if "    shell:" in body:  # every {params.x} follows its --flag (or is one: :q lists)
            shell = body.split("    shell:", 1)[1]
            for m in re.finditer(r"(\S+) \{params\.(\w+)(:q)?\}", shell):
                assert m[1].startswith("--") or m[3] or m[1].startswith("{params."), (name, m[0])
    assert "--spec {params.spec:q}" in blocks["pretrain"] and "--spec {params.spec:q}" in blocks["distill"]


def dry_run_jobs(stdout: str) -> list[dict]:
    """The jobs of `snakemake -n`: rule, log, benchmark, threads and resources."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", stdout)[1:]:
        job = {"rule": re.match(r"(?:local)?rule (\w+):", block)[1]}
        for key, value in re.findall(r"^    (\w+): (.*)$", block, re.M):
            job[key] = value
        job["resources"] = dict(kv.split("=", 1) for kv in job.get("resources", "").split(", ") if kv)
        jobs.append(job)
    return jobs


def test_every_job_has_log_benchmark_and_resources_without_a_profile(repo_root, tmp_path):
    """`snakemake --cores 8 --resources gpu=1` with config.yaml, no profile: every job has a
    log, a benchmark, gpu/mem_mb/runtime; the rules that train or run a model ask for a GPU
    and declare their threads; the others ask for none."""
    r = snakemake(repo_root, "-n", "--forceall", "--cores", "8", "--resources", "gpu=1",
                  "--configfile", str(repo_root / "config.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    jobs = [j for j in dry_run_jobs(r.stdout) if j["rule"] != "all"]
    assert MODEL_RULES <= {j["rule"] for j in jobs}
    for job in jobs:
        assert job.get("log") and job.get("benchmark"), job
        res = job["resources"]
        assert {"gpu", "mem_mb", "runtime"} <= set(res), job
        if job["rule"] in MODEL_RULES | {"eval_blimp_paper"}:  # eval_blimp's, by `use rule`
            assert int(res["gpu"]) >= 1 and int(job.get("threads", 1)) == 2, job
        else:
            assert res["gpu"] == "0", job
    blocks = dict(rule_blocks(repo_root))
    for name in MODEL_RULES:  # declared in the rule itself, not only in a profile
        for directive in ("log:", "benchmark:", "threads:", "resources:", "conda:"):
            assert f"    {directive}" in blocks[name], f"rule {name} lacks {directive}"


def test_model_rules_chain_no_second_command(repo_root):
    """The stages write provenance.json themselves; the card is rule model_card's only."""
    for name, body in rule_blocks(repo_root):
        assert "&&" not in body and "babydistill.config.provenance" not in body, name
        assert ("babydistill.report.model_card" in body) == (name == "model_card"), name


def test_variant_file_merges_onto_the_paper_config(repo_root, tmp_path):
    """A config without `run:` adds to config.yaml: Baby Llama's 4- and 6-teacher ensembles."""
    r = snakemake(repo_root, "-n", "--cores", "8", "--configfile",
                  str(repo_root / "workflow/variants/more_teachers.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout)
    assert counts["pretrain"] == 7 + 4 and counts["distill"] == 7 + 2
    assert "results/paper/models/baby-llama-58M-6teachers" in r.stdout


def test_rules_are_snakefmt_clean(repo_root):
    """The Snakefile and every rule file are formatted as `snakefmt` writes them."""
    snakefmt = Path(sys.executable).with_name("snakefmt")
    files = [repo_root / "Snakefile", *sorted((repo_root / "workflow" / "rules").glob("*.smk"))]
    r = subprocess.run([str(snakefmt), "--check", *map(str, files)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_eval_blimp_passes_each_suites_convention(repo_root, tmp_path):
    """The convention and the temperature scan reach the stage per suite (the config's
    eval.blimp.suites.<s> over eval.blimp), shell-quoted."""
    demo = yaml.safe_load((repo_root / "workflow/demo.yaml").read_text())
    demo["eval"]["blimp"].update(backend="fast", convention="babylm-2023")
    demo["eval"]["blimp"]["suites"]["demo"].update(convention="babylm-2025", temperatures=[0.5, 1.5])
    cfg = tmp_path / "conv.yaml"
    cfg.write_text(yaml.safe_dump(demo))
    r = snakemake(repo_root, "-n", "-p", "--cores", "2", "--configfile", str(cfg), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cmds = [line for line in r.stdout.splitlines()
            if "babydistill.eval.blimp" in line and "/babylm-20" not in line]  # the suite's own
    assert cmds and all("--convention babylm-2025 --temperatures 0.5 --temperatures 1.5" in c for c in cmds)
