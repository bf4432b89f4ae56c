"""The one measurement behind `tcpade-trt demo` and `tcpade-trt bench`: backends x cache specs (and
diffusers' hooks as peers) on one batch, timed in one round-robin, each result scored twice.

Every cell runs once untimed (its result is the one scored), then ``repeats`` timed rounds go over all
cells in turn (timing.py), so each speedup is the median of per-round ratios of two runs seconds
apart: against uncached on the same backend (what caching buys) and against the reference backend's
uncached run (the first backend given: eager torch FP32 when present; what caching and quantization
buy together). For the reference backend the two are the same number. Quality likewise: PSNR / SSIM
against the same backend's uncached output, and against the reference's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..cache import UNCACHED, with_reference
from ..metrics import psnr, ssim
from ..runtime.sampler import SampleResult
from .timing import round_robin

SSIM_WINDOW = 11  # SSIM needs at least this many pixels per side
PEER_BACKEND = "diffusers-hook"


@dataclass
class Backend:
    """A way to sample a model: eager torch or an engine folder's runtime, at one precision."""

    name: str  # "torch", or the engine folder's backend
    precision: str
    run: Callable[..., SampleResult]  # (cond, noise, cache_spec, steps, guidance_scale) -> SampleResult
    synchronize: Callable[[], None] = lambda: None  # the host waits for its device's queued work


def torch_backend(model) -> Backend:
    from ..cache import make_policy
    from ..runtime.sampler import sample

    def run(cond, noise, spec, steps, guidance):
        policy = make_policy(spec, calibrated=model.calibrated)  # the model's calibrated schedules, as engines have
        return sample(model, cond, noise, num_steps=steps, guidance_scale=guidance, policy=policy)

    return Backend("torch", "fp32", run, model.synchronize)


COMPILED = "torch.compile"  # the backend name of the compiled peers
COMPILED_PRECISIONS = ("fp32", "bf16")  # bf16: autocast around the compiled block stack, as a CPU user would


def compiled_torch_backend(model, precision: str) -> Backend:
    """The baseline a CPU user would pick: the model's block stack under torch.compile (inductor), in fp32 or with
    bf16 autocast (runtime/compiled.py), cached with the same policies. Compiled once per input shape, on the
    matrix's untimed first run of each cell."""
    from ..cache import make_policy
    from ..runtime.compiled import AUTOCAST, compiled_blocks
    from ..runtime.sampler import sample

    if precision not in COMPILED_PRECISIONS:
        raise ValueError(f"torch.compile peers run in {', '.join(COMPILED_PRECISIONS)} (got {precision!r}).")
    compiled_model = compiled_blocks(model, autocast=AUTOCAST[precision])

    def run(cond, noise, spec, steps, guidance):
        policy = make_policy(spec, calibrated=model.calibrated)
        return sample(compiled_model, cond, noise, num_steps=steps, guidance_scale=guidance, policy=policy)

    return Backend(COMPILED, precision, run, model.synchronize)


def engine_backend(runtime) -> Backend:
    """An engine folder's runtime, named by its backend and precision (its manifest's)."""
    manifest = runtime.manifest
    return Backend(manifest.backend, manifest.precision, lambda cond, noise, spec, steps, guidance: runtime.generate(
        cond, noise, cache=spec, steps=steps, guidance_scale=guidance), runtime.synchronize)


def label(backend: str, precision: str, cache: str) -> str:
    return f"{backend} {precision} {cache}"


def measure(backends: list[Backend], caches: tuple[str, ...], cond, noise, steps: int, repeats: int,
            to_images: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], guidance_scale: float | None = None,
            peers: dict[str, Callable[[], SampleResult]] | None = None, tick: Callable[[], None] = lambda: None,
            synchronize: Callable[[], None] | None = None) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Rows (one per cell, see the module docstring) and each cell's images.

    to_images(latents, reference latents) -> [B, C, H, W] in about [0, 1] (quality is measured there).
    peers: name -> a run of one of diffusers' hooks on the reference model (scored against the reference).
    """
    caches = with_reference(caches)
    cells: dict[str, tuple[str, str, str]] = {}
    runs: dict[str, Callable[[], SampleResult]] = {}
    for b in backends:
        for spec in caches:
            key = label(b.name, b.precision, spec)
            cells[key] = (b.name, b.precision, spec)
            runs[key] = lambda b=b, spec=spec: b.run(cond, noise, spec, steps, guidance_scale)
    for name, run in (peers or {}).items():
        key = label(PEER_BACKEND, "fp32", name)
        cells[key], runs[key] = (PEER_BACKEND, "fp32", name), run
    if synchronize is None:  # every backend's device (eager torch and engines may sit on different streams)
        synchronize = lambda: [b.synchronize() for b in backends]
    results, timings = round_robin(runs, repeats, tick, synchronize)
    reference = label(backends[0].name, backends[0].precision, UNCACHED)
    reference_latents = results[reference].latents
    images = {key: to_images(r.latents, reference_latents) for key, r in results.items()}
    rows = []
    for key, (backend, precision, spec) in cells.items():
        own = reference if backend == PEER_BACKEND else label(backend, precision, UNCACHED)
        latency, batch = timings.median(key), noise.shape[0]
        rows.append({
            "backend": backend, "precision": precision, "cache": spec, "batch": batch, "steps": steps,
            "full_steps": results[key].full_steps, "latency_s": latency, "latency_per_image_s": latency / batch,
            "throughput_img_s": batch / latency,
            "speedup": timings.speedup(own, key),
            "speedup_rounds": [round(x, 3) for x in timings.round_ratios(own, key)],
            "speedup_vs_reference": timings.speedup(reference, key),
            "psnr_db": None if key == own else _mean_psnr(images[key], images[own]),
            "psnr_vs_reference_db": None if key == reference else _mean_psnr(images[key], images[reference]),
            "ssim": _mean_ssim(images[key], images[own]),
            "ssim_vs_reference": _mean_ssim(images[key], images[reference]),
            "decisions": "".join("F" if d else "." for d in results[key].decisions),
        })
    return rows, images


def _mean_psnr(images: torch.Tensor, reference: torch.Tensor) -> float | None:
    """Mean PSNR over the samples (identical samples count as 100 dB); None when all are identical."""
    values = psnr(images, reference)
    return None if torch.isinf(values).all() else float(values.clamp(max=100).mean())


def _mean_ssim(images: torch.Tensor, reference: torch.Tensor) -> float | None:
    if min(images.shape[-2:]) < SSIM_WINDOW:
        return None  # e.g. 8x8 latents: smaller than SSIM's window
    return float(ssim(images, reference).mean())
