"""Workflow-level safety (issue 11): config values never reach the shell as code (case 1),
the eval rule runs no code from model folders (case 3), overrides parse as YAML (case 12).

Case 1.

A real Snakemake run of the three download rules with locations a careless or hostile
user might write: a space, '&', ';', '$(...)', backticks and both quotes in a local
folder's name, a URL whose query holds '&', ';' and '$(...)', and a --subdir with the
same. Each location works (the data arrives), and nothing in them is executed: the
commands they carry would create marker files in the working directory, and none exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from test_download import MINI, http_root, make_zip  # noqa: F401  (fixture)
from test_workflow import snakemake

# every one of these would run `touch` (or background the command) if unquoted
HOSTILE = "x & y; touch M1 $(touch M2) `touch M3` 'q' \"qq\" ${IFS} {braces}"
MARKERS = ("M1", "M2", "M3", "M4", "M5", "M6", "y")


def test_hostile_locations_are_data_not_code(repo_root, tmp_path, http_root):  # noqa: F811
    www, base = http_root
    work = tmp_path / "work"
    work.mkdir()
    corpus_dir = tmp_path / f"corpus {HOSTILE}"
    shutil.copytree(MINI, corpus_dir)
    suite_subdir = f"blimp {HOSTILE}"
    make_zip(www / "suite.zip", {
        f"blimp-main/{suite_subdir}/anaphor_agreement.jsonl":
            b'{"sentence_good": "She saw herself.", "sentence_bad": "She saw himself."}\n',
        "blimp-main/other/readme.jsonl": b"{}\n",
    })
    suite_url = f"{base}/suite.zip?a=1&b=2;touch${{IFS}}M4&c=$(touch${{IFS}}M5)`touch${{IFS}}M6`"
    glue_dir = tmp_path / f"glue {HOSTILE}"
    glue_dir.mkdir()
    for split in ("train", "valid"):
        (glue_dir / f"cola.{split}.jsonl").write_text('{"sentence": "a", "label": 1}\n')

    cfg = yaml.safe_load((repo_root / "workflow/demo.yaml").read_text())
    cfg["run"] = "hostile"
    cfg["corpus"].update(demo_world=False, dir=str(corpus_dir))
    cfg["eval"]["blimp"]["suites"] = {"s": {"url": suite_url, "subdir": suite_subdir}}
    cfg["eval"]["finetune"].update(demo_world=False, dir=str(glue_dir))
    config = tmp_path / "hostile.yaml"
    config.write_text(yaml.safe_dump(cfg))

    raw = "results/hostile/corpus/raw"
    targets = [f"{raw}/babylm_10M/cbt.train", f"{raw}/babylm_dev/cbt.dev",
               "results/hostile/data/suites/s", "results/hostile/data/glue"]
    r = snakemake(repo_root, *targets, "--cores", "1", "--configfile", str(config), cwd=work)
    logs = "".join(p.read_text() for p in (work / "results/logs").rglob("*.log")) \
        if (work / "results/logs").is_dir() else ""
    assert r.returncode == 0, r.stdout + r.stderr + logs
    # the data arrived: the values reached the CLIs verbatim
    assert (work / raw / "babylm_10M/cbt.train").read_bytes() == (MINI / "babylm_10M/cbt.train").read_bytes()
    assert sorted(p.name for p in (work / "results/hostile/data/suites/s").glob("*.jsonl")) == \
        ["anaphor_agreement.jsonl"]
    assert sorted(p.name for p in (work / "results/hostile/data/glue").glob("*.jsonl")) == \
        ["cola.train.jsonl", "cola.valid.jsonl"]
    lock = json.loads((work / "results/hostile/downloads.lock.json").read_text())
    assert list(lock) == [suite_url]
    # ... and nothing in them ran
    for root in (work, tmp_path, Path.cwd()):
        for m in MARKERS:
            assert not (root / m).exists(), f"{root / m}: a config value was executed"


def dry_run_commands(repo_root, tmp_path, *args) -> str:
    r = snakemake(repo_root, "-n", "-p", "--cores", "2", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_eval_rule_never_trusts_remote_code(repo_root, tmp_path):
    """Case 3: no eval_blimp job (plain models and the ensemble alike) passes
    --trust-remote-code; ensembles load with babydistill's own classes instead."""
    out = dry_run_commands(repo_root, tmp_path, "--configfile", str(repo_root / "workflow/demo.yaml"))
    evals = [line for line in out.splitlines() if "babydistill.eval.blimp" in line]
    from babydistill import config as bdconfig
    n_models = len(bdconfig.model_names(bdconfig.prepare(bdconfig.load_yaml(repo_root / "workflow/demo.yaml"))))
    own = [line for line in evals if "/babylm-20" not in line]  # paper-table scorings aside
    assert any("tiny-ensemble" in line for line in own) and len(own) == n_models  # one suite
    assert not [line for line in evals if "trust-remote-code" in line]
    assert "trust-remote-code" not in out


