"""A sweep's Optuna study, shared by its workers: the storage, the claim of the next trial,
heartbeats, and the sampler and pruner.

Everything lives in the study folder ``results/<run>/sweeps/<name>/study/``:

* ``journal.log``: Optuna's ``JournalStorage`` on a ``JournalFileBackend``. Every change
  to the study is one JSON line appended under a lock, and every reader replays the lines;
  no process keeps state the others cannot see. The lock is ``JournalFileSymlinkLock``: it
  is taken by creating a symbolic link (``symlink(2)``, atomic on local filesystems and on
  NFS from v2 on, unlike ``fcntl`` locks, which SQLite needs and which many NFS setups break);
  a lock left by a killed process is broken after its grace period (30 s). Appends are
  fsync'ed before the lock is released, so with NFS's close-to-open consistency a reader
  that takes the lock later sees them.
* ``claim.lock``: the same kind of lock around "count the trials, then ask for one", so N
  workers never start more trials than ``trials`` between them.
* ``trials/<n>/heartbeat``: touched every ``heartbeat_seconds`` by the worker running
  trial n (a thread). Optuna's own heartbeat needs an RDB storage; a journal has none. A
  RUNNING trial whose file is 4 intervals old is a killed worker's: it is failed and
  queued again with its parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``, its
  reports inherited). Ages are measured against a file touched just before
  (``clock``), so both times come from the same (file server's) clock, not the nodes'.
* the sampler is seeded per trial number (``seed`` and the number of trials before it), so
  the same history gives the same next trial whichever worker asks, and a one-worker
  sweep is the same on every run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from babydistill.common import UserError

log = logging.getLogger("babydistill.sweep")

STALE_BEATS = 4  # a heartbeat this many intervals old is a dead worker's
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DONE_FAILURES = ("diverged", "out of memory")  # failures that are the trial's result
# the keys of a sweep spec that do not change what a trial computes or which trials exist
_OPERATIONAL = ("trials", "workers", "max_retries", "heartbeat_seconds")

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage(study_dir: str | os.PathLike) -> JournalStorage:
    """The study's journal storage (the module docstring says why it is safe to share)."""
    Path(study_dir).mkdir(parents=True, exist_ok=True)
    path = str(Path(study_dir) / "journal.log")
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileSymlinkLock(path)))


def distributions(space: dict) -> dict:
    """The normalized space (``config.sweeps.sweep_spec``) as Optuna distributions."""
    out = {}
    for key, d in space.items():
        if d["type"] == "categorical":
            out[key] = CategoricalDistribution(d["choices"])
        elif d["type"] == "int":
            out[key] = IntDistribution(d["low"], d["high"], log=d["log"])
        else:
            out[key] = FloatDistribution(d["low"], d["high"], log=d["log"])
    return out


def sampler(spec: dict, n_before: int) -> optuna.samplers.BaseSampler:
    """TPE seeded for the trial that follows ``n_before`` trials; constant_liar keeps
    parallel workers from sampling next to each other's running trials."""
    seed = int(hashlib.sha256(f"{spec['seed']}:{n_before}".encode()).hexdigest()[:8], 16)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def pruner(spec: dict) -> optuna.pruners.BasePruner:
    """Hyperband on the evaluations (BabyLlama-2: min_iter 1, eta 2), or none."""
    if spec["pruner"] == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.HyperbandPruner(min_resource=spec["min_resource"],
                                          reduction_factor=spec["reduction_factor"])


def identity(spec: dict) -> str:
    """A digest of what the trials compute: the spec without its operational keys."""
    kept = {k: v for k, v in spec.items() if k not in _OPERATIONAL}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def open_study(spec: dict, study_dir: str | os.PathLike) -> optuna.Study:
    """Create or load the study; one made from another space or base run is refused."""
    study = optuna.create_study(study_name=spec["name"], storage=storage(study_dir),
                                direction=spec["direction"], sampler=sampler(spec, 0),
                                pruner=pruner(spec), load_if_exists=True)
    mine = identity(spec)
    with claim(study_dir):
        theirs = study.user_attrs.get("identity")
        if theirs is None:
            study.set_user_attr("identity", mine)
        elif theirs != mine:
            raise UserError(f"{study_dir}: this study was made by another sweeps.{spec['name']} "
                            "(space, objective or base run changed); move the folder away "
                            "or give the sweep another name")
    return study


