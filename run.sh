#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the main job on the embedded default task.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
export WANDB_MODE="${WANDB_MODE:-offline}"
# The main job: learned sampler vs grid-search-tuned samplers on gmm2d, in <= 5 min on 2 cores.
# Extra arguments pass through (e.g. ./run.sh --budget full, ./run.sh --task gmm2d-bias).
exec python -m diffgym compare --task gmm2d --budget quick "$@"
