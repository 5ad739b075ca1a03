#!/usr/bin/env bash
# Sets up .venv (if needed), lints, and runs the test suite (tests marked `slow` are excluded; there are none yet).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
export WANDB_MODE=disabled
export MPLBACKEND=Agg
ruff check .
python -m pytest "$@"
