#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the main job on the embedded default task.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
export WANDB_MODE="${WANDB_MODE:-offline}"
exec python -m diffgym demo "$@"
