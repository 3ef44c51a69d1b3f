"""A throw-away one-node SLURM on this machine, for testing the SLURM profile for real.

Owns: installing Debian's SLURM + munge (apt), writing a loopback slurm.conf with two
fake GPUs (character devices as GRES), starting munged/slurmctld/slurmd without systemd,
waiting for the node to be idle, and tearing all of it down again so a second ``up``
starts from a clean state. Needs root; everything it writes carries a marker so it never
overwrites a real cluster's configuration.

    python tests/slurm_cluster.py up      # install if needed, start, wait for idle
    python tests/slurm_cluster.py down    # cancel jobs, stop daemons, remove state
    python tests/slurm_cluster.py status

From tests: ``import slurm_cluster; why = slurm_cluster.unavailable_reason(); slurm_cluster.up()``.
Also here, shared by test_profiles.py, test_slurm.py and test_slurm_demo.py: ``snakemake()``
runs the mini workflow (tests/fixtures/mini_workflow) with a profile, ``stamps()`` reads its
per-job logs, the ``cluster`` fixture (import it into a test module: ``from slurm_cluster import
cluster``), ``FAST`` (status polling for tests), ``squeue_jobs()`` / ``scontrol_job()`` /
``scontrol_jobs()`` read the job records.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import json
import time
from pathlib import Path

try:  # the CLI (up/down/status) runs without pytest; the fixture below needs it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "tests" / "fixtures" / "mini_workflow" / "Snakefile"
PROFILES = REPO / "workflow" / "profiles"

PARTITION = "babytest"
GPUS = 2
CPUS = 8  # declared, not real: config_overrides lets slurmd accept more than the box has
REAL_MEMORY_MB = 256000  # declared too; task/none enforces nothing, so any default mem_mb fits
MARKER = "# written by babydistill tests/slurm_cluster.py"

CONF_DIR = Path("/etc/slurm")
STATE = Path("/var/lib/babydistill-slurm")  # ctld state, slurmd spool, logs
RUN = Path("/run/babydistill-slurm")  # pid files and the fake GPU devices
MUNGE_RUN = Path("/run/munge")
MUNGE_PID = MUNGE_RUN / "munged.pid"
PACKAGES = ["slurm-wlm", "munge"]


class ClusterError(RuntimeError):
    pass


def _run(cmd: list[str], check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, timeout=timeout, text=True, capture_output=True, **kw)


def _installed() -> bool:
    return all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue"))


def unavailable_reason() -> str | None:
    """Why a local SLURM cannot be set up here (None when it can)."""
    if sys.platform != "linux":
        return "not Linux"
    if os.geteuid() != 0:
        return "not root (the one-node SLURM needs root to install and start daemons)"
    if not _installed() and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is unavailable"
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and MARKER not in conf.read_text(errors="replace"):
        return f"{conf} belongs to a real SLURM installation; not touching it"
    return None


def install(timeout: float = 900) -> None:
    """apt-get install slurm-wlm and munge unless they are already there."""
    if _installed():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        _run(["apt-get", "update", "-q"], timeout=timeout, env=env)
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], timeout=timeout, env=env)
    except subprocess.CalledProcessError as e:
        raise ClusterError(f"apt-get failed: {e.stderr.strip()[-500:]}") from None
    if not _installed():
        raise ClusterError("apt-get finished but slurmctld/slurmd/munged are still missing")


def hostname() -> str:
    return socket.gethostname().split(".")[0]


def _slurm_conf(host: str) -> str:
    return f"""{MARKER}
ClusterName=babydistill
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No accounting daemon: sacct does not work, squeue + a long MinJobAge report job states.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=7200
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
GresTypes=gpu
StateSaveLocation={STATE}/ctld
SlurmdSpoolDir={STATE}/slurmd
SlurmctldPidFile={RUN}/slurmctld.pid
SlurmdPidFile={RUN}/slurmd.pid
SlurmctldLogFile={STATE}/slurmctld.log
SlurmdLogFile={STATE}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory={REAL_MEMORY_MB} Gres=gpu:{GPUS} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _gres_conf() -> str:
    # A Count-only line drains the node and regular files are refused: use char devices.
    lines = [MARKER] + [f"Name=gpu File={RUN}/fakegpu{i}" for i in range(GPUS)]
    return "\n".join(lines) + "\n"


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        # A daemon whose parent is gone may linger as a zombie where PID 1 does not reap
        # (containers): that counts as stopped.
        stat = Path(f"/proc/{pid}/stat").read_text()
        return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid
    except (OSError, ValueError, IndexError):
        return None


