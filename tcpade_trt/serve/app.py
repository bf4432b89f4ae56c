"""The Ray Serve application: HTTP routes, request- or step-level batching, who may call, metrics.

    POST /v1/generate              a JSON body (serve/request.py) -> image/png (video models: image/gif), or
                                   {"image_png_base64" | "image_gif_base64", "stats"} with "format": "json";
                                   statistics also in the X-Tcpade-* headers of an image answer
    POST /v1/images/generations    the OpenAI Images API (serve/openai_images.py): {"prompt", "n", "size"} ->
                                   {"created", "data": [{"b64_json"}]}, for OpenAI-compatible clients
    GET  /v1/models                the served model, in OpenAI's list shape
    GET  /healthz                  {"status": "ok", model, precision, backend, node (the Ray node id), pid}
    GET  /openapi.json, /docs      the routes' schemas, narrowed to this server's folder and limits

Requests that arrive within ``batch_wait_s`` of each other are batched by Ray Serve (up to ``max_batch``),
then grouped by steps, cache and guidance (serve/worker.py), so a full step runs the block-stack engine
once for the whole group. With ``batching="step"`` requests instead join the running generations at step
boundaries (no batch wait; any steps and cache). Every answer that is not an image is JSON with one
sentence: a bad request 4xx, a full replica 503 with Retry-After (more than ``max_queued`` requests waiting
beside the ``max_batch`` running ones), a request not answered within ``timeout_s`` 408, and its generation
stops at the next step once none of the requests sharing it waits for it. The replica keeps serving after any
of them.

Deploy from a config file: ``serve deploy docs/serve_config.yaml`` (it calls ``build_app``).
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations (Request) at runtime, and as
# strings inside Ray Serve's ingress wrapper they are not resolved (the request became a query parameter: 422)
import asyncio
import base64
import hmac
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.util import metrics

from ..errors import TcpadeError
from . import openai_images, schema
from .request import GenerateBody, GenerateRequest, Limits, RequestError, validate
from .worker import Generator

log = logging.getLogger(__name__)
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


def _public(request: GenerateRequest) -> dict:
    """The request as a JSON answer repeats it: its fields, the cache config's method and fields."""
    return {"class": request.label, "prompt": request.prompt, "negative_prompt": request.negative_prompt,
            "seed": request.seed, "steps": request.steps,
            "cache": {"method": request.cache.method, **asdict(request.cache)},
            "guidance_scale": request.guidance_scale, "format": request.format}


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class TcpadeServer:
    def __init__(self, folder: str, device: str = "auto", max_batch: int = 8, batch_wait_s: float = 0.01,
                 max_steps: int = 100, require_api_key: bool = False, batching: str = "request",
                 pipeline: str | None = None, max_queued: int = 64, timeout_s: float = 120.0):
        if batching not in BATCHING_MODES:
            raise TcpadeError(f"batching must be one of {', '.join(BATCHING_MODES)} (got {batching!r}).")
        self.generator = Generator(folder, device=device, pipeline=pipeline)
        self.stepwise = batching == "step"
        self.limits = Limits(max_steps=self.generator.steps_limit(max_steps))
        key = os.environ.get(API_KEY_ENV, "")
        if require_api_key and not key:
            raise TcpadeError(f"this server must check an API key but {API_KEY_ENV} is not set in its environment.")
        check_api_key(key)
        self.api_key = key.encode() if key else None
        self._batched.set_max_batch_size(max_batch)
        self.batch_wait_s = batch_wait_s
        self.capacity = max_batch + max_queued  # requests in flight before a 503 (running and waiting)
        self.timeout_s = timeout_s
        self.metrics = _metrics()
        self.in_flight = 0
        manifest = self.generator.runtime.manifest
        self.info = {"model": manifest.model["name"], "precision": manifest.precision, "backend": manifest.backend}
        self.size, self.output_format = self.generator.image_size()
        # /openapi.json and /docs: the routes' generic schemas narrowed to this folder and these limits
        api.openapi_schema = schema.tighten(api.openapi(), self.generator.accepts, self.limits, self.size,
                                            self.info["model"])
        import ray

        self.node = ray.get_runtime_context().get_node_id()  # which Ray node this replica runs on (scaled out)

    @api.get("/healthz", response_model=schema.Health)
    async def healthz(self) -> dict:
        return {"status": "ok", **self.info, "node": self.node, "pid": os.getpid()}

    @api.get("/v1/models")
    async def models(self) -> dict:
        """The served model in OpenAI's list shape: what OpenAI-compatible clients call "model"."""
        return {"object": "list", "data": [{"id": self.info["model"], "object": "model", "created": 0,
                                            "owned_by": "tcpade-trt"}]}

    @api.post("/v1/generate", **schema.route_docs(GenerateBody, schema.GENERATE_OK, schema.ErrorBody,
                                                  (400, 401, 408, 413, 422, 500, 503)))
    async def generate(self, http: Request) -> Response:
        arrived = time.perf_counter()
        try:
            self._authorize(http)
            self._admit()
            request = validate(GenerateBody, await self._json(http), self.generator.accepts,
                               self.limits).to_request(self.generator.accepts)
            self.generator.check(request)
            result, started, batch_s = (await self._generate([request], arrived))[0]
        except RequestError as exc:
            return self._answer(self._error(exc, {"error": exc.message}))
        stats = self._stats(result, arrived, started, batch_s)
        if request.format == "json":
            key = "image_gif_base64" if result.media_type == "image/gif" else "image_png_base64"
            body = {key: base64.b64encode(result.image).decode(), "stats": stats, "request": _public(request)}
            return self._answer(JSONResponse(body))
        headers = {f"X-Tcpade-{k.replace('_', '-')}": str(v) for k, v in stats.items()}
        return self._answer(Response(result.image, media_type=result.media_type, headers=headers))

    @api.post("/v1/images/generations", **schema.route_docs(
        openai_images.ImagesBody, schema.IMAGES_OK, schema.OpenAIErrorBody,
        (400, 401, 404, 408, 413, 422, 500, 503)))
    async def images_generations(self, http: Request) -> Response:
        """The OpenAI Images API (serve/openai_images.py): n images of one prompt, batched like any requests."""
        arrived = time.perf_counter()
        try:
            self._authorize(http)
            self._admit()
            body = validate(openai_images.ImagesBody, await self._json(http), self.generator.accepts, self.limits,
                            model=self.info["model"], size=self.size, output_format=self.output_format)
            requests = body.requests(self.generator.accepts, self.limits)
            self.generator.check(requests[0])
            results = await self._generate(requests, arrived)
        except RequestError as exc:
            return self._answer(self._error(exc, openai_images.error_body(exc)))
        started, batch_s = min(r[1] for r in results), max(r[2] for r in results)
        stats = self._stats(results[0][0], arrived, started, batch_s)
        data = [{"b64_json": base64.b64encode(result.image).decode(), "seed": request.seed}
                for request, (result, _, _) in zip(requests, results)]
        return self._answer(JSONResponse({"created": int(time.time()), "data": data,
                                          "output_format": self.output_format, "stats": stats}))

    def _admit(self) -> None:
        """A full replica answers 503 at once (JSON, Retry-After) rather than queueing beyond its capacity."""
        if self.in_flight >= self.capacity:
            raise RequestError(503, f"this server is busy ({self.in_flight} requests in flight); retry in a few "
                                    "seconds.")

    async def _generate(self, requests: list[GenerateRequest], arrived: float) -> list[tuple]:
        """(result, started, batch seconds) per request, all joining the batching together. 408 after the
        timeout, the requests cancelled: a generation that nobody waits for stops at its next step. 500 for a
        failed one (e.g. non-finite: reported, never an image)."""
        self.in_flight += len(requests)
        self.metrics["waiting"].set(self.in_flight)
        try:
            jobs = [self._stepwise(r, arrived) if self.stepwise else self._batched_one(r, arrived) for r in requests]
            try:
                left = self.timeout_s - (time.perf_counter() - arrived)
                return list(await asyncio.wait_for(asyncio.gather(*jobs), left))
            except asyncio.TimeoutError:
                raise RequestError(408, f"the request was not answered within the server's {self.timeout_s:g} s "
                                        "timeout and was cancelled; ask for fewer steps or images, or retry "
                                        "later.") from None
            except TcpadeError as exc:
                raise RequestError(500, str(exc)) from None
            except Exception as exc:  # a bug here or in a library: a JSON sentence for the client, the rest in the log
                log.exception("a generation failed")
                raise RequestError(500, f"the generation failed on the server ({type(exc).__name__}); its log has "
                                        "the details.") from None
            finally:
                for request in requests:  # no-op for those answered; stops the generations of the others
                    request.cancelled.set()
        finally:
            self.in_flight -= len(requests)
            self.metrics["waiting"].set(self.in_flight)

    async def _batched_one(self, request: GenerateRequest, arrived: float) -> tuple:
        # the batch wait is for requests arriving together: alone on an idle server there is nobody to wait for,
        # so it starts at once (at concurrency 1 the wait would be pure added latency)
        self._batched.set_batch_wait_timeout_s(self.batch_wait_s if self.in_flight > 1 else 0.0)
        result, started, batch_s = await self._batched((request, arrived))
        if isinstance(result, TcpadeError):  # this request's own failure (the batch's others are answered)
            raise result
        return result, started, batch_s

    def _stats(self, result, arrived: float, started: float, batch_s: float) -> dict:
        self.metrics["queue"].observe(started - arrived)
        return {"full_steps": result.full_steps, "predicted_steps": result.predicted_steps,
                "queue_s": round(started - arrived, 4), "compute_s": round(batch_s, 4), "batch": result.batch,
                "total_s": round(time.perf_counter() - arrived, 4)}

    def _error(self, exc: RequestError, body: dict) -> JSONResponse:
        headers = {"Retry-After": "2"} if exc.status == 503 else None
        return JSONResponse(body, status_code=exc.status, headers=headers)

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
    max_steps, replicas, max_queued_requests, timeout_s, max_replicas_per_node, gpus_per_replica, require_api_key,
    batching, pipeline}. Each replica answers 503 (JSON) beyond max_batch + max_queued_requests in flight and 408
    (JSON) after timeout_s; Ray Serve's own limits sit above those, as a safety net.
    gpus_per_replica (default: 1 for a folder that runs on a GPU, else 0) is what each replica asks Ray
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
    if queued < 0:
        raise TcpadeError(f"max_queued_requests must be a whole number >= 0 (got {queued}).")
    args["max_queued"] = queued
    # the replica takes every request up to its own capacity (and a few more, to answer them 503 in JSON itself):
    # Ray's router then never queues them, and its plain-text 503 only follows a burst beyond that
    options = {"num_replicas": replicas, "max_queued_requests": queued + 16,
               "max_ongoing_requests": int(args.get("max_batch", 8)) + queued + 16,
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
