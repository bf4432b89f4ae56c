"""Serve an engine folder over HTTP on Ray Serve: POST /v1/generate, GET /healthz, Prometheus metrics.

    tcpade-trt serve --engines engines/demo-int8                        # http://127.0.0.1:8000, this machine only
    TCPADE_API_KEY=... tcpade-trt serve --engines DIR --host 0.0.0.0    # reachable from elsewhere: a key is required
    curl -s localhost:8000/v1/generate -d '{"class": "astronaut", "seed": 3}' -o out.png
    tcpade-trt serve --engines engines/flux-fp8 --pipeline /models/FLUX.1-dev     # text: {"prompt": "..."}

Joins a running Ray cluster if there is one (`ray start --head` here, `ray start --address HEAD:6379` on the
others; replicas then spread over the nodes), else starts Ray on this machine. Bound to 127.0.0.1 unless
--host says otherwise; any other address needs an API key in TCPADE_API_KEY (clients send
`Authorization: Bearer KEY`) or --insecure-no-auth, which the log states loudly. Metrics: Ray's Prometheus
endpoint (`ray start --head --metrics-export-port 8080`), Ray Serve's own and the tcpade_* series."""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from pathlib import Path

from .args import finite_float, non_negative_float, port, positive_int

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--engines", type=Path, required=True, help="the engine folder to serve")
    p.add_argument("--pipeline", type=Path,
                   help="text-conditioned folders (FLUX, Wan, SD3): a local diffusers pipeline folder whose text "
                        "encoders and VAE turn prompts into conditioning and latents into images")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8000)
    p.add_argument("--replicas", type=positive_int, default=1, help="server replicas, each with its own engines")
    p.add_argument("--max-batch", type=positive_int, default=8, help="requests per batched generation (8)")
    p.add_argument("--batch-wait-ms", type=finite_float, default=10.0,
                   help="how long a batch waits for more requests while others are in flight (10 ms); a "
                        "request alone on an idle server starts at once")
    p.add_argument("--batching", choices=("request", "step"), default="request",
                   help="request: batch requests that arrive together (same steps / cache / guidance); step: requests "
                        "join the running generations at step boundaries (any steps / cache)")
    p.add_argument("--max-queued", type=positive_int, default=64, help="queued requests before 503 (64)")
    p.add_argument("--timeout-s", type=finite_float, default=120.0, help="end-to-end request timeout (120 s)")
    p.add_argument("--max-steps", type=positive_int, default=100, help="largest steps a request may ask for")
    p.add_argument("--device", default="auto")
    p.add_argument("--gpus-per-replica", type=non_negative_float, default=None,
                   help="GPUs each replica asks Ray for (default: 1 for a folder that runs on a GPU, else 0; "
                        "0.5 puts two replicas on one GPU): Ray gives each replica its own")
    p.add_argument("--direct-ingress", action="store_true",
                   help="each replica also answers on its own port (from --direct-port up), skipping Ray Serve's "
                        "proxy hop: 3-4 ms instead of 11-13 ms per request on a 2-core CPU (docs/serving.md); the "
                        "proxy keeps --port. Starts Ray (or Serve on a running cluster) with that setting")
    p.add_argument("--direct-port", type=port, default=30000,
                   help="first replica port with --direct-ingress (30000; one port per replica per node)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="serve a non-loopback address without an API key (anyone who reaches it may generate)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, number: int) -> None:
    """One sentence before Ray starts (not Ray's tracebacks after it) when the address is taken or not ours."""
    import socket

    from ..errors import ConfigError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: a closing socket is free
            s.bind((host, number))
    except OSError as exc:
        taken = exc.errno in (98, 48, 10048)  # EADDRINUSE on Linux, macOS, Windows
        raise ConfigError(f"cannot listen on {host}:{number}: " + (
            "the port is in use (another server, or a Serve application still running: `serve shutdown`); pick "
            "another with --port." if taken else f"{exc.strerror or exc}; check --host and --port.")) from None


def run(args) -> int:
    from ..engines.manifest import read_manifest
    from ..errors import ConfigError
    from ..runtime.model_io import check_pipeline

    manifest = read_manifest(args.engines)  # a wrong folder is one sentence before Ray starts
    check_pipeline(manifest, args.pipeline)
    from ..serve.app import check_api_key

    has_key = bool(os.environ.get("TCPADE_API_KEY"))
    check_api_key(os.environ.get("TCPADE_API_KEY", ""))
    if args.timeout_s <= 0:
        raise ConfigError(f"--timeout-s must be above 0 seconds (got {args.timeout_s:g}).")
    if args.batch_wait_ms < 0:
        raise ConfigError(f"--batch-wait-ms must be 0 or more (got {args.batch_wait_ms:g}).")
    check_port_free(args.host, args.port)
    if not is_loopback(args.host) and not has_key and not args.insecure_no_auth:
        raise ConfigError(f"--host {args.host} is reachable from other machines: set TCPADE_API_KEY (clients send "
                          "Authorization: Bearer KEY), or pass --insecure-no-auth to serve without one.")
    if args.insecure_no_auth and not has_key:
        log.warning("SERVING WITHOUT AUTHENTICATION on %s:%d: anyone who can reach it may generate", args.host,
                    args.port)
    env = {"TCPADE_API_KEY": os.environ["TCPADE_API_KEY"]} if has_key else {}
    if args.direct_ingress:
        from ..serve.direct_ingress import environment

        direct = environment(args.direct_port)
        env.update(direct)  # to Serve's processes on a running cluster
        os.environ.update(direct)  # before Ray starts here: its processes inherit it
    import ray
    from ray import serve

    from ..serve.app import build_app

    ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, runtime_env={"env_vars": env})
    # the replicas answer 408 (JSON) at --timeout-s and stop the work; Ray's proxy timeout is a safety net above it
    serve.start(http_options={"host": args.host, "port": args.port, "request_timeout_s": args.timeout_s + 30})
    pipeline = str(args.pipeline.resolve()) if args.pipeline else None
    app = build_app({"folder": str(args.engines.resolve()), "pipeline": pipeline, "device": args.device,
                     "max_batch": args.max_batch, "batch_wait_s": args.batch_wait_ms / 1000,
                     "max_steps": args.max_steps, "replicas": args.replicas, "max_queued_requests": args.max_queued,
                     "timeout_s": args.timeout_s,
                     "gpus_per_replica": args.gpus_per_replica,
                     "require_api_key": has_key, "batching": args.batching})
    print(f"serving {args.engines} on http://{args.host}:{args.port} (POST /v1/generate, GET /healthz); Ctrl-C stops",
          flush=True)
    serve.run(app, blocking=not args.direct_ingress)
    if args.direct_ingress:  # blocking=False above: tell where the replicas answer, then wait like serve.run
        from ..serve.direct_ingress import local_replica_urls

        urls = local_replica_urls(args.host, args.direct_port, args.replicas)
        elsewhere = args.replicas - len(urls)
        print(f"direct ingress, no proxy hop: {', '.join(urls) or 'no replica on this machine'}"
              + (f" (and {elsewhere} on other nodes, from port {args.direct_port} on each)" if elsewhere else ""),
              flush=True)
        while True:
            time.sleep(3600)  # Ctrl-C: KeyboardInterrupt, handled by the command line's main
    return 0
