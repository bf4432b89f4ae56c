"""Ray Serve's direct ingress: each replica answers HTTP on its own port, skipping the proxy hop.

Through Ray Serve's proxy a request costs two HTTP hops (client -> proxy actor -> replica); on the 2-core
AMD EPYC VM that added 11-13 ms to a 0.17 s cached generation, more than the 5% overhead target (docs/serving.md).
With direct ingress the replica's own server (the same routes, keys, limits, 503 backpressure and request
timeout) answers on a port from ``first_port`` up: 3-4 ms. The proxy keeps serving ``--port`` and balancing
over the replicas; the direct ports are for a load balancer of one's own (one port per replica per node) or a
client next to a single replica.

Ray reads these settings from the environment when its processes start, so they are set before ``ray.init``
starts Ray here, and passed in the job's runtime environment to the Serve controller and replicas when joining
a running cluster (they only take effect if Serve is not already running there).
"""

from __future__ import annotations

import json
import time
import urllib.request

HIGHEST_PORT = 65535


def environment(first_port: int) -> dict[str, str]:
    """Environment variables that turn on direct ingress with replica ports from ``first_port`` up."""
    if not 1024 <= first_port < HIGHEST_PORT:
        from ..errors import ConfigError

        raise ConfigError(f"--direct-port {first_port} is outside 1024-65534; pick a free port range's start.")
    return {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(first_port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(min(first_port + 1000, HIGHEST_PORT))}


def local_replica_urls(host: str, first_port: int, replicas: int, wait_s: float = 60.0) -> list[str]:
    """The base URLs of the replicas on this machine that answer /healthz on their direct ports.

    Ray hands out ports from ``first_port`` upward, one per replica on a node, so the ones here are among the
    first ``replicas`` ports; a port that answers something else than this server's /healthz is skipped."""
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in probe_host:
        probe_host = f"[{probe_host}]"
    deadline = time.monotonic() + wait_s
    found: list[str] = []
    while not found and time.monotonic() < deadline:
        for port in range(first_port, min(first_port + replicas, HIGHEST_PORT + 1)):
            url = f"http://{probe_host}:{port}"
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                    if json.loads(answer.read()).get("status") == "ok":
                        found.append(url)
            except (OSError, ValueError):
                continue
        if not found:
            time.sleep(0.5)
    return found
