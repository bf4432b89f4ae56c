"""Load test of `tcpade-trt serve` on this machine (loopback only, bounded in requests and time).

    python scripts/serve_load_test.py --fp32 docs/demo/engines/demo-fp32 --int8 docs/demo/engines/demo-int8 \
        --out docs/serving --requests 32

For each precision (FP32, INT8) and batching mode (off: one request per generation; request-level: Ray Serve
batches up to 16 requests that arrive within 20 ms, grouped by steps and cache; step-level; triton:
tritonserver's dynamic batcher within the same 20 ms, on a `tcpade-trt triton-repo` repository), one server
replica is deployed; then, per cache (none, tcpade-fast), N requests (demo classes and seeds in turn, 20 steps) are sent
at closed-loop concurrency 1, 4 and 16, and open-loop at a Poisson rate. Recorded per request: the client's
latency and the server's own split (queue, compute). Reported: p50 / p95 / p99 latency, images per second
(requests / wall time of the cell), and at concurrency 1 the server's overhead (client latency minus
compute, as a share of compute). --ingress proxy direct sends every Ray Serve cell both through Ray Serve's
proxy and to the replica's own port (direct ingress, as `serve --direct-ingress`).
Writes OUT/load.json, OUT/load.md and OUT/latency_throughput.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

CONCURRENCY = (1, 4, 16)
CACHES = ("none", "tcpade-fast")
# max_batch, batch wait (s), the server's batching mode; "triton": tritonserver (tcpade-trt triton-repo) with its
# dynamic batcher instead of Ray Serve, batches up to the folder's range within the same 20 ms
BATCHING = {"off": (1, 0.0, "request"), "request-level": (16, 0.02, "request"), "step-level": (16, 0.0, "step"),
            "triton": (16, 0.02, "triton")}
DIRECT_PORT = 30000  # --ingress direct: the replica's own port (Ray Serve's direct ingress), from here up
MIXED_STEPS = (10, 20, 30)  # --mixed-steps: each request draws one (seeded), as a real mix of clients would


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> tuple[float, dict]:
    """One request -> (client latency, the server's stats: compute_s, batch, queue_s or None)."""
    triton = "/v2/models/" in url
    data = json.dumps(triton_body(body) if triton else body).encode()
    started = time.perf_counter()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as answer:
        data = answer.read()
        json_length = answer.headers.get("Inference-Header-Content-Length")  # Triton: binary outputs follow
        reply = json.loads(data[:int(json_length)] if json_length else data)
    latency = time.perf_counter() - started
    if not triton:
        return latency, reply["stats"]
    outputs = {o["name"]: o["data"][0] for o in reply["outputs"] if o["name"] != "image"}
    return latency, {"compute_s": outputs["compute_s"], "batch": outputs["batch"], "queue_s": None}


def triton_body(body: dict) -> dict:
    """The HTTP server's JSON fields as Triton tensors (serve/triton_model.py)."""
    inputs = [{"name": "class", "datatype": "INT64", "data": [body["class"]]},
              {"name": "seed", "datatype": "INT64", "data": [body["seed"]]},
              {"name": "steps", "datatype": "INT32", "data": [body["steps"]]},
              {"name": "cache", "datatype": "UINT8", "data": list(body["cache"].encode())}]
    outputs = [{"name": n} for n in ("compute_s", "batch")] + [{"name": "image", "parameters": {"binary_data": True}}]
    return {"inputs": [{**i, "shape": [1, len(i["data"])]} for i in inputs], "outputs": outputs}


def start_triton(folder: Path, wait_s: float):
    """tritonserver serving ``folder`` from a fresh `triton-repo` repository -> (process, infer URL)."""
    import subprocess
    import tempfile

    from tcpade_trt.serve.triton_repo import find_tritonserver, tritonserver_command, write_repository

    binary = find_tritonserver()
    if binary is None:
        raise SystemExit("no tritonserver: run scripts/fetch_tritonserver.py (make test does), or set "
                         "TCPADE_TRITONSERVER")
    repo = write_repository(folder, Path(tempfile.mkdtemp()) / "repo", device="cpu", batch_wait_ms=1000 * wait_s)
    port = free_port()
    process = subprocess.Popen(tritonserver_command(binary, repo, port, free_port(), metrics=False),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status == 200:
                return process, f"http://127.0.0.1:{port}/v2/models/tcpade/infer"
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"tritonserver exited ({process.returncode}) before it was ready") from None
            time.sleep(0.5)
    raise SystemExit("tritonserver was not ready within 5 minutes")


def closed_loop(url: str, bodies: list[dict], concurrency: int) -> tuple[list, float]:
    results, lock, queue = [], threading.Lock(), list(bodies)

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            result = post(url, body)
            with lock:
                results.append(result)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - started


def open_loop(url: str, bodies: list[dict], rate: float, seed: int = 0) -> tuple[list, float]:
    """Poisson arrivals at ``rate`` per second, each request on its own thread."""
    rng, results, lock, threads = random.Random(seed), [], threading.Lock(), []

    def send(body):
        result = post(url, body)
        with lock:
            results.append(result)

    started = time.perf_counter()
    for body in bodies:
        threads.append(threading.Thread(target=send, args=(body,)))
        threads[-1].start()
        time.sleep(rng.expovariate(rate))
    for t in threads:
        t.join()
    return results, time.perf_counter() - started


def summary(results: list, wall: float) -> dict:
    latencies = sorted(r[0] for r in results)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    overhead = [(lat - s["compute_s"]) / s["compute_s"] for lat, s in results]
    queues = [s["queue_s"] for _, s in results if s["queue_s"] is not None]  # Triton's queue is its own: not known
    return {"requests": len(results), "p50_s": round(q[49], 3), "p95_s": round(q[94], 3), "p99_s": round(q[98], 3),
            "images_per_s": round(len(results) / wall, 3), "mean_batch": round(statistics.mean(
                s["batch"] for _, s in results), 2), "median_overhead": round(statistics.median(overhead), 4),
            "median_queue_s": round(statistics.median(queues), 3) if queues else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fp32", type=Path, help="the FP32 engine folder (needed unless --precisions int8)")
    p.add_argument("--int8", type=Path, help="the INT8 engine folder (needed unless --precisions fp32)")
    p.add_argument("--precisions", nargs="+", choices=("fp32", "int8"), default=["fp32", "int8"])
    p.add_argument("--batching", nargs="+", choices=tuple(BATCHING), default=["off", "request-level"])
    p.add_argument("--caches", nargs="+", default=list(CACHES))
    p.add_argument("--ingress", nargs="+", choices=("proxy", "direct"), default=["proxy"],
                   help="Ray Serve modes: through the proxy, or to the replica's own port (Ray Serve's direct "
                        "ingress, `serve --direct-ingress`); both: every cell twice, on the same replica")
    p.add_argument("--concurrency", type=int, nargs="*", default=list(CONCURRENCY),
                   help="closed-loop concurrencies (default 1 4 16; none: Poisson only)")
    p.add_argument("--rates", type=float, nargs="+", default=None,
                   help="Poisson rates per second (default: one, --rate)")
    p.add_argument("--mixed-steps", action="store_true",
                   help=f"requests draw their steps from {MIXED_STEPS} instead of all 20")
    p.add_argument("--out", type=Path, default=Path("serve-load-out"))
    p.add_argument("--requests", type=int, default=32, help="requests per cell (default 32)")
    p.add_argument("--rate", type=float, default=None, help="Poisson rate per second (default: 60%% of the "
                                                            "uncached FP32 server's throughput at concurrency 16)")
    args = p.parse_args()
    folders = {"fp32": args.fp32, "int8": args.int8}
    for precision in args.precisions:
        if folders[precision] is None:
            p.error(f"--precisions {precision} needs --{precision} FOLDER.")

    import ray
    from ray import serve

    from tcpade_trt.bench.machine import machine_info
    from tcpade_trt.serve import direct_ingress
    from tcpade_trt.serve.app import build_app

    port = free_port()
    ray_modes = [b for b in args.batching if BATCHING[b][2] != "triton"]
    if "direct" in args.ingress:  # Ray's processes read it when they start; the proxy keeps serving `port`
        os.environ.update(direct_ingress.environment(DIRECT_PORT))
    if ray_modes:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
    draw = random.Random(7)
    steps = [draw.choice(MIXED_STEPS) if args.mixed_steps else 20 for _ in range(args.requests)]
    bodies = {cache: [{"class": i % 8, "seed": i, "steps": steps[i], "cache": cache, "format": "json"}
                      for i in range(args.requests)] for cache in args.caches}
    cells, rate = [], args.rate
    rates = args.rates
    for precision in args.precisions:
        folder = folders[precision]
        for batching in args.batching:
            max_batch, wait, mode = BATCHING[batching]
            if mode == "triton":
                triton, url = start_triton(folder, wait)
                urls = {"triton": url}
            else:
                serve.run(build_app({"folder": str(folder.resolve()), "device": "cpu", "max_batch": max_batch,
                                     "batch_wait_s": wait, "max_queued_requests": 4 * args.requests,
                                     "batching": mode}), name="load")
                urls = {"proxy": f"http://127.0.0.1:{port}"}
                if "direct" in args.ingress:
                    found = direct_ingress.local_replica_urls("127.0.0.1", DIRECT_PORT, 8)
                    if not found:
                        raise SystemExit(f"no replica answered on ports {DIRECT_PORT}-{DIRECT_PORT + 7}: is another "
                                         "Ray Serve using them, or did the replica fail to start (Ray's log)?")
                    urls["direct"] = found[0]
                urls = {k: f"{u}/v1/generate" for k, u in urls.items() if k in args.ingress}
            for url in urls.values():
                post(url, {**bodies[args.caches[0]][0], "steps": 20})  # warm-up: the replica's first generation
            for cache in args.caches:
                for ingress, url in urls.items():
                    cell = {"precision": precision, "batching": batching, "cache": cache, "ingress": ingress}
                    for concurrency in args.concurrency:
                        row = summary(*closed_loop(url, bodies[cache], concurrency))
                        cells.append({**cell, "arrivals": f"concurrency {concurrency}", **row})
                        print(cells[-1], flush=True)
                        if rate is None and (precision, batching, cache, concurrency) == ("fp32", "off", "none", 16):
                            rate = round(0.6 * row["images_per_s"], 3)
                    for r in rates or [rate]:
                        if r is None:
                            continue  # no rate given and no uncached FP32 cell at concurrency 16 to derive one from
                        row = summary(*open_loop(url, bodies[cache], r))
                        cells.append({**cell, "arrivals": f"Poisson {r}/s", **row})
                        print(cells[-1], flush=True)
            if mode == "triton":
                triton.terminate()
                triton.wait(timeout=60)
            else:
                serve.delete("load")
    if ray_modes:
        serve.shutdown()
        ray.shutdown()
    results = {"machine": machine_info(), "requests_per_cell": args.requests, "poisson_rate": rates or rate,
               "steps": "mixed " + "/".join(map(str, MIXED_STEPS)) if args.mixed_steps else 20,
               "command": "python scripts/serve_load_test.py " + " ".join(sys.argv[1:]), "cells": cells}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(results, indent=1))
    (args.out / "load.md").write_text(markdown(results))
    plot(results, args.out / "latency_throughput.png")
    return 0


def markdown(results: dict) -> str:
    m = results["machine"]
    command = results.get("command", "scripts/serve_load_test.py")
    lines = [f"Load test on {m['cpu']}, {m['cores']} cores, loopback, one replica, demo model, "
             f"{results.get('steps', 20)} steps, {results['requests_per_cell']} requests per cell (`{command}`).", "",
             "| precision | batching | ingress | cache | arrivals | p50 | p95 | p99 | images/s | mean batch | "
             "median queue | overhead at c=1 |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in results["cells"]:
        overhead = f"{100 * c['median_overhead']:.1f}%" if c["arrivals"] == "concurrency 1" else "-"
        lines.append(f"| {c['precision']} | {c['batching']} | {c.get('ingress', 'proxy')} | {c['cache']} | "
                     f"{c['arrivals']} | {c['p50_s']:.2f} s | "
                     f"{c['p95_s']:.2f} s | {c['p99_s']:.2f} s | {c['images_per_s']:.2f} | {c['mean_batch']} | "
                     f"{'-' if c['median_queue_s'] is None else format(c['median_queue_s'], '.2f') + ' s'} | "
                     f"{overhead} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    key = lambda c: (c["precision"], c["batching"], c["cache"], c.get("ingress", "proxy"))  # noqa: E731
    for series in sorted({key(c) for c in results["cells"]}):
        cells = [c for c in results["cells"] if key(c) == series and c["arrivals"].startswith("concurrency")]
        precision, batching, cache, ingress = series
        ax.plot([c["images_per_s"] for c in cells], [c["p95_s"] for c in cells], marker="o",
                label=f"{precision}, {cache}, batching {batching}" + (", direct" if ingress == "direct" else ""))
    ax.set_xlabel("images per second (concurrency 1, 4, 16)")
    ax.set_ylabel("p95 latency (s)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
