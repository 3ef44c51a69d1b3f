#!/usr/bin/env bash
# The first command on a GPU machine: trainer steps (bf16, +/- torch.compile, MFU), attention
# kernels, distill step live vs cached, BLiMP scorer vs lm-eval, a 2-process torchrun; one
# table in under 10 minutes. Runs on CPU too (CUDA rows skipped with the reason).
#
#   bash benchmarks/gpu_check.sh [--quick] [--json OUT]      (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
exec "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
