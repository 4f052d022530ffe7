#!/usr/bin/env bash
# The GPU checks in one command (about 5-8 minutes on one H100/H200; never part of CI):
#
#   bash benchmarks/gpu.sh [RESULTS_FILE]        default benchmarks/results/gpu-<host>-<date>.txt
#
# 1. the body model: forward and joints-only at batch 1, 64, 2048 (beside smplx if installed);
# 2. SMPLify in SPIN's setting (Adam 100 + 100) and Levenberg-Marquardt 10 + 10 at batch 64,
#    1,024 and 8,192, without SPIN's PyTorch loop (it would take minutes at those batches);
# 3. the train step, small and ResNet-50 backbones, fitting all samples (SPIN), only those
#    without ground truth, and none, at batch 64 with SPIN's 30 % ground-truth mix.
# Goals (issue 12): >= 100,000 fits/s in SPIN's setting; in-loop fitting adds <= 15 % to a
# ResNet-50 step at batch 64. Each part runs on its own: one that fails (a package missing on the
# machine, say) is reported in the file and the others still run. Parts 1-2 need the `fitting`
# extra, part 3 the `train` extra (docs/install.md). PYTHON selects the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${1:-benchmarks/results/gpu-$(hostname)-$(date +%Y%m%d-%H%M).txt}
mkdir -p "$(dirname "$out")"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
  echo "# benchmarks/gpu.sh on $(hostname), $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  "$py" -c "import jax; print('jax', jax.__version__, jax.devices())"
} | tee "$out"

part() {
  local name=$1 limit=$2
  shift 2
  echo -e "\n## $name: $*" | tee -a "$out"
  local t0=$SECONDS
  timeout "$limit" "$py" "$@" 2>&1 | tee -a "$out"
  local rc=${PIPESTATUS[0]}
  echo "# $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$out"
}

part "body model" 150 benchmarks/body_model.py --batches 1 64 2048 --rounds 10
part "SMPLify" 240 benchmarks/smplify.py --batches 64 1024 8192 --torch-max-batch 0 \
  --configs adam:100 lm:10 --standalone-batch 0
part "train step" 210 benchmarks/train_step.py --batch 64 --presets small,resnet50 --steps 5 \
  --chunks 1,4
echo -e "\nresults: $out"
