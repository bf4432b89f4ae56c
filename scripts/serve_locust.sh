#!/usr/bin/env bash
# The locust figures of docs/serving.md: one replica of `tcpade-trt serve` on an INT8 demo folder (request-level
# batching, up to 16 within 20 ms), 16 locust clients with Poisson think times, 60 s per cache.
#   bash scripts/serve_locust.sh ENGINES OUT        e.g. bash scripts/serve_locust.sh engines/demo-int8 docs/serving/locust
set -euo pipefail
ENGINES=${1:?an engine folder, e.g. engines/demo-int8 (tcpade-trt build demo --precision int8 --out ...)}
OUT=${2:?an output folder for the CSV files}
BIN=$(dirname "$(command -v python)")
[ -x .venv/bin/tcpade-trt ] && BIN=.venv/bin
mkdir -p "$OUT"
PORT=${PORT:-18200}
"$BIN/tcpade-trt" serve --engines "$ENGINES" --port "$PORT" --max-batch 16 --batch-wait-ms 20 >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; "$BIN/ray" stop --force >/dev/null 2>&1 || true' EXIT
for _ in $(seq 240); do curl -sf "127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 1; done
for CACHE in none tcpade-fast; do
  TCPADE_CACHE=$CACHE TCPADE_RATE=${RATE:-0.5} "$BIN/locust" -f scripts/locustfile.py --headless \
    --host "http://127.0.0.1:$PORT" --users 16 --spawn-rate 16 --run-time "${RUN_TIME:-60s}" \
    --csv "$OUT/$CACHE" --only-summary 2>&1 | tail -n 12
done
