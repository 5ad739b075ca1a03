#!/usr/bin/env bash
# Creates .venv if missing and installs diffgym with its pinned dependencies.
# Sourced by ./run.sh and ./test.sh; re-runs are fast (a stamp file records what was installed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=".venv/.diffgym-installed"
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  python -m pip install -q --upgrade pip
  # torch first and pinned: an unpinned torch pulls a multi-GB CUDA build. A torch that is
  # already importable (e.g. a user's CUDA build) is kept.
  if ! python -c "import torch" >/dev/null 2>&1; then
    echo "[bootstrap] installing torch==2.13.0"
    python -m pip install -q "torch==2.13.0"
  fi
  echo "[bootstrap] installing diffgym and its pinned dependencies"
  python -m pip install -q -e ".[dev,ray,diffusers,fid]"
  # imitation 1.0.1 pins gymnasium 0.29 / SB3 2.2.1 in its metadata; its GAIL/AIRL run on ours.
  python -m pip install -q --no-deps "imitation==1.0.1"
  echo "$want" > "$stamp"
fi
