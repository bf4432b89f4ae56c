"""The Ray Serve application: HTTP routes, request- or step-level batching, who may call, metrics.

    POST /v1/generate   a JSON body (serve/request.py) -> image/png (video models: image/gif), or
                        {"image_png_base64" | "image_gif_base64", "stats"} with "format": "json"; statistics
                        also in the X-Tcpade-* headers of an image answer
    GET  /healthz       {"status": "ok", model, precision, backend, node (the replica's Ray node id), pid}

Requests that arrive within ``batch_wait_s`` of each other are batched by Ray Serve (up to ``max_batch``),
then grouped by steps, cache and guidance (serve/worker.py), so a full step runs the block-stack engine
once for the whole group. With ``batching="step"`` requests instead join the running generations at step
boundaries (no batch wait; any steps and cache). A full queue answers 503 (Ray Serve's
``max_queued_requests``), a slow request 408 (``request_timeout_s``), a bad one 4xx with one sentence; the
replica keeps serving after any of them.

Deploy from a config file: ``serve deploy docs/serve_config.yaml`` (it calls ``build_app``).
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (Request) at runtime, and as
# strings inside Ray Serve's ingress wrapper they are not resolved (the request became a query parameter: 422)
import asyncio
import base64
import hmac
import os
import time
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.util import metrics

from ..errors import TcpadeError
from .request import GenerateRequest, Limits, RequestError, parse_request
from .worker import Generator

API_KEY_ENV = "TCPADE_API_KEY"
MIN_API_KEY_CHARS = 16  # a key anyone could guess protects nothing: e.g. `openssl rand -hex 16` gives 32


def check_api_key(key: str) -> None:
    """Refuse a key too short to protect anything, in one sentence (before Ray starts, and in the replica)."""
    if key and len(key) < MIN_API_KEY_CHARS:
        raise TcpadeError(f"{API_KEY_ENV} has {len(key)} character(s); an API key needs at least {MIN_API_KEY_CHARS} "
                          "(e.g. `openssl rand -hex 16`).")
# request: Ray Serve batches requests that arrive together, grouped by steps / cache / guidance (worker.py);
# step: requests join and leave the running generations at step boundaries (runtime/step_batching.py)
BATCHING_MODES = ("request", "step")
api = FastAPI(title="tcpade-trt", description="TC-Padé cached diffusion on an engine folder")


def _metrics() -> dict:
    seconds = [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100]
    return {
        "requests": metrics.Counter("tcpade_requests", "requests answered, by HTTP status", tag_keys=("status",)),
        "batch": metrics.Histogram("tcpade_batch_size", "requests per batched generation", boundaries=[1, 2, 4, 8, 16]),
        "full": metrics.Counter("tcpade_full_steps", "block-stack steps run, summed over requests"),
        "predicted": metrics.Counter("tcpade_predicted_steps", "steps predicted by the cache, summed over requests"),
        "queue": metrics.Histogram("tcpade_queue_seconds", "arrival to start of its generation", boundaries=seconds),
        "compute": metrics.Histogram("tcpade_compute_seconds", "generation time of a batch", boundaries=seconds),
        "waiting": metrics.Gauge("tcpade_requests_in_flight", "requests accepted and not yet answered"),
    }


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class TcpadeServer:
    def __init__(self, folder: str, device: str = "auto", max_batch: int = 8, batch_wait_s: float = 0.01,
                 max_steps: int = 100, require_api_key: bool = False, batching: str = "request",
                 pipeline: str | None = None):
        if batching not in BATCHING_MODES:
            raise TcpadeError(f"batching must be one of {', '.join(BATCHING_MODES)} (got {batching!r}).")
        self.generator = Generator(folder, device=device, pipeline=pipeline)
        self.stepwise = batching == "step"
        self.limits = Limits(max_steps=max_steps)
        key = os.environ.get(API_KEY_ENV, "")
        if require_api_key and not key:
            raise TcpadeError(f"this server must check an API key but {API_KEY_ENV} is not set in its environment.")
        check_api_key(key)
        self.api_key = key.encode() if key else None
        self._batched.set_max_batch_size(max_batch)
        self.batch_wait_s = batch_wait_s
        self.metrics = _metrics()
        self.in_flight = 0
        manifest = self.generator.runtime.manifest
        self.info = {"model": manifest.model["name"], "precision": manifest.precision, "backend": manifest.backend}
        import ray

        self.node = ray.get_runtime_context().get_node_id()  # which Ray node this replica runs on (scaled out)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok", **self.info, "node": self.node, "pid": os.getpid()}

    @api.post("/v1/generate")
    async def generate(self, http: Request) -> Response:
        arrived = time.perf_counter()
        try:
            self._authorize(http)
            request = parse_request(await self._json(http), self.generator.accepts, self.limits)
            self.generator.check(request)
        except RequestError as exc:
            return self._answer(JSONResponse({"error": exc.message}, status_code=exc.status))
        self.in_flight += 1
        self.metrics["waiting"].set(self.in_flight)
        try:
            if self.stepwise:
                result, started, batch_s = await self._stepwise(request, arrived)
            else:
                # the batch wait is for requests arriving together: alone on an idle server there is nobody to wait
                # for, so it starts at once (at concurrency 1 the wait would be pure added latency)
                self._batched.set_batch_wait_timeout_s(self.batch_wait_s if self.in_flight > 1 else 0.0)
                result, started, batch_s = await self._batched((request, arrived))
                if isinstance(result, TcpadeError):  # this request's own failure (the batch's others are answered)
                    raise result
        except TcpadeError as exc:  # e.g. a non-finite generation: reported, never an image
            return self._answer(JSONResponse({"error": str(exc)}, status_code=500))
        finally:
            self.in_flight -= 1
            self.metrics["waiting"].set(self.in_flight)
        stats = {"full_steps": result.full_steps, "predicted_steps": result.predicted_steps,
                 "queue_s": round(started - arrived, 4), "compute_s": round(batch_s, 4), "batch": result.batch,
                 "total_s": round(time.perf_counter() - arrived, 4)}
        self.metrics["queue"].observe(started - arrived)
        if request.format == "json":
            key = "image_gif_base64" if result.media_type == "image/gif" else "image_png_base64"
            body = {key: base64.b64encode(result.image).decode(), "stats": stats, "request": asdict(request)}
            return self._answer(JSONResponse(body))
        headers = {f"X-Tcpade-{k.replace('_', '-')}": str(v) for k, v in stats.items()}
        return self._answer(Response(result.image, media_type=result.media_type, headers=headers))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _batched(self, items: "list[tuple[GenerateRequest, float]]") -> list:
        """Ray Serve's batch of concurrent requests -> one result each (grouped further in the worker)."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        # the generation runs off the event loop, so /healthz and new arrivals are answered meanwhile
        # each request's own result or its own error: one that fails never fails the others (worker.generate_each)
        results = await loop.run_in_executor(None, self.generator.generate_each, [r for r, _ in items])
        seconds = time.perf_counter() - started
        self.metrics["compute"].observe(seconds)
        self.metrics["batch"].observe(len(items))
        for r in results:  # Ray's counters refuse an increment of 0 (an uncached run predicts nothing)
            if isinstance(r, TcpadeError):
                continue
            for name, steps in (("full", r.full_steps), ("predicted", r.predicted_steps)):
                if steps:
                    self.metrics[name].inc(steps)
        return [(r, started, seconds) for r in results]

    async def _stepwise(self, request: GenerateRequest, arrived: float) -> tuple:
        """Step-level batching: the request joins the running generations at the next step boundary."""
        loop = asyncio.get_running_loop()
        # off the event loop: submitting encodes a prompt (the text encoders) before the request joins
        submitted = await loop.run_in_executor(None, self.generator.submit_stepwise, request)
        step_result = await asyncio.wrap_future(submitted)
        result = await loop.run_in_executor(None, self.generator.stepwise_result, request, step_result)
        self.metrics["compute"].observe(result.compute_s)
        self.metrics["batch"].observe(result.batch)
        for name, steps in (("full", result.full_steps), ("predicted", result.predicted_steps)):
            if steps:
                self.metrics[name].inc(steps)
        return result, arrived + step_result.queue_s, result.compute_s

    def _authorize(self, http: Request) -> None:
        if self.api_key is None:
            return
        scheme, _, token = http.headers.get("authorization", "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""  # schemes are case-insensitive (RFC 7235)
        if not hmac.compare_digest(given, self.api_key):  # constant time: no timing oracle on the key
            raise RequestError(401, "missing or wrong API key; send the header Authorization: Bearer KEY.")

    async def _json(self, http: Request):
        import json

        declared = http.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limits.max_body_bytes):
            raise RequestError(413, f"the body is larger than {self.limits.max_body_bytes} bytes.")
        body = await http.body()
        if len(body) > self.limits.max_body_bytes:
            raise RequestError(413, f"the body is larger than {self.limits.max_body_bytes} bytes.")
        try:
            return json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError(400, "the body is not valid JSON.") from None
        except RecursionError:  # thousands of nested [ fit in the size limit and exhaust the parser's stack
            raise RequestError(400, "the body nests too deeply; a request is a flat JSON object.") from None

    def _answer(self, response: Response) -> Response:
        self.metrics["requests"].inc(tags={"status": str(response.status_code)})
        return response


