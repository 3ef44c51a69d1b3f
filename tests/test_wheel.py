"""The built wheel: installed on its own (not editable, outside the checkout), babydistill finds
its schema and default config as package data, validates a config and runs a stage's --help.

The package's ``config/default.yaml`` is a link to the repository's ``config.yaml`` (the file a
user edits and Snakemake reads stays at the root); setuptools copies the linked file's content
into the wheel (and the sdist), which the slow test checks byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DATA = ["config/schema.yaml", "config/default.yaml"]


def test_package_data_lists_the_schema_and_default_config():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["setuptools"]["package-data"]["babydistill"] == PACKAGE_DATA
    config_dir = REPO / "src" / "babydistill" / "config"
    # the link resolves to the root config.yaml (a dangling link would ship nothing)
    assert (config_dir / "default.yaml").resolve() == (REPO / "config.yaml").resolve()
    assert (config_dir / "schema.yaml").is_file()


def _run(cmd: list, cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=600)
    if check:
        assert p.returncode == 0, f"{cmd}: {p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, a working folder outside the checkout,
    the environment to run it in, the wheel)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # no network, no user config, and none of this checkout on the path
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP") and not k.startswith("PIP_")}
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONNOUSERSITE="1")
    # build from a copy of the sources, so the build leaves no build/ or egg-info in the checkout
    tree = tmp / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "config.yaml"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", tree, "--no-deps", "--no-build-isolation",
          "-w", tmp / "dist"], tmp, env)
    (wheel,) = (tmp / "dist").glob("babydistill-*.whl")

    venv = tmp / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    python = venv / "bin" / "python"
    # pip of this venv installs into the fresh one (--python), before the fresh venv sees
    # this venv's packages: it finds no babydistill to replace
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel], tmp, env)
    # the dependencies: this venv's site-packages as a path line (its editable babydistill's
    # .pth is not run from there), after the fresh venv's own
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   tmp, env).stdout.strip()
    Path(purelib, "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp / "work"
    work.mkdir()
    return python, work, env, wheel, Path(purelib)


@pytest.mark.slow
def test_the_wheel_ships_the_package_data_as_files(fresh):
    import zipfile

    *_, wheel, _ = fresh
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for f in PACKAGE_DATA:
            info = z.getinfo(f"babydistill/{f}")
            assert (info.external_attr >> 16) & 0o170000 == 0o100000, f"{f} is not a regular file"
        assert z.read("babydistill/config/default.yaml") == (REPO / "config.yaml").read_bytes()
        schema = z.read("babydistill/config/schema.yaml")
        assert schema == (REPO / "src/babydistill/config/schema.yaml").read_bytes()
        assert "$defs" in yaml.safe_load(schema)
    assert "babydistill/data/demo_world/__main__.py" in names
    assert "babydistill/report/stats.py" in names


@pytest.mark.slow
def test_installed_wheel_validates_configs_and_runs_a_stage_help(fresh, tmp_path):
    python, work, env, _, site = fresh
    where = _run([python, "-c", "import babydistill, babydistill.common as c; "
                  "print(babydistill.__file__); print(c.in_checkout())"], work, env).stdout.split()
    assert Path(where[0]).resolve().is_relative_to(site.resolve()), where
    assert not Path(where[0]).resolve().is_relative_to(REPO)
    assert where[1] == "False"

    # the package's default config (default.yaml) and a full config from elsewhere
    p = _run([python, "-m", "babydistill.config"], work, env)
    assert "default.yaml: valid (run " in p.stdout
    demo = shutil.copy(REPO / "workflow" / "demo.yaml", work / "demo.yaml")
    assert "demo.yaml: valid (run 'demo'" in _run([python, "-m", "babydistill.config", demo],
                                                  work, env).stdout
    # overrides: merged over the packaged default config, then checked against the schema
    (work / "over.yaml").write_text("tables: {bootstrap_samples: 500}\n")
    assert "valid" in _run([python, "-m", "babydistill.config", "over.yaml"], work, env).stdout
    (work / "bad.yaml").write_text("tables: {bootstrap_sample: 500}\n")
    p = _run([python, "-m", "babydistill.config", "bad.yaml"], work, env, check=False)
    assert p.returncode == 2
    err = p.stderr.strip()
    assert "\n" not in err and err.startswith("error: bad.yaml: tables: unknown key bootstrap_sample")

    p = _run([python, "-m", "babydistill.data.tokenizer", "--help"], work, env)
    assert p.stdout.startswith("usage: ")
