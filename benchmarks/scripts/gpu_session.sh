#!/usr/bin/env bash
# The checks for a lent GPU machine, as one script: the CUDA tests, the full digits comparison
# (the default 193-point grid at n = 2048, PPO + GAIL-js, 3 seeds) and gpu_check.py
# (env throughput and a short training run). Each phase runs under its own time limit; the
# comparison is resumable, so running the script again on the same machine continues it.
#
#   OUT=/path/to/results bash benchmarks/scripts/gpu_session.sh            # all phases
#   PHASES="compare" COMPARE_TIMEOUT=200 bash benchmarks/scripts/gpu_session.sh   # resume the comparison
#
# Wheels in .whl/ (pure-Python packages the machine lacks: gymnasium, SB3, sb3-contrib,
# imitation) are installed first with --no-deps; diffgym itself is installed editable.
# What comes back: $OUT/session.log, $OUT/cuda_tests.log, $OUT/gpu_check.json and
# $OUT/digits_compare.tgz (the comparison folder without its checkpoints) and
# $OUT/digits_checkpoints.tgz (each unfinished run's newest checkpoint: unpack both into runs/compare/ to
# resume the comparison elsewhere; results from another device get their own keys).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-gpu_out}"
PHASES="${PHASES:-tests compare check}"
COMPARE_TIMEOUT="${COMPARE_TIMEOUT:-300}"
CHECK_TIMEOUT="${CHECK_TIMEOUT:-100}"
TEST_TIMEOUT="${TEST_TIMEOUT:-120}"
COMPARE_DIR="runs/compare/digits-gpu"
mkdir -p "$OUT"
export WANDB_MODE=disabled MPLBACKEND=Agg PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/session.log") 2>&1
PY=python3

stamp() { echo "[gpu_session $(date -u +%H:%M:%S)] $*"; }

if ! $PY -c "import diffgym, gymnasium, stable_baselines3, sb3_contrib, imitation" 2>/dev/null; then
  stamp "installing wheels and diffgym"
  if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile .whl/*.whl || exit 1
  fi
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

for phase in $PHASES; do
  case "$phase" in
    tests)
      stamp "pytest -m cuda"
      timeout "$TEST_TIMEOUT" $PY -m pytest -m cuda -q -p no:warnings >"$OUT/cuda_tests.log" 2>&1
      stamp "pytest exit $?: $(tail -n 1 "$OUT/cuda_tests.log")"
      ;;
    compare)
      stamp "digits comparison (limit ${COMPARE_TIMEOUT}s)"
      timeout "$COMPARE_TIMEOUT" $PY -m diffgym compare --task digits --budget full \
        --device cuda --out "$COMPARE_DIR"
      stamp "compare exit $?"
      ;;
    check)
      stamp "gpu_check.py (limit ${CHECK_TIMEOUT}s)"
      timeout "$CHECK_TIMEOUT" $PY benchmarks/scripts/gpu_check.py --device cuda --skip-tests \
        --out "$OUT/gpu_check.json"
      stamp "gpu_check exit $?"
      ;;
    *) stamp "unknown phase $phase (allowed: tests compare check)"; exit 2 ;;
  esac
done
if [ -d "$COMPARE_DIR" ]; then
  # Each unfinished run's newest checkpoint travels too, so it can resume on another machine.
  latest=()
  for f in "$COMPARE_DIR"/runs/*/checkpoints/latest.json; do
    [ -f "$f" ] || continue
    [ -f "$(dirname "$(dirname "$f")")/final_metrics.json" ] && continue  # finished: not needed
    name=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['file'])" "$f")
    latest+=("${f#runs/compare/}" "$(dirname "${f#runs/compare/}")/$name")
  done
  tar czf "$OUT/digits_compare.tgz" --exclude='*/checkpoints' -C runs/compare digits-gpu
  if [ "${#latest[@]}" -gt 0 ]; then
    tar czf "$OUT/digits_checkpoints.tgz" -C runs/compare "${latest[@]}"
  fi
  stamp "packed $(du -ch "$OUT"/digits_*.tgz | tail -n 1 | cut -f1)"
fi
