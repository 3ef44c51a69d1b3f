"""``python -m babydistill.<module> --help`` describes every module: the stages' CLIs and
the library modules they run (train, data, losses, ...) alike, never an empty screen."""

from __future__ import annotations

import pkgutil
import runpy
import subprocess
import sys

import pytest

import babydistill

# every module of every layer (babydistill.<layer>.<module>, and a layer's package itself
# when it runs as ``python -m``); the demo world's parts are one stage (its package)
MODULES = sorted(
    m.name.removeprefix("babydistill.")
    for m in pkgutil.walk_packages(babydistill.__path__, "babydistill.")
    if not m.name.rsplit(".", 1)[-1].startswith("_") and ".demo_world." not in m.name
    and (not m.ispkg or m.name in ("babydistill.config", "babydistill.data.demo_world"))
)


def test_every_module_is_listed():
    assert {"train.trainer", "train.pretrain", "distill.student", "eval.blimp", "data.tokenizer",
            "distill.ensemble", "config", "config.presets"} <= set(MODULES)


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", MODULES)
def test_help_describes_the_module(module, monkeypatch, capsys):
    # runpy is what ``python -m`` uses; in-process keeps 20 torch imports down to one.
    mod = __import__(f"babydistill.{module}", fromlist=["_"])
    monkeypatch.setattr(sys, "argv", [f"babydistill.{module}", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(f"babydistill.{module}", run_name="__main__", alter_sys=False)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m babydistill.{module}")
    first_line = mod.__doc__.strip().splitlines()[0]
    assert first_line in " ".join(out.split()), f"--help of {module} does not describe it"


def test_train_help_from_a_real_process():
    """The case the issue names: ``python -m babydistill.train.trainer --help`` printed nothing."""
    res = subprocess.run([sys.executable, "-m", "babydistill.train.trainer", "--help"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "The one training loop" in res.stdout and "babydistill.train.pretrain" in res.stdout
