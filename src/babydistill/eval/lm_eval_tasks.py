"""lm-eval task YAMLs for a zero-shot suite, kept per run so anyone can recompute a score.

Owns how a suite directory (one ``<paradigm>.jsonl`` per paradigm: BLiMP-format minimal
pairs, or EWoK's context + two targets) becomes lm-eval 0.4
tasks: one ``multiple_choice`` task per paradigm reading its local jsonl with the ``json``
builder (no hub access), and one group per suite whose ``acc`` is the macro mean over
paradigms (``weight_by_size: false``), the ``accuracy`` of our summary JSONs and tables.
The workflow writes them to ``results/<run>/lm_eval_tasks/<suite>/`` with the data paths
relative to the directory the workflow runs in (the repository root), beside a
``RECIPE.md`` holding the one ``lm_eval`` command that recomputes the suite's score:

    lm_eval --model hf --model_args pretrained=results/<run>/models/<model> \\
        --include_path results/<run>/lm_eval_tasks/<suite> --tasks babydistill_<suite> \\
        --batch_size 64

CLI::

    python -m babydistill.eval.lm_eval_tasks --suite-dir DIR --suite NAME --out DIR [--limit N]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import yaml

from babydistill.common import atomic_path, cli, setup_logging

log = logging.getLogger("babydistill.eval.lm_eval_tasks")


def task_name(suite: str, paradigm: str | None = None) -> str:
    """lm-eval task name of a paradigm, or the group name of the suite (``paradigm=None``)."""
    name = f"babydistill_{suite}" + (f"__{paradigm}" if paradigm else "")
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def data_path(path: str | os.PathLike, relative_to: str | os.PathLike | None) -> str:
    """``path`` as written into a task YAML: relative to ``relative_to`` (the directory
    lm_eval will run in) when given, else absolute. datasets resolves it against the cwd."""
    path = Path(path).resolve()
    if relative_to is None:
        return str(path)
    return os.path.relpath(path, Path(relative_to).resolve())


def task_config(name: str, data_file: str, cache_dir: str | None = None, kind: str = "blimp") -> dict:
    """One paradigm as lm-eval scores it; the right answer is choice 0.

    ``blimp``: empty context, choices the two sentences (BLiMP, the supplement).
    ``ewok``: context ``Context1``, choices ``Target1``/``Target2``, as the BabyLM 2024
    pipeline's ewok_filtered tasks (babylm/evaluation-pipeline-2024@d680c287,
    lm_eval/tasks/ewok_filtered/_template_yaml).
    """
    from babydistill.eval.scorer import SUITE_FORMATS

    good, bad, context = SUITE_FORMATS[kind]
    kwargs = {"data_files": {"train": data_file}}
    if cache_dir:
        kwargs["cache_dir"] = cache_dir
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": kwargs,
        "test_split": "train",
        "output_type": "multiple_choice",
        "doc_to_text": "{{%s}}" % context if context else "",
        "doc_to_target": 0,
        "doc_to_choice": "{{[%s, %s]}}" % (good, bad),
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def write_tasks(suite: str, paradigms: Sequence, tasks_dir: str | os.PathLike,
                relative_to: str | os.PathLike | None = None,
                cache_dir: str | None = None) -> tuple[str, dict[str, str]]:
    """Write one task YAML per paradigm and ``_<group>.yaml`` into ``tasks_dir`` (created).

    ``paradigms``: :class:`babydistill.eval.scorer.Paradigm` objects (name, path).
    Returns (group name, {task name: paradigm name}).
    """
    tasks_dir = Path(tasks_dir)
    tasks_dir.mkdir(parents=True, exist_ok=True)
    names = {}
    for par in paradigms:
        name = task_name(suite, par.name)
        names[name] = par.name
        cfg = task_config(name, data_path(par.path, relative_to), cache_dir, getattr(par, "kind", "blimp"))
        (tasks_dir / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    group = task_name(suite)
    gcfg = {
        "group": group,
        "task": list(names),
        "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": False}],
        "metadata": {"version": 1.0},
    }
    (tasks_dir / f"_{group}.yaml").write_text(yaml.safe_dump(gcfg, sort_keys=False), encoding="utf-8")
    return group, names


def recipe(suite: str, tasks_dir: str | os.PathLike, model_dir: str = "results/<run>/models/<model>",
           limit: int | None = None, batch_size: int = 64) -> str:
    """The ``lm_eval`` command that recomputes a model's score on this suite."""
    cmd = (f"lm_eval --model hf --model_args pretrained={model_dir}"
           f" --include_path {tasks_dir} --tasks {task_name(suite)} --batch_size {batch_size}")
    return cmd + (f" --limit {limit}" if limit else "")


def write_suite_tasks(suite: str, suite_dir: str | os.PathLike, out: str | os.PathLike,
                      limit: int | None = None) -> Path:
    """The kept task folder of a suite (atomically): task YAMLs with data paths relative to
    the current directory, and RECIPE.md with the command that recomputes a score."""
    from babydistill.eval.scorer import load_suite

    paradigms = load_suite(suite_dir, limit)
    out = Path(out)
    with atomic_path(out) as tmp:
        group, names = write_tasks(suite, paradigms, tmp, relative_to=Path.cwd())
        ensemble = "add `,trust_remote_code=True` to --model_args for the logit-averaged ensemble"
        (tmp / "RECIPE.md").write_text(
            f"# lm-eval tasks of the `{suite}` suite ({len(names)} paradigms)\n\n"
            f"Run from the directory the workflow ran in (the data paths are relative to it):\n\n"
            f"    {recipe(suite, out, limit=limit)}\n\n"
            f"The group's `acc` (macro mean over paradigms) is `accuracy` in "
            f"`eval/blimp/{suite}/<model>.json` and the tables; {ensemble}.\n", encoding="utf-8")
    log.info("%s: %d lm-eval tasks (group %s) -> %s", suite, len(names), group, out)
    return out


@cli
def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m babydistill.eval.lm_eval_tasks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite-dir", required=True, help="folder of <paradigm>.jsonl files")
    ap.add_argument("--suite", required=True, help="suite name (the group is babydistill_<suite>)")
    ap.add_argument("--out", required=True, help="task folder to write (lm_eval --include_path)")
    ap.add_argument("--limit", type=int, default=None, help="the recipe's --limit (pairs per paradigm)")
    ap.add_argument("--log", default=None, help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    return write_suite_tasks(args.suite, args.suite_dir, args.out, args.limit)


if __name__ == "__main__":
    main()