@contextlib.contextmanager
def claim(study_dir: str | os.PathLike) -> Iterator[None]:
    """The study-wide lock around "count, then ask" (and the stale-trial check)."""
    lock = JournalFileSymlinkLock(str(Path(study_dir) / "claim"))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def root_number(trial: FrozenTrial) -> int:
    """The trial whose folder (and checkpoint) a trial uses: the first of its retries."""
    return trial.system_attrs.get("failed_trial", trial.number)


def trial_dir(study_dir: str | os.PathLike, trial: FrozenTrial) -> Path:
    return Path(study_dir) / "trials" / f"{root_number(trial):04d}"


def is_done(trial: FrozenTrial) -> bool:
    """A trial with a result: completed, pruned, or failed by its own hyperparameters."""
    return trial.state in FINISHED or (trial.state == TrialState.FAIL
                                       and trial.user_attrs.get("failure") in DONE_FAILURES)


def clock(study_dir: str | os.PathLike) -> float:
    """Now, by the clock that stamps the heartbeat files (the file server's on NFS)."""
    probe = Path(study_dir) / "clock"
    probe.touch()
    os.utime(probe)
    return probe.stat().st_mtime


def fail_stale(study: optuna.Study, spec: dict, study_dir: str | os.PathLike) -> list[int]:
    """Fail every RUNNING trial whose heartbeat stopped and queue it again (at most
    ``max_retries`` times); call under :func:`claim`. Returns the failed trials' numbers."""
    now, limit = clock(study_dir), STALE_BEATS * spec["heartbeat_seconds"]
    retry = RetryHeartbeatStaleTrialCallback(max_retry=spec["max_retries"],
                                            inherit_intermediate_values=True)
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial_dir(study_dir, t) / "heartbeat"
        age = now - beat.stat().st_mtime if beat.exists() else float("inf")
        if age <= limit:
            continue
        log.warning("trial %d: no heartbeat for %.0f s: its worker is gone; failing it and "
                    "queueing it again", t.number, age)
        study.tell(t.number, state=TrialState.FAIL)
        retry(study, study.get_trials(deepcopy=False)[t.number])
        failed.append(t.number)
    return failed


def next_trial(study: optuna.Study, spec: dict,
               study_dir: str | os.PathLike) -> tuple[optuna.Trial | None, int]:
    """(the trial this worker runs next, or None; trials running elsewhere). A queued retry
    goes first; a new trial only while finished + running trials are fewer than ``trials``."""
    with claim(study_dir):
        fail_stale(study, spec, study_dir)
        trials = study.get_trials(deepcopy=False)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and sum(map(is_done, trials)) + running >= spec["trials"]:
            return None, running
        study.sampler = sampler(spec, len(trials))
        trial = study.ask(distributions(spec["space"]))
        beat = trial_dir(study_dir, study.get_trials(deepcopy=False)[trial.number]) / "heartbeat"
        beat.parent.mkdir(parents=True, exist_ok=True)
        beat.touch()  # inside the claim: a RUNNING trial always has a fresh heartbeat
        os.utime(beat)
        return trial, running


class Heartbeat:
    """A thread that touches ``path`` every ``every`` seconds while the trial runs."""

    def __init__(self, path: Path, every: float):
        self.path, self.every = Path(path), float(every)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sweep-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(OSError):  # a filesystem hiccup: the next beat retries
                os.utime(self.path)

    def __enter__(self) -> "Heartbeat":
        os.utime(self.path)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "sweep.study", "python -m babydistill.sweep.worker and babydistill.sweep.results")