def _start_munge() -> None:
    if _pid_alive(MUNGE_PID):
        return
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        _run(["mungekey", "--create", "--keyfile", str(key)])
        shutil.chown(key, "munge", "munge")
        key.chmod(0o600)
    for d in (MUNGE_RUN, Path("/var/log/munge"), Path("/var/lib/munge")):
        d.mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")
    _run(["runuser", "-u", "munge", "--", "munged", "--pid-file", str(MUNGE_PID)])
    cred = _run(["munge", "-n"]).stdout
    _run(["unmunge"], input=cred)  # raises if munge cannot decode its own credential


def sinfo_states() -> list[str]:
    r = _run(["sinfo", "-h", "-N", "-o", "%t"], check=False, timeout=20)
    return r.stdout.split() if r.returncode == 0 else []


def running() -> bool:
    return bool(_pid_alive(RUN / "slurmctld.pid") and _pid_alive(RUN / "slurmd.pid"))


def up(wait_s: float = 90) -> dict:
    """Install if needed, (re)write the config, start the daemons, wait for an idle node."""
    why = unavailable_reason()
    if why:
        raise ClusterError(why)
    install()
    host = hostname()
    if running() and "idle" in sinfo_states():
        return info()
    down()  # a half-started cluster from an earlier run: start from nothing
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    (CONF_DIR / "slurm.conf").write_text(_slurm_conf(host))
    (CONF_DIR / "gres.conf").write_text(_gres_conf())
    for d in (STATE / "ctld", STATE / "slurmd", RUN):
        d.mkdir(parents=True, exist_ok=True)
    for i in range(GPUS):
        dev = RUN / f"fakegpu{i}"
        if not dev.exists():
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # a char device like /dev/null
    _start_munge()
    _run(["slurmctld", "-c"])  # -c: no jobs or node state from any earlier run
    _run(["slurmd", "-N", host])
    deadline = time.time() + wait_s
    while time.time() < deadline:
        states = sinfo_states()
        if "idle" in states:
            return info()
        if any(s.startswith(("down", "drain", "unk")) for s in states):
            _run(["scontrol", "update", f"nodename={host}", "state=resume"], check=False)
        time.sleep(1)
    log = (STATE / "slurmctld.log").read_text(errors="replace")[-1500:] if (STATE / "slurmctld.log").exists() else ""
    raise ClusterError(f"node never became idle (sinfo: {sinfo_states()}); slurmctld.log tail:\n{log}")


def info() -> dict:
    return {"partition": PARTITION, "gpus": GPUS, "cpus": CPUS, "host": hostname(), "state": STATE}


def _stop(pidfile: Path, wait_s: float = 20) -> None:
    pid = _pid_alive(pidfile)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + wait_s
    while time.time() < deadline and _pid_alive(pidfile) == pid:
        time.sleep(0.2)
    if _pid_alive(pidfile) == pid:
        os.kill(pid, signal.SIGKILL)


def down() -> None:
    """Cancel all jobs, stop the daemons this module started, remove every state file."""
    if _pid_alive(RUN / "slurmctld.pid"):
        _run(["scancel", "--full", "--user", "root"], check=False, timeout=20)
        deadline = time.time() + 30
        while time.time() < deadline:
            r = _run(["squeue", "-h", "-t", "R,CG,PD"], check=False, timeout=20)
            if r.returncode != 0 or not r.stdout.strip():
                break
            time.sleep(0.5)
    _stop(RUN / "slurmd.pid")
    _stop(RUN / "slurmctld.pid")
    _stop(MUNGE_PID)
    shutil.rmtree(STATE, ignore_errors=True)
    shutil.rmtree(RUN, ignore_errors=True)
    for name in ("slurm.conf", "gres.conf"):
        p = CONF_DIR / name
        if p.exists() and MARKER in p.read_text(errors="replace"):
            p.unlink()


