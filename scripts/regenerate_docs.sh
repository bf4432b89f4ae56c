#!/usr/bin/env bash
# Regenerate the committed result folders under docs/ from the shipped demo model, with the same
# commands the README quotes next to each figure. Run it after retraining the demo model, on an
# otherwise idle machine (the figures are timings). About 25 minutes on a 2-core CPU.
#
#   bash scripts/regenerate_docs.sh [bench] [demo] [tuning] [fp8]     # default: all four
#
# Engine folders (docs/*/engines, git-ignored) are removed first so every build is part of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
TCPADE=${TCPADE:-.venv/bin/tcpade-trt}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(bench demo tuning fp8)

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
    tuning)
      run tuning "$TCPADE" demo --torch-only --out docs/tuning --seeds 16 --repeats 1 --caches none tcpade-fast \
        tcpade-fast:variant=paper tcpade-fast:variant=reference tcpade-fast:phase_aware=true tcpade-fast:c_max=0 \
        tcpade-slow tcpade-slow:phase_aware=true "tcpade-fast:full_steps=,warmup=1,interval=4" \
        "tcpade-fast:full_steps=,warmup=1,interval=7,threshold=0.5" "tcpade-fast:full_steps=,warmup=2,interval=5" \
        taylorseer taylorseer-o2 reuse teacache "taylorseer:full_steps=0/1/2/4/7/10/13/16/19" \
        "reuse:full_steps=0/1/2/4/7/10/13/16/19" "teacache:threshold=0.2" ;;
    fp8)
      rm -rf docs/fp8/engines
      run fp8 "$TCPADE" demo --out docs/fp8 --precisions fp32 int8 fp8 --seeds 16 --repeats 3 --caches none tcpade-fast ;;
    *)
      echo "unknown target '$target'; choose from bench, demo, tuning, fp8." >&2
      exit 2 ;;
  esac
done