def test_readme_override_syntax_works_through_snakemake(repo_root, tmp_path):
    """Case 12: `--config 'training={lr: 0.001}'` (the README's syntax) reaches the jobs as
    numbers and booleans; a wrong one is blamed on --config."""
    demo = str(repo_root / "workflow/demo.yaml")
    out = dry_run_commands(repo_root, tmp_path, "--configfile", demo, "--config",
                           "training={lr: 0.001, compile: true, checkpoint_every: 7}",
                           'corpus={layout: "2023"}')
    specs = [json.loads(line.split("--spec '", 1)[1].split("'", 1)[0])
             for line in out.splitlines() if "babydistill.train.pretrain" in line and "--spec '" in line]
    assert specs and all(s["train"]["lr"] == 0.001 and s["train"]["compile"] is True
                         and s["train"]["checkpoint_every"] == 7 for s in specs)
    r = snakemake(repo_root, "-n", "--cores", "1", "--configfile", demo,
                  "--config", "training={lr: fast}", cwd=tmp_path)
    assert r.returncode != 0
    assert f"config error: {demo} + --config: training.lr: 'fast' is not valid" in r.stdout + r.stderr


# --- issue 27.1/27.2: one writer per output folder, across processes -------------------------

def test_a_second_process_meets_the_lock_in_one_line(tmp_path):
    """A real second process: while one holds the folder's lock, the other is refused with
    the holder's PID and host; once the holder exits (killed, even), the lock is free."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from babydistill.common import UserError, exclusive

    out = tmp_path / "models" / "m"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from babydistill.common import exclusive\n"
         f"with exclusive({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError) as e:
            with exclusive(out, "model folder"):
                pass
        msg = str(e.value)
        assert f"PID {holder.pid} on " in msg and "model folder" in msg and "\n" not in msg
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with exclusive(out) as lock:  # the kernel dropped the dead holder's lock
        assert lock.read_text().startswith(f"PID {os.getpid()} ")
    assert not out.exists()  # the lock lives beside the output, never in it
    assert not lock.exists()  # and goes when released: nothing is left beside the output


def test_a_full_disk_is_one_line_naming_the_path(tmp_path, capsys):
    """ENOSPC from any write in a stage (atomic_write_text here) ends in one line with the path
    and the free space, not a traceback (issue 27.5). The failure is injected: a real full
    filesystem needs root (the SLURM/e2e tests run where one can be mounted)."""
    import errno as errno_mod
    import os

    from babydistill import common

    target = tmp_path / "out" / "summary.json"

    @common.cli
    def stage(argv=None):
        with common.atomic_path(target) as tmp:
            raise OSError(errno_mod.ENOSPC, os.strerror(errno_mod.ENOSPC), str(tmp))

    with pytest.raises(SystemExit) as e:
        stage([])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no space left on the device" in err and "MiB free" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not target.exists() and not list(target.parent.glob(".summary.json.*"))  # nothing half-written
