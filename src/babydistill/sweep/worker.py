"""Stage (rule ``sweep_worker``): one worker of a sweep; runs trials until the study has them.

    python -m babydistill.sweep.worker --spec JSON --study-dir DIR --worker I --out FILE \\
        --train PREFIX --dev PREFIX --tokenizer DIR [--teacher DIR ...] [--cache DIR] \\
        [--blimp-suite DIR] [--objective-suite DIR]

``--spec`` is ``config.sweep_spec(config, name)``. Each trial is the base run's job spec with
the trial's parameters set (``config.sweeps.apply``), trained in this process by the base
run's own stage (``train.pretrain`` or ``distill.student``, ``run_stage``) into
``DIR/trials/<n>/`` (``model/``, ``checkpoints/``), with a :class:`TrialReporter` that
reports each evaluation's eval loss to Optuna for pruning. A retried trial resumes its
first attempt's checkpoint. The worker stops when the study has ``trials`` finished trials
and none running anywhere (it waits for the others' last trials, to retry a killed
worker's); ``--out`` (this worker's trials) is written last.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from babydistill.common import UserError, cli, exclusive, read_json, setup_logging, write_json
from babydistill.config import sweeps
from babydistill.train.callbacks import Callback
from babydistill.sweep import study as sstudy

log = logging.getLogger("babydistill.sweep")

# Test hook, never set in a workflow: seconds to sleep after a trial's first report (so a
# test can kill the worker mid-trial at a known point).
HOLD_ENV = "BABYDISTILL_SWEEP_TEST_HOLD"


class TrialReporter(Callback):
    """Reports each evaluation's eval loss (the objective's score) to the trial as step 1,
    2, ... and stops the run when the pruner says so (``optuna.TrialPruned``). ``sign``:
    -1 when the study maximizes (a BLiMP objective), so the pruner ranks by eval loss too."""

    name = "sweep_trial"

    def __init__(self, trial: optuna.Trial, sign: float = 1.0):
        self.trial, self.sign = trial, sign
        self.evals = 0
        self.last: float | None = None

    def on_step_end(self, trainer, evaluate: bool) -> None:
        if not evaluate or not trainer.evaluator or not trainer.evaluator.last_eval:
            return
        self.evals += 1
        self.last = trainer.objective.score(trainer.evaluator.last_eval)
        self.trial.report(self.sign * self.last, self.evals)
        if os.environ.get(HOLD_ENV) and self.evals == 1:
            time.sleep(float(os.environ[HOLD_ENV]))
        # the last evaluation is the trial's result: nothing left to save by stopping it
        if trainer.step < trainer.total_steps and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after evaluation {self.evals} "
                                     f"(eval loss {self.last:.4f})")

    def state_dict(self) -> dict:
        return {"evals": self.evals, "last": self.last}

    def load_state_dict(self, state: dict) -> None:
        self.evals, self.last = state["evals"], state["last"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m babydistill.sweep.worker", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True, help="config.sweep_spec as JSON (or @FILE)")
    ap.add_argument("--study-dir", required=True, metavar="DIR", help="the shared study folder")
    ap.add_argument("--worker", type=int, required=True, help="this worker's index (0..N-1)")
    ap.add_argument("--out", required=True, metavar="FILE", help="this worker's summary JSON")
    ap.add_argument("--train", required=True, metavar="PREFIX")
    ap.add_argument("--dev", required=True, metavar="PREFIX")
    ap.add_argument("--tokenizer", required=True, metavar="DIR")
    ap.add_argument("--teacher", action="append", default=[], metavar="DIR")
    ap.add_argument("--cache", default=None, metavar="DIR", help="the base run's teacher cache")
    ap.add_argument("--blimp-suite", default=None, metavar="DIR",
                    help="suite of the per-epoch BLiMP curve (train.blimp_every_epoch)")
    ap.add_argument("--objective-suite", default=None, metavar="DIR",
                    help="suite of objective blimp (scored with the fast scorer)")
    ap.add_argument("--log", default=None, metavar="FILE")
    return ap


def _trial_cache(spec: dict, stage: dict, args, study_dir: Path) -> str | None:
    """The teacher cache a cached-KD trial reads: the base run's when the trial keeps its
    k and temperature, else one built once under ``study_dir/caches/`` for the pair."""
    if not stage.get("cache"):
        return None
    base = spec["stage"]
    k, t = stage["cache"]["k"], stage["temperature"]
    if args.cache and (k, t) == (base["cache"]["k"], base["temperature"]):
        return args.cache
    if not args.teacher:
        raise UserError("--teacher: a trial with its own k or temperature builds its teacher "
                        "cache from the teachers; pass them")
    # the base run's cache precision and start token hold for the trial's cache too (a student
    # refuses a cache of another precision or start token)
    precision = stage["cache"].get("precision", "fp32")
    start = stage.get("start_token", "none")
    out = study_dir / "caches" / (f"k{k}.T{t:g}" + (f".{start}" if start != "none" else "")
                                  + (".bf16" if precision == "bf16" else ""))
    with exclusive(out, "teacher cache"):
        if not out.is_dir():
            from babydistill.distill.teacher_cache import main as build_cache

            build_cache([*[a for d in args.teacher for a in ("--teacher", d)], "--train", args.train,
                         "--seq-length", str(stage["seq_length"]), "--k", str(k),
                         "--temperature", str(t), "--out", str(out),
                         *(["--precision", precision] if precision != "fp32" else []),
                         *(["--start-token", start] if start != "none" else [])])
    return str(out)


def _stage_argv(spec: dict, stage: dict, args, tdir: Path, study_dir: Path) -> list[str]:
    argv = ["--spec", json.dumps(stage), "--train", args.train, "--dev", args.dev,
            "--tokenizer", args.tokenizer, "--out", str(tdir / "model"),
            "--checkpoint-dir", str(tdir / "checkpoints")]
    if args.blimp_suite:
        argv += ["--blimp-suite", args.blimp_suite]
    if spec["section"] == "distill" and spec["objective_kind"] == "kd":
        cache = _trial_cache(spec, stage, args, study_dir)
        argv += ["--cache", cache] if cache else [a for d in args.teacher for a in ("--teacher", d)]
    return argv


def _objective(spec: dict, summary: dict, model_dir: Path, args) -> float:
    """The trial's value: the kept model's eval loss, or its BLiMP macro accuracy."""
    if spec["objective"] == "blimp":
        from babydistill.eval.blimp import evaluate

        result, _ = evaluate(model_dir, args.objective_suite, spec["suite"], backend="fast",
                             batch_size=spec["blimp_batch_size"], limit=spec["blimp_limit"],
                             convention=spec["convention"], temperatures=spec["temperatures"])
        return float(result["accuracy"])
    if summary.get("keep") == "best" and summary.get("best_eval_loss") is not None:
        return float(summary["best_eval_loss"])
    final = summary.get("final_eval") or {}
    return sum(final.values()) / len(final) if final else math.nan


def _train(spec: dict, trial: optuna.Trial, argv: list[str], model_dir: Path) -> dict:
    """Train the trial (or read the summary a killed attempt left complete)."""
    if (model_dir / "train_summary.json").is_file():
        return read_json(model_dir / "train_summary.json")
    sign = -1.0 if spec["direction"] == "maximize" else 1.0
    callbacks = [TrialReporter(trial, sign)]
    if spec["section"] == "pretrain":
        from babydistill.train.pretrain import run_stage
    else:
        from babydistill.distill.student import run_stage
    return run_stage(argv, callbacks=callbacks)


def _failure(e: BaseException) -> str | None:
    """The failures that are the trial's own result (it counts as done): a diverged loss,
    a batch that does not fit in memory. Anything else is a fault of the run."""
    if isinstance(e, UserError) and str(e).startswith("training diverged"):
        return "diverged"
    if isinstance(e, torch.OutOfMemoryError):
        return "out of memory"
    return None


def run_trial(study: optuna.Study, trial: optuna.Trial, spec: dict, args,
              study_dir: Path) -> str:
    """Train one trial, tell the study its result; returns its state's name."""
    frozen = study.get_trials(deepcopy=False)[trial.number]
    tdir = sstudy.trial_dir(study_dir, frozen)
    root = sstudy.root_number(frozen)
    stage = sweeps.apply(spec["stage"], spec["objective_kind"], trial.params,
                         f"{spec['name']}-trial{root:04d}", spec.get("max_micro_batch_size"))
    log.info("trial %d%s: %s", trial.number, f" (retry of {root})" if root != trial.number else "",
             json.dumps(trial.params, sort_keys=True))
    try:
        with sstudy.Heartbeat(tdir / "heartbeat", spec["heartbeat_seconds"]):
            argv = _stage_argv(spec, stage, args, tdir, study_dir)
            summary = _train(spec, trial, argv, tdir / "model")
            value = _objective(spec, summary, tdir / "model", args)
    except optuna.TrialPruned as e:
        log.info("trial %d: %s", trial.number, e)
        study.tell(trial, state=TrialState.PRUNED)
        _drop_checkpoints(tdir)
        return "PRUNED"
    except Exception as e:
        reason = _failure(e)
        trial.set_user_attr("failure", reason or f"error: {type(e).__name__}: {e}"[:500])
        study.tell(trial, state=TrialState.FAIL)
        if reason is None:
            raise
        log.warning("trial %d failed (%s): %s", trial.number, reason, e)
    else:
        study.tell(trial, value)
        _drop_checkpoints(tdir)
        log.info("trial %d: %s %.5g", trial.number, spec["objective"], value)
        return "COMPLETE"
    # past the except block, which held the failed trial's frames (and their tensors)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the next trial gets the memory an out-of-memory one held
    return "FAIL"


