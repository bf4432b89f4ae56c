"""The production entry point: an engine folder plus a cache preset -> denoised latents.

    with Runtime("engines/demo-int8") as rt:            # or rt = Runtime(...); ...; rt.close()
        result = rt.generate(cond, noise, cache="tcpade-fast", steps=20)

One runtime serves one generation at a time: a second concurrent call is refused with a clear
message (use one Runtime per worker thread; sessions are not shared). Per step, at most one scalar
crosses to the host: on a step that fits the residual history, the fit's non-finite bound (with the
TSI gate's value when the gate is on); predicted steps that reuse a fit and full steps need none.
An engine that fails mid-run raises EngineError; the runtime holds no per-run state afterwards
and serves the next request. ``close()`` (or leaving a ``with`` block) waits for the queued work and releases the
engines and their device memory at once, not whenever the garbage collector runs.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch

from ..cache import DEFAULT_CACHE
from ..cache.config import CacheConfig
from ..cache.factory import make_policy
from ..errors import TcpadeError
from .engine_parts import open_engines
from .sampler import SampleResult, sample
from .streams import on_stream


class Runtime:
    def __init__(self, folder: str | Path, device: str = "auto", verify: bool = True, cuda_graphs: bool = False,
                 io_binding: bool | None = None, weight_streaming_budget: str | int | None = None):
        """device, io_binding: onnxruntime folders; cuda_graphs, weight_streaming_budget: TensorRT folders
        (see engine_parts.open_engines)."""
        self.model = open_engines(folder, device=device, verify=verify, cuda_graphs=cuda_graphs,
                                  io_binding=io_binding, weight_streaming_budget=weight_streaming_budget)
        self._lock = threading.RLock()  # close() from an on_step callback must not wait for itself
        self.closed = False
        self._generating = False
        self.last_timing: dict = {}  # total_s and engines_s of the last generation (overhead = the rest)

    def close(self) -> None:
        """Release the engines and their memory, after any running generation (idempotent). Using the runtime
        afterwards raises one sentence."""
        with self._lock:  # a generation on another thread finishes first
            if not self.closed:
                self.model.parts.close()
                self.closed = True

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def manifest(self):
        return self.model.parts.manifest

    def synchronize(self) -> None:
        """The host waits until the engines have finished the work queued so far (a GPU runs asynchronously:
        read a clock after this, not after ``generate`` returns). Nothing to wait for on a CPU."""
        self.model.synchronize()

    def make_policy(self, cache: str | CacheConfig):
        """A fresh policy whose Padé math runs in this folder's Padé engines, on the folder's calibrated
        schedules when it has them (`tcpade-trt calibrate`)."""
        return make_policy(cache, pade=self.model.parts.pade, calibrated=self.model.calibrated)

    def generate(self, cond: dict, latents: torch.Tensor, cache: str | CacheConfig = DEFAULT_CACHE,
                 steps: int = 20, guidance_scale: float | None = None, negative_cond: dict | None = None,
                 progress: bool = False, on_step=None, should_stop=None) -> SampleResult:
        """Denoise ``latents`` (initial noise, the family's layout) with ``cache`` in ``steps`` steps.
        ``should_stop()``, asked before every step, stops it with GenerationCancelled (runtime/sampler.sample)."""
        if self._generating or not self._lock.acquire(blocking=False):  # another thread, or from on_step
            raise TcpadeError("this Runtime is already running a generation; it serves one request at a time: "
                              "create one Runtime per worker thread.")
        self._generating = True
        try:
            if self.closed:
                raise TcpadeError(f"this Runtime of {self.model.parts.folder} was closed; open the folder again "
                                  "with Runtime(folder).")
            parts = self.model.parts
            engines_before, start = parts.engine_seconds(), time.perf_counter()
            # on a GPU every engine call and torch op of the generation runs on the engines' stream, after the
            # caller's work on its inputs and before the caller's use of the result (no host sync)
            with on_stream(parts.stream) as keep:
                result = sample(self.model, cond, latents, num_steps=steps, guidance_scale=guidance_scale,
                                negative_cond=negative_cond, policy=self.make_policy(cache), progress=progress,
                                on_step=on_step, should_stop=should_stop)
                keep(result.latents)
            self.last_timing = {"total_s": time.perf_counter() - start,
                                "engines_s": parts.engine_seconds() - engines_before}
            return result
        finally:
            self._generating = False
            self._lock.release()
