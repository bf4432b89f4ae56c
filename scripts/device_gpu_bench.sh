#!/usr/bin/env bash
# The project's GPU check, in one run on a CUDA machine:
#   1. `tcpade-trt gpu-bench`: a FLUX.1-dev-size transformer (random weights) at 1024x1024, 20 steps,
#      batch 1: bf16 eager, bf16 + torch.compile and FP8 linears, each uncached and with tcpade-fast;
#      end-to-end latency, per-step times of full and predicted steps, and the host syncs of one
#      generation (the runtime's budget: one per Padé fit);
#   2. where TensorRT and onnxruntime-gpu are installed, the test suite's GPU paths
#      (`pytest tests/runtime tests/engines`), which skip on a CPU machine.
# Writes OUT/gpu.txt (the machine and versions), OUT/gpu-bench.json and OUT/gpu-bench.md, and
# OUT/gpu-tests.txt when step 2 runs.
#
# Needs python with CUDA torch and diffusers. Where diffusers is missing and .whl/ holds wheels for
# the machine's Python (pip download diffusers importlib_metadata --no-deps --only-binary=:all:), they
# are installed into /tmp/site first. Environment: PYTHON (interpreter), OUT (folder),
# GPU_BENCH_ARGS (more options for gpu-bench, e.g. "--modes eager fp8"). On this CPU machine:
#   PYTHON=.venv/bin/python GPU_BENCH_ARGS="--config tiny --device cpu --steps 4 --repeats 1" \
#     bash scripts/device_gpu_bench.sh
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
if "$PYTHON" -c "import tensorrt, onnxruntime; assert 'CUDAExecutionProvider' in onnxruntime.get_available_providers()" \
        2>/dev/null; then
    "$PYTHON" -m pytest -q tests/runtime tests/engines 2>&1 | tee "$OUT/gpu-tests.txt"
fi