def _drop_checkpoints(tdir: Path) -> None:
    """A finished trial's checkpoints (optimizer state: the bulk of its disk) are not kept;
    its model folder, metrics.csv and summary are."""
    for f in (tdir / "checkpoints").glob("*.pt"):
        f.unlink()


def run_worker(spec: dict, study_dir: str | os.PathLike, args) -> list[dict]:
    """Claim and run trials until the study has them all; returns this worker's trials."""
    study_dir = Path(study_dir)
    study = sstudy.open_study(spec, study_dir)
    ran: list[dict] = []
    while True:
        trial, running = sstudy.next_trial(study, spec, study_dir)
        if trial is None:
            if not running:
                return ran
            time.sleep(spec["heartbeat_seconds"])  # others' last trials: retried if they die
            continue
        state = run_trial(study, trial, spec, args, study_dir)
        ran.append({"number": trial.number, "state": state})


@cli
def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    setup_logging(args.log)
    spec = sweeps.read_spec(args.spec)
    if spec["objective"] == "blimp" and not args.objective_suite:
        raise UserError("--objective-suite: objective blimp needs the suite's folder")
    t0 = time.time()
    ran = run_worker(spec, args.study_dir, args)
    setup_logging(args.log)  # the trials' stages set up logging of their own
    summary = {"sweep": spec["name"], "worker": args.worker, "trials": ran,
               "wall_time_s": round(time.time() - t0, 2)}
    write_json(args.out, summary)
    log.info("worker %d: %d trial(s) in %.1f s", args.worker, len(ran), summary["wall_time_s"])
    return summary


if __name__ == "__main__":
    main()
