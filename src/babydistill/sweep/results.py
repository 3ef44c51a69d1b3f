"""Stage (rule ``sweep_results``): a finished sweep's trials table and its best trial.

    python -m babydistill.sweep.results --spec JSON --study-dir DIR --out-dir DIR

Writes, into ``--out-dir`` (``results/<run>/sweeps/<name>/``):

* ``trials.{csv,md,tex,html}``: one row per trial: its state, pruned or not, every
  parameter as sampled (BabyLlama-2's names), the objective, the evaluations it reported
  and the last eval loss, the trial it retries and why it failed;
* ``parallel_coordinates.{png,pdf}`` and ``importances.{csv,md,tex,html}``
  (:mod:`babydistill.sweep.figures`);
* ``best.json`` and ``best.yaml``: the best completed trial, its parameters and the run keys
  they set (``config.sweeps.as_run_keys``), as a config snippet to copy into a run.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd
import yaml

from babydistill.common import UserError, atomic_write_text, cli, setup_logging, write_json
from babydistill.config import sweeps
from babydistill.report.tables import write_table
from babydistill.sweep import figures, study as sstudy


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_frame(study, spec: dict) -> pd.DataFrame:
    """The trials table, in trial order, every cell as text."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        steps = sorted(t.intermediate_values)
        last = t.intermediate_values[steps[-1]] if steps else None
        sign = -1.0 if spec["direction"] == "maximize" and last is not None else 1.0
        rows.append({"trial": t.number, "state": t.state.name,
                     "pruned": "yes" if t.state.name == "PRUNED" else "no",
                     **{k: _cell(t.params.get(k)) for k in spec["space"]},
                     # a pruned trial has no result (Optuna keeps its last report as a value)
                     spec["objective"]: _cell(t.value if t.state.name == "COMPLETE" else None),
                     "evals": len(steps), "last_eval_loss": _cell(sign * last if last is not None else None),
                     "retry_of": _cell(t.system_attrs.get("failed_trial")),
                     "failure": t.user_attrs.get("failure", "")})
    return pd.DataFrame(rows, columns=["trial", "state", "pruned", *spec["space"], spec["objective"],
                                       "evals", "last_eval_loss", "retry_of", "failure"])


def best_of(study, spec: dict) -> dict:
    """The best completed trial, its params and the run keys they set."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        raise UserError(f"sweeps.{spec['name']}: no trial completed (all pruned or failed); "
                        "see the trials table and the workers' logs")
    pick = max if spec["direction"] == "maximize" else min
    best = pick(complete, key=lambda t: t.value)
    return {"sweep": spec["name"], "base": spec["base"], "section": spec["section"],
            "trial": best.number, "objective": spec["objective"], "value": best.value,
            "params": best.params,
            "run_keys": sweeps.as_run_keys(spec["stage"], spec["objective_kind"], best.params,
                                           spec.get("max_micro_batch_size")),
            "finished": sum(map(sstudy.is_done, study.get_trials(deepcopy=False)))}


def best_yaml(best: dict) -> str:
    """The best trial as a config snippet (a new run: the base run's keys, these over them)."""
    run = best["base"].split("@")[0]
    head = [f"# sweeps.{best['sweep']}: trial {best['trial']} is the best of {best['finished']} "
            f"finished trials ({best['objective']} {best['value']:.5g})",
            f"# sampled: {json.dumps(best['params'], sort_keys=True)}",
            f"# to train it: copy {best['section']}.{run} to a new run and set these keys"
            + ("; dropout is a model preset key" if "dropout" in best["run_keys"] else "")]
    body = yaml.safe_dump({best["section"]: {f"{run}-best": best["run_keys"]}},
                          default_flow_style=None, sort_keys=False)
    return "\n".join(head) + "\n" + body


def write_results(spec: dict, study_dir: str | Path, out_dir: str | Path) -> dict:
    study = sstudy.open_study(spec, study_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    best = best_of(study, spec)
    df = trials_frame(study, spec)
    caption = (f"Sweep {spec['name']} of {spec['base']}: {len(df)} trials "
               f"({best['finished']} finished), {spec['objective']} "
               f"({spec['direction']}d); best trial {best['trial']}")
    write_table(df, out, "trials", caption)
    write_table(figures.importances(study, spec), out, "importances",
                f"Sweep {spec['name']}: fANOVA importance of each parameter for "
                f"{spec['objective']} (completed trials; none below two)")
    figures.parallel_coordinates(study, spec, out, "parallel_coordinates")
    write_json(out / "best.json", best)
    atomic_write_text(out / "best.yaml", best_yaml(best))
    return best


@cli
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m babydistill.sweep.results", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True, help="config.sweep_spec as JSON (or @FILE)")
    ap.add_argument("--study-dir", required=True, metavar="DIR")
    ap.add_argument("--out-dir", required=True, metavar="DIR")
    ap.add_argument("--log", default=None, metavar="FILE")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    spec = sweeps.read_spec(args.spec)
    best = write_results(spec, args.study_dir, args.out_dir)
    print(best_yaml(best), end="")
    return best


if __name__ == "__main__":
    main()
