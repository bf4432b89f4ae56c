"""Kill a serving replica under load and measure what clients see (loopback, bounded in time).

    python scripts/serve_recovery_test.py --engines docs/demo/engines/demo-int8 --out docs/serving

One Ray Serve replica serves the folder (request-level batching, tcpade-fast, 20 steps); CONCURRENCY client
threads send requests back to back. After WARMUP_S the replica's process is killed with SIGKILL (its pid from
/healthz), as a crashed worker would die. Ray Serve's controller notices (health check) and starts a new
replica. Recorded per request: start, end, HTTP status (0: connection error or client timeout). Reported:
how many requests failed and how (none may hang: every request ends within the client timeout), the time
from the kill to the first successful answer started after it (recovery), and the longest gap without a
successful answer. Writes OUT/recovery.json and OUT/recovery.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve_load_test import free_port  # noqa: E402

CONCURRENCY = 4
WARMUP_S, AFTER_S = 8.0, 60.0  # load before the kill, and how long to keep sending after it
CLIENT_TIMEOUT_S = 120


def call(url: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_S) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("serve-recovery-out"))
    args = p.parse_args()

    import ray
    from ray import serve

    from tcpade_trt.bench.machine import machine_info
    from tcpade_trt.serve.app import build_app

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"folder": str(args.engines.resolve()), "device": "cpu", "max_batch": 8}), name="recovery")
    base = f"http://127.0.0.1:{port}"
    call(f"{base}/v1/generate", {"class": 0, "steps": 20})  # warm-up
    records, lock, stop = [], threading.Lock(), threading.Event()
    t0 = time.perf_counter()

    def client(worker: int) -> None:
        i = 0
        while not stop.is_set():
            started = time.perf_counter() - t0
            status = call(f"{base}/v1/generate", {"class": i % 8, "seed": 1000 * worker + i, "steps": 20,
                                                  "cache": "tcpade-fast"})
            with lock:
                records.append({"start_s": round(started, 3), "end_s": round(time.perf_counter() - t0, 3),
                                "status": status})
            i += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in range(CONCURRENCY)]
    for t in threads:
        t.start()
    time.sleep(WARMUP_S)
    with urllib.request.urlopen(f"{base}/healthz", timeout=30) as answer:
        pid = json.loads(answer.read())["pid"]
    killed_at = time.perf_counter() - t0
    os.kill(pid, signal.SIGKILL)
    time.sleep(AFTER_S)
    stop.set()
    for t in threads:
        t.join()
    serve.shutdown()
    ray.shutdown()

    ok_after = sorted(r["end_s"] for r in records if r["status"] == 200 and r["start_s"] > killed_at)
    successes = sorted(r["end_s"] for r in records if r["status"] == 200)
    gaps = [b - a for a, b in zip(successes, successes[1:])]
    failed = [r for r in records if r["status"] != 200]
    results = {
        "machine": machine_info(), "engines": str(args.engines), "concurrency": CONCURRENCY, "killed_at_s": killed_at,
        "requests": len(records), "failed": len(failed),
        "failed_statuses": {str(s): sum(r["status"] == s for r in failed) for s in sorted({r["status"] for r in failed})},
        "recovery_s": round(ok_after[0] - killed_at, 2) if ok_after else None,
        "longest_gap_s": round(max(gaps), 2) if gaps else None,
        "longest_request_s": round(max(r["end_s"] - r["start_s"] for r in records), 2),
        "client_timeout_s": CLIENT_TIMEOUT_S, "records": records,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recovery.json").write_text(json.dumps(results, indent=1))
    m = results["machine"]
    (args.out / "recovery.md").write_text(
        f"Replica kill under load (`python scripts/serve_recovery_test.py --engines {args.engines} --out {args.out}`, "
        f"{m['cpu']}, {m['cores']} cores, loopback): one replica, {CONCURRENCY} clients sending 20-step tcpade-fast "
        f"requests back to back; SIGKILL to the replica's process at {killed_at:.1f} s.\n\n"
        f"| requests | failed (status: count) | recovery: kill to first success started after it | longest gap "
        f"between successes | longest request |\n|---|---|---|---|---|\n"
        f"| {len(records)} | {len(failed)} ({results['failed_statuses']}) | {results['recovery_s']} s | "
        f"{results['longest_gap_s']} s | {results['longest_request_s']} s (client timeout {CLIENT_TIMEOUT_S} s) |\n")
    print(json.dumps({k: v for k, v in results.items() if k != "records"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
