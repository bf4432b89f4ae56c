"""Step-level continuous batching: generations join and leave at step boundaries, and at every tick the
ones at a full step share one block-stack call while the others take their cache's prediction.

    batcher = StepBatcher(model, make_policy=runtime.make_policy, rows_max=16)
    future = batcher.submit(cond, noise, steps=20, cache="tcpade-fast")    # from any thread
    result = future.result().result                                        # a SampleResult
    batcher.close()

Request-level batching (serve/worker.py) runs a group of requests from first step to last: a request
that arrives a moment later waits for the whole group, and requests with another step count or cache
cannot share it. Here every request is its own ``Trajectory`` (runtime/sampler.py) with its own scheduler
and cache policy; a tick advances every active trajectory by one step:

    for each trajectory:   tensors = head();  prediction = policy.predict(ctx)       (per request, cheap)
    full = those without a prediction:  one blocks call on their rows, concatenated   (the expensive part)
    for each trajectory:   policy.update(...);  tail(x_out);  scheduler update         (per request, cheap)

Rows of different requests sit at different timesteps in one block call: every block input that grows
with the batch (the manifest's "batch" axis: hidden states, temb, timestep, labels) is per row, so each
sample's block output is what it would be alone (within the engines' batch-size rounding; tested).
Tensors without a batch axis (FLUX's RoPE tables) depend only on the folder's resolution and are shared.
Per-request policies also mean that caches whose decisions depend on the batch (TeaCache, the TSI gate)
batch here too. Admission keeps the active rows within ``rows_max`` (the folder's batch_max), so a tick's
block call never exceeds the engines' profile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import torch

from ..cache import DEFAULT_CACHE
from ..models.family import Tensors
from ..models.model import Model
from .sampler import SampleResult, Trajectory
from .step import StepInput, cached_forward_many
from .streams import on_stream

log = logging.getLogger(__name__)


@dataclass(eq=False)  # identity: the fields hold tensors, which have no truth value to compare by
class _Pending:
    kwargs: dict
    future: Future
    rows: int
    submitted: float = field(default_factory=time.perf_counter)
    inputs_ready: object = None  # GPU: a CUDA event after the submitter's work on its inputs (on its stream)


@dataclass
class StepBatchResult:
    result: SampleResult
    queue_s: float  # submitted -> first step
    compute_s: float  # first step -> last step (shared with the requests it ran beside)
    mean_rows: float  # mean rows of the block calls it took part in
    ready: object = None  # GPU: a CUDA event on the engines' stream after the request's last step

    def wait_ready(self) -> None:
        """Order the caller's current CUDA stream after the request's last step (no host sync; nothing to do on
        a CPU). The batcher's own ordering covers callers on the default stream only."""
        if self.ready is not None:
            self.ready.wait()


