#!/usr/bin/env bash
# The project's GPU check in one run on a CUDA machine, at most about 5 minutes, no network (scripts/gpu_check.py):
# the machine; TensorRT builds of tiny-dit and tiny-flux at fp32 / bf16 / fp8 with every plan checked and
# generations with and without CUDA graphs (where TensorRT is installed; else the builds on the GPU up to
# TensorRT's builder); gpu-bench. Writes OUT/verdict.md (one table), OUT/verdict.json, OUT/gpu-bench.json and
# OUT/logs/. Commit OUT under docs/gpu/ with the machine named.
#
# Needs python with CUDA torch and diffusers. Where diffusers is missing and .whl/ holds wheels for the
# machine's Python (pip download diffusers importlib_metadata nvidia-modelopt ... --no-deps --only-binary=:all:),
# they are installed into /tmp/site first. Environment: PYTHON (interpreter), OUT (folder). On a CPU machine the
# same script runs its steps and fails them with the reason (no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
if ! "$PYTHON" -c "import diffusers" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "diffusers is missing and no wheels were carried (see this script's header)"; exit 2; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
"$PYTHON" scripts/gpu_check.py --out "$OUT"
