"""Start a training stage on the GPUs a job was granted: one process, or torchrun.

    python -m babydistill.train.launch --gpus N [--dry-run] -- MODULE ARGS...

runs ``python -m MODULE ARGS`` when N <= 1 or CUDA is absent, else
``python -m torch.distributed.run --standalone --nproc_per_node=N -m MODULE ARGS``
(``torchrun`` itself, from this interpreter, so no PATH lookup). The launcher replaces
itself with the command (exec), so signals from Snakemake or SLURM reach it directly.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from babydistill.common import UserError, cli


def build_command(gpus: int, module: str, args: list[str], *, cuda_available: bool | None = None,
                  python: str = sys.executable) -> list[str]:
    """The command line for ``module`` on ``gpus`` GPUs (see the module docstring)."""
    if gpus < 0:
        raise UserError(f"--gpus: {gpus} must be >= 0")
    if not module or module.startswith("-"):
        raise UserError(f"launch: expected a module name after '--', got {module!r}")
    if gpus <= 1:  # decided before importing torch: the stage's own process imports it anyway
        return [python, "-m", module, *args]
    if cuda_available is None:
        import torch
        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        return [python, "-m", module, *args]
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
            "-m", module, *args]


@cli
def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(prog="python -m babydistill.train.launch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=1, help="GPUs granted to the job")
    ap.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- MODULE ARGS...")
    args = ap.parse_args(argv)
    rest = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not rest:
        raise UserError("launch: nothing to run; usage: launch --gpus N -- MODULE ARGS...")
    cmd = build_command(args.gpus, rest[0], rest[1:])
    if args.dry_run:
        print(shlex.join(cmd))
        return cmd
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)  # never returns


if __name__ == "__main__":
    main()
