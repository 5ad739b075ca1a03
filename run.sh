#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the main job (below).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
export WANDB_MODE="${WANDB_MODE:-offline}"
# The main job: a learned sampler (3 PPO + GAIL runs) vs the full 108-point EDM churn grid on
# gmm2d-bias (mode masses), every cost counted in the run; about 3.5 min on 2 busy cores.
# Extra arguments pass through (e.g. ./run.sh --budget full, ./run.sh --task gmm2d --budget quick).
exec python -m diffgym compare --task gmm2d-bias --budget main "$@"
