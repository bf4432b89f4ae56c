#!/usr/bin/env bash
# The GPU benchmark (issue 7) on a lent GPU machine, in one call of the device tool.
#
# The machine has python3 with CUDA torch but no diffusers and no network; its wheels travel with the
# working tree. Once, here (the folder is git-ignored through .git/info/exclude):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 importlib_metadata
# Then: device run(command="bash scripts/device_gpu_bench.sh", carry=[".whl"], timeout_s=560)
# and commit what comes back (gpu.txt, gpu-bench.json, gpu-bench.md) under docs/gpu/.
#
# GPU_BENCH_ARGS adds options (e.g. "--modes eager fp8" to skip torch.compile's warm-up);
# PYTHON picks the interpreter (this machine's test: PYTHON=.venv/bin/python GPU_BENCH_ARGS="--config tiny
# --device cpu --steps 4 --repeats 1").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu-bench-out}
mkdir -p "$OUT"
if ! "$PYTHON" -c "import diffusers" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "diffusers is missing and no wheels were carried (see this script's header)"; exit 2; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"; \
  "$PYTHON" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"; } \
  | tee "$OUT/gpu.txt"
# shellcheck disable=SC2086
"$PYTHON" -m tcpade_trt.cli gpu-bench --out "$OUT/gpu-bench.json" ${GPU_BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu-bench.md"