def snakemake_cmd(workdir: Path, profile: str, *args: str) -> list[str]:
    """The command line that runs the mini workflow in ``workdir`` with one of our profiles."""
    return [sys.executable, "-m", "snakemake", "--profile", str(PROFILES / profile),
            "--snakefile", str(MINI), "--directory", str(workdir), *args]


def snakemake(workdir: Path, profile: str, *args: str, env: dict | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if env is None else env, HF_HUB_OFFLINE="1")
    return subprocess.run(snakemake_cmd(workdir, profile, *args), text=True, capture_output=True,
                          env=env, timeout=timeout)


def stamps(workdir: Path) -> dict[str, dict]:
    """Every job's JSON log under ``workdir/logs``, keyed by 'rule/wildcard' (e.g. 'pretrain/a').

    A job killed before it wrote its stamp leaves an empty log (Snakemake creates it): ``{}``.
    """
    out = {}
    for p in sorted((workdir / "logs").rglob("*.json")):
        key = str(p.relative_to(workdir / "logs").with_suffix(""))
        text = p.read_text()
        out[key] = json.loads(text) if text.strip() else {}
    return out


# Status polling tuned for tests (seconds, not the profile's cluster-friendly 30 s), and
# squeue because this cluster has no accounting database.
FAST = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "2", "--max-status-checks-per-second", "10",
        "--latency-wait", "5", "--verbose"]


def _parse_scontrol(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def scontrol_job(jobid: str) -> dict[str, str]:
    """One job's record (``scontrol -o show job``), e.g. JobState, Comment, TresPerJob."""
    out = _run(["scontrol", "-o", "show", "job", str(jobid)], timeout=20).stdout
    return _parse_scontrol(out)


def scontrol_jobs(workdir: Path) -> list[dict[str, str]]:
    """Every job record the controller still holds (MinJobAge) that ran in ``workdir``."""
    out = _run(["scontrol", "-o", "show", "job"], timeout=20).stdout
    jobs = [_parse_scontrol(line) for line in out.splitlines() if line.strip()]
    return [j for j in jobs if j.get("WorkDir") and Path(j["WorkDir"]) == Path(workdir)]


def squeue_jobs(workdir: Path) -> dict[str, str]:
    """Comment (rule_<rule>_wildcards_<wc>) -> job id, for ``workdir``'s queued/running jobs."""
    r = _run(["squeue", "-h", "-o", "%i|%k|%Z"], timeout=20)
    jobs = {}
    for line in r.stdout.splitlines():
        jobid, comment, wd = line.split("|")
        if Path(wd) == Path(workdir):
            jobs[comment.strip()] = jobid
    return jobs


if pytest is not None:
    @pytest.fixture(scope="session")
    def cluster():
        """The one-node SLURM, started unless running; skips when it cannot run here.

        Session-scoped and imported by each SLURM test module; a module that finds the cluster
        already up (e.g. started by .ci/run or another module) leaves it running.
        """
        why = unavailable_reason()
        if why:
            pytest.skip(f"no local SLURM: {why}")
        t0 = time.time()
        try:
            install()
        except ClusterError as e:
            pytest.skip(f"no local SLURM: {e}")
        t_install = time.time() - t0
        started_here = not running()
        info_ = up()
        info_["setup_s"] = {"install": round(t_install, 1), "up": round(time.time() - t0 - t_install, 1)}
        yield info_
        if started_here:
            down()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[0] if argv else ""
    try:
        if cmd == "up":
            t = time.time()
            print(f"slurm up: {up()} ({time.time() - t:.1f} s)")
        elif cmd == "down":
            down()
            print("slurm down")
        elif cmd == "status":
            print(f"running={running()} sinfo={sinfo_states()} unavailable={unavailable_reason()}")
        else:
            print("usage: python tests/slurm_cluster.py up|down|status", file=sys.stderr)
            return 2
    except (ClusterError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", "") or ""
        print(f"error: {e} {detail.strip()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
