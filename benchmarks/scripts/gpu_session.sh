#!/usr/bin/env bash
# The lent-GPU session as one command: install what the bare machine lacks, then
# benchmarks/scripts/gpu_bench.py (CUDA tests, env / grid-point / training throughput, eager vs
# torch.compile; every phase time-capped, under 10 minutes in all) writing $OUT/gpu_bench.json.
#
#   OUT=/path/to/results bash benchmarks/scripts/gpu_session.sh [extra gpu_bench.py flags]
#
# Wheels in .whl/ (pure-Python packages a bare machine lacks: gymnasium, SB3, sb3-contrib,
# imitation) are installed first with --no-deps; diffgym itself is installed editable.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
export WANDB_MODE=disabled MPLBACKEND=Agg PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/session.log") 2>&1
PY=python3
if ! $PY -c "import diffgym, gymnasium, stable_baselines3, sb3_contrib, imitation" 2>/dev/null; then
  echo "[gpu_session] installing wheels and diffgym"
  if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile .whl/*.whl || exit 1
  fi
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec $PY benchmarks/scripts/gpu_bench.py --device cuda --out "$OUT/gpu_bench.json" "$@"