class StepBatcher:
    """A thread that runs every submitted generation, one tick (one step of each) at a time."""

    def __init__(self, model: Model, make_policy, rows_max: int, idle_wait_s: float = 0.05):
        self.model, self.make_policy, self.rows_max = model, make_policy, rows_max
        self._shared = _shared_block_inputs(model)
        self._stream = getattr(model.parts, "stream", None)  # the engines' CUDA stream; None on CPU / torch parts
        self._waiting: deque[_Pending] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._idle_wait_s = idle_wait_s
        self.ticks = 0
        self._holding: list[_Pending] = []  # the requests of the running ticks (failed together if the loop dies)
        self._thread = threading.Thread(target=self._loop, name="tcpade-step-batcher", daemon=True)
        self._thread.start()

    # ---- the caller's side ------------------------------------------------------------------------
    def submit(self, cond: Tensors, noise: torch.Tensor, *, steps: int, cache=DEFAULT_CACHE,
               guidance_scale: float | None = None, negative_cond: Tensors | None = None) -> Future:
        """A future of StepBatchResult; errors of this request (bad cache spec, non-finite inputs) land in it.
        ``negative_cond``: the unconditional half of a CFG request (a negative prompt); else the family's."""
        rows = noise.shape[0] * (2 if guidance_scale is not None else 1)
        future: Future = Future()
        if rows > self.rows_max:
            future.set_exception(ValueError(f"{rows} rows exceed the batcher's {self.rows_max}; split the request."))
            return future
        inputs_ready = None
        if self._stream is not None:  # the submitter's work on its inputs is queued on its current stream
            inputs_ready = torch.cuda.Event()
            inputs_ready.record()
        with self._wake:
            if self._closed:
                raise RuntimeError("the step batcher is closed.")
            self._waiting.append(_Pending(dict(cond=cond, noise=noise, steps=steps, cache=cache,
                                               guidance_scale=guidance_scale, negative_cond=negative_cond),
                                          future, rows, inputs_ready=inputs_ready))
            self._wake.notify()
        return future

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    # ---- the loop -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        with torch.no_grad():  # grad mode is per thread
            while True:
                try:
                    self._run()
                    return
                except Exception as exc:  # a bug of the loop itself: fail what it holds, never leave callers hanging
                    log.exception("step batcher: the loop failed; failing its requests and starting over")
                    with self._wake:
                        waiting, self._waiting = list(self._waiting), deque()
                    for pending in [*self._holding, *waiting]:
                        _settle(pending.future, exception=exc)
                    self._holding = []

    def _run(self) -> None:
        active: list[_Active] = []
        while True:
            with self._wake:
                while not active and not self._waiting and not self._closed:
                    self._wake.wait(self._idle_wait_s)
                if self._closed and not active and not self._waiting:
                    return
                admitted = self._admit(sum(a.run.rows for a in active))
            finished = []
            # on a GPU every engine call and torch op of the tick runs on the engines' stream, after the work the
            # submitting threads queued (their noise and conditioning) and before their use of the results
            with on_stream(self._stream) as keep:
                active += [a for a in (self._start(p) for p in admitted) if a is not None]
                self._holding = [a.pending for a in active]
                if not active:
                    continue
                try:
                    self.tick([a.run for a in active])
                except Exception as exc:  # an engine failure: every request of this tick gets the error
                    log.exception("step batcher: a tick failed")
                    for a in active:
                        _settle(a.pending.future, exception=exc)
                    active = []
                    continue
                # a request whose caller gave up (its future cancelled, e.g. a server's timeout) leaves at this
                # step boundary instead of running its remaining steps for nobody
                active = [a for a in active if not a.pending.future.cancelled()]
                rows = sum(a.run.rows for a in active)
                for a in active:
                    a.rows_seen.append(rows)
                for a in [a for a in active if a.run.done]:
                    active.remove(a)
                    finished.append((a, a.outcome(keep)))
            for a, outcome in finished:  # handed over once the caller's stream waits for the tick
                _settle(a.pending.future, result=outcome)

    def _admit(self, active_rows: int) -> list[_Pending]:
        """Waiting requests, first come first served, while their rows fit beside the active ones."""
        admitted = []
        while self._waiting and active_rows + self._waiting[0].rows <= self.rows_max:
            pending = self._waiting.popleft()
            if pending.future.cancelled():  # its caller gave up while it waited
                continue
            active_rows += pending.rows
            admitted.append(pending)
        return admitted

    def _start(self, pending: _Pending) -> _Active | None:
        k = pending.kwargs
        if pending.inputs_ready is not None:
            pending.inputs_ready.wait()  # the engines' stream (current here) after the submitter's stream
        try:
            run = Trajectory(self.model, k["cond"], k["noise"], num_steps=k["steps"],
                             guidance_scale=k["guidance_scale"], negative_cond=k["negative_cond"],
                             policy=self.make_policy(k["cache"]))
        except Exception as exc:  # this request's own fault: the others go on
            _settle(pending.future, exception=exc)
            return None
        return _Active(pending, run, started=time.perf_counter())

    def tick(self, runs: list[Trajectory]) -> None:
        """One step of every trajectory (runtime/step.py, the only step); those at a full step share one block-stack
        call."""
        steps = [StepInput(run.policy, run.head(), run.step_index, run.num_steps, run.times[run.step_index], run.rows)
                 for run in runs]
        for run, out in zip(runs, cached_forward_many(self.model.parts, steps, self._concat)):
            run.finish(out)
        self.ticks += 1

    def _concat(self, steps: list[tuple[int, Tensors]]) -> Tensors:
        """One block-stack input from several trajectories' (rows, step tensors): batched inputs concatenated
        along rows, shared ones (no batch axis) taken once. Metadata keys ("_...") are not block inputs."""
        if len(steps) == 1:
            return steps[0][1]
        out = {}
        for name in self.model.family.BLOCK_INPUTS:
            tensors = [s[name] for _, s in steps]
            if self._shared is not None:
                batched = name not in self._shared
            else:  # torch parts: a per-row input has the trajectory's rows first (RoPE tables: tokens first)
                batched = all(t.shape[0] == rows for t, (rows, _) in zip(tensors, steps))
            out[name] = torch.cat(tensors) if batched else tensors[0]
        return out


@dataclass(eq=False)
class _Active:
    pending: _Pending
    run: Trajectory
    started: float
    rows_seen: list[int] = field(default_factory=list)

    def outcome(self, keep) -> StepBatchResult:
        """The finished request's result; ``keep`` (streams.on_stream's) marks its latents as used by the caller."""
        done = time.perf_counter()
        result = self.run.result()
        keep(result.latents)
        ready = None
        if self.pending.inputs_ready is not None:  # on a GPU: the current stream is the engines'
            ready = torch.cuda.Event()
            ready.record()
        return StepBatchResult(result, queue_s=self.started - self.pending.submitted, compute_s=done - self.started,
                               mean_rows=sum(self.rows_seen) / max(1, len(self.rows_seen)), ready=ready)


def _settle(future: Future, result=None, exception: BaseException | None = None) -> None:
    """Hand a request its outcome, unless its caller gave up (a cancelled future refuses any)."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled (or settled) already
        pass


def _shared_block_inputs(model: Model) -> frozenset[str] | None:
    """Block inputs without a batch axis, from an engine folder's manifest (its "batch" axes); None for torch
    parts, where ``_concat`` tells them by their first axis instead."""
    manifest = getattr(model.parts, "manifest", None)
    if manifest is None:
        return None
    return frozenset(i["name"] for i in manifest.parts["blocks"].inputs if not i["shape"] or i["shape"][0] != "batch")
