#!/usr/bin/env bash
# Static check of the code that calls TensorRT against TensorRT's own type stubs (tensorrt-stubs, the
# 10.13 API): mypy must report zero errors. TensorRT itself cannot be installed on a CPU machine, so
# this is what catches a misspelt method or a wrong argument there. Part of `make test`.
#
# The stubs go into .typecheck/ (git-ignored), never into the environment: their `tensorrt/` folder
# holds only .pyi files, which Python would import as an empty namespace package. The wheel's .pyi
# files need three syntax repairs before mypy reads them (CRLF line ends, parameters named `in`, a
# required parameter after optional ones); their own semantic errors are ignored (pyproject, [tool.mypy]).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STUBS=.typecheck/stubs
if [ ! -f "$STUBS/.ready" ]; then
  rm -rf .typecheck
  "$PY" -m pip install -q --no-deps --target .typecheck/site "tensorrt-stubs==10.13.0.35.1"
  mkdir -p "$STUBS"
  cp -r .typecheck/site/tensorrt .typecheck/site/tensorrt_bindings "$STUBS/"
  for f in "$STUBS"/tensorrt/__init__.pyi "$STUBS"/tensorrt_bindings/__init__.pyi "$STUBS"/tensorrt_bindings/tensorrt.pyi; do
    sed -i 's/\r$//' "$f"
    sed -i -E 's/^import tensorrt_libs as tensorrt_libs$/tensorrt_libs: object/' "$f"
  done
  sed -i -E 's/\(self(: [A-Za-z0-9_]+)?, in: /(self\1, in_: /' "$STUBS/tensorrt_bindings/tensorrt.pyi"
  sed -i -E 's/power: Weights = None, channel_axis: int\)/power: Weights = None, channel_axis: int = ...)/' \
    "$STUBS/tensorrt_bindings/tensorrt.pyi"
  touch "$STUBS/.ready"
fi
MYPYPATH="$STUBS" "$PY" -m mypy tcpade_trt/engines/tensorrt/build.py tcpade_trt/engines/tensorrt/plans.py
