#!/usr/bin/env bash
# Regenerate the committed result folders under docs/ from the shipped demo model, with the same
# commands the README quotes next to each figure. Run it after retraining the demo model, on an
# otherwise idle machine (the figures are timings). About 25 minutes on a 2-core CPU.
#
#   bash scripts/regenerate_docs.sh [bench] [demo] [method] [fp8]     # default: all four
#
# Engine folders (docs/*/engines, git-ignored) are removed first so every build is part of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
TCPADE=${TCPADE:-.venv/bin/tcpade-trt}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(bench demo method fp8)

run() {  # name, command...: the command, timed, with its wall time printed
  local name=$1 start=$SECONDS
  shift
  echo "== $name: $*"
  "$@"
  echo "== $name took $((SECONDS - start)) s"
}

for target in "${targets[@]}"; do
  case $target in
    bench)
      rm -rf docs/bench/engines
      run bench "$TCPADE" bench --out docs/bench --markdown docs/benchmarks.md --repeats 5 ;;
    demo)
      rm -rf docs/demo/engines
      run demo "$TCPADE" demo --full --out docs/demo ;;
    method)  # TC-Padé against its baselines and peers at 20 / 28 / 50 steps and two budgets (about 25 minutes)
      run method .venv/bin/python -m research.method_study --out docs/method --markdown docs/method.md
      # the same on demo-dit (about 10 minutes)
      run method-dit .venv/bin/python -m research.method_study --model demo-dit --out docs/method-dit \
        --markdown docs/method-dit.md ;;
    fp8)
      rm -rf docs/fp8/engines
      run fp8 "$TCPADE" demo --out docs/fp8 --precisions fp32 int8 fp8 --seeds 16 --repeats 3 --caches none tcpade-fast ;;
    *)
      echo "unknown target '$target'; choose from bench, demo, method, fp8." >&2
      exit 2 ;;
  esac
done