def build_app(args: dict):
    """The application for ``serve run`` / ``serve deploy``: args {folder, device, max_batch, batch_wait_s,
    max_steps, replicas, max_queued_requests, max_replicas_per_node, gpus_per_replica, require_api_key, batching,
    pipeline}. gpus_per_replica (default: 1 for a folder that runs on a GPU, else 0) is what each replica asks Ray
    for: Ray then gives each replica its own GPU (CUDA_VISIBLE_DEVICES); with none asked, every replica on a node
    would load onto GPU 0."""
    args = dict(args)
    replicas = int(args.pop("replicas", 1))
    queued = int(args.pop("max_queued_requests", 64))
    per_node = args.pop("max_replicas_per_node", None)  # 1: one replica per machine, e.g. one per GPU node
    gpus = args.pop("gpus_per_replica", None)
    gpus = default_gpus_per_replica(args["folder"], args.get("device", "auto")) if gpus is None else float(gpus)
    if not gpus >= 0:
        raise TcpadeError(f"gpus_per_replica must be a number >= 0 (got {gpus!r}).")
    options = {"num_replicas": replicas, "max_queued_requests": queued,
               "max_ongoing_requests": max(2 * int(args.get("max_batch", 8)), 16),
               "ray_actor_options": {"num_cpus": 0, "num_gpus": gpus}}
    if per_node is not None:
        options["max_replicas_per_node"] = int(per_node)
    return TcpadeServer.options(**options).bind(**args)


def default_gpus_per_replica(folder: str, device: str) -> float:
    """One GPU per replica for a folder that runs on one (TensorRT plans; onnxruntime on its CUDA or TensorRT
    provider, asked for or picked by 'auto' where onnxruntime-gpu is installed), else none."""
    from ..engines import registry
    from ..engines.manifest import read_manifest

    manifest = read_manifest(folder, verify_hashes=False)
    return 1.0 if registry.of(manifest).uses_gpu(Path(folder), manifest, device) else 0.0
