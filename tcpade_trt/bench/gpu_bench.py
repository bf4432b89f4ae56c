"""GPU benchmark: a FLUX.1-dev-size transformer (the published architecture, random weights built on
the device) at 1024x1024, 20 steps, batch 1, torch backend: eager and torch.compile in the model
dtype (bf16 on a GPU), and FP8 linears in the block stack - each with and without TC-Padé.
Reports per-step latency of full and predicted steps and end-to-end latency (median of repeats
after a warm-up, device synchronised before the clock is read), and on CUDA the host syncs of one
generation as torch's sync debug mode counts them (the runtime's budget: one per Padé fit, plus
what setting up a generation copies). ``config="tiny"`` runs the same
code on CPU in seconds (the test).

``engines``: engine folders built offline by `tcpade-trt build` (TensorRT plans where TensorRT is
installed, or onnxruntime folders) are timed in the same table, each on its own runtime at its
folder's resolution. Their weights are not the random ones here, so their rows carry no quality
figure (`tcpade-trt bench --engines` measures that against the folder's FP32 sibling).
"""

from __future__ import annotations

import copy
import logging
import statistics
import warnings

import torch

from ..cache import DEFAULT_CACHE, UNCACHED, make_policy
from ..models.families.flux import FluxFamily
from ..models.model import Model
from ..models.registry import split_model
from ..runtime.sampler import initial_noise, sample
from .fp8_linear import convert_blocks_to_fp8, fp8_matmul_supported
from .machine import machine_info
from .timing import round_robin

log = logging.getLogger(__name__)
FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
MODES = ("eager", "compile", "fp8")  # eager and compile run in the model dtype (bf16 on GPU)


def build(config: str, device: torch.device, dtype: torch.dtype):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    with torch.device(device):
        transformer = FluxTransformer2DModel(**(FLUX_DEV if config == "flux-dev" else FluxFamily.tiny_config))
    transformer = transformer.to(dtype).eval()
    return split_model(transformer, name=f"{config} (random weights)")


def prepare_mode(model, mode: str):
    """A copy of the model prepared for one mode (compile / FP8 conversion of the block stack)."""
    transformer = copy.deepcopy(model.transformer) if mode != "eager" else model.transformer
    m = Model(model.name, model.family, type(model.parts)(transformer, model.family))
    note = ""
    if mode == "fp8":
        converted = convert_blocks_to_fp8(transformer)
        note = f"{converted} linears in FP8" + ("" if fp8_matmul_supported(m.device) else " (simulated: no FP8 matmul)")
    if mode == "compile":
        for block in (*transformer.transformer_blocks, *transformer.single_transformer_blocks):
            block.compile()
        note = "torch.compile per block"
    return m, note


def count_sync_warnings(run) -> int:
    """How many "synchronizing CUDA operation" warnings ``run()`` raises (torch's sync debug mode
    warns once per call that makes the host wait for the device)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # repeated calls from the same line count every time
        run()
    return sum("synchronizing" in str(w.message) for w in caught)


def host_syncs(run, cache, device) -> int | None:
    """Host syncs in one generation with ``cache`` on CUDA (None elsewhere: nothing to wait for)."""
    if device.type != "cuda":
        return None
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        return count_sync_warnings(lambda: run(cache, None))
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def _time_caches(run, caches, steps: int, repeats: int, model, progress, label: str) -> list[dict]:
    """For each cache: a warm-up, one run with synchronised per-step times, ``repeats`` timed runs.
    ``run(cache, on_step)`` samples once and returns the SampleResult; the clock is read after ``model``'s
    device has finished (Model.synchronize: the engines' stream for engine folders)."""
    progress(f"{label}: warm-up and {repeats} timed rounds over {', '.join(caches)}")
    device = torch.device(model.device)
    results, timings = round_robin({cache: (lambda cache=cache: run(cache, None)) for cache in caches}, repeats,
                                   synchronize=model.synchronize)  # the warm-up round compiles, too
    rows = []
    for cache in caches:
        per_step = {True: [], False: []}
        # per-step times in a separate run: the sampler synchronises the device around each step it reports
        run(cache, lambda step, t, computed, seconds: per_step[computed].append(seconds))
        result = results[cache]
        rows.append({"mode": label, "cache": cache, "steps": steps, "full_steps": result.full_steps,
                     "latency_s": timings.median(cache),
                     "full_step_ms": 1000 * statistics.median(per_step[True]),
                     "predicted_step_ms": 1000 * statistics.median(per_step[False]) if per_step[False] else None,
                     "host_syncs": host_syncs(run, cache, device),
                     "latents": result.latents.float().cpu()})
        progress(f"{label} {cache}: {rows[-1]['latency_s']:.3f} s")
    return rows


@torch.no_grad()
def run_gpu_bench(config: str = "flux-dev", resolution: int = 1024, steps: int = 20, text_tokens: int = 512,
                  device: str = "cuda", dtype: torch.dtype = torch.bfloat16, modes=MODES,
                  caches=(UNCACHED, DEFAULT_CACHE), repeats: int = 3, progress=None, engines=()) -> dict:
    progress = progress or log.info
    device = torch.device(device)
    base = build(config, device, dtype)
    latent = resolution // 8  # VAE latents of a FLUX image
    geometry = base.family.geometry(1, latent, latent)
    cond = base.family.example_cond(geometry, height=latent, width=latent, text_tokens=text_tokens,
                                    generator=torch.Generator().manual_seed(0))
    noise = initial_noise(base, geometry.shape, [0])
    runs = []
    for mode in modes:
        model, note = prepare_mode(base, mode)
        run = lambda cache, on_step, model=model: sample(model, cond, noise, num_steps=steps,
                                                         policy=make_policy(cache), on_step=on_step)
        runs += [{**row, "note": note} for row in _time_caches(run, caches, steps, repeats, model, progress, mode)]
        del model, run  # frees a mode's converted or compiled copy before the next
    reference = runs[0]["latents"]
    for r in runs:
        latents = r.pop("latents")
        r["rel_l2_vs_first"] = float((latents - reference).norm() / reference.norm())
    for folder in engines:
        runs += _time_engines(folder, caches, steps, repeats, progress)
    first = runs[0]["latency_s"]
    for r in runs:
        r["speedup"] = first / r["latency_s"]
    return {"config": config, "resolution": resolution, "steps": steps, "text_tokens": text_tokens,
            "dtype": str(dtype), "machine": machine_info(), "runs": runs}


def _time_engines(folder, caches, steps: int, repeats: int, progress) -> list[dict]:
    """One engine folder on its runtime (TensorRT plans with CUDA-graph replay), at its own resolution."""
    from ..runtime.runtime import Runtime

    runtime = Runtime(folder, cuda_graphs=True) if _is_tensorrt(folder) else Runtime(folder)
    model, s = runtime.model, runtime.manifest.shape
    geometry = model.geometry_for(1)
    cond = model.family.example_cond(geometry, height=s["height"], width=s["width"], text_tokens=s["text_tokens"],
                                     generator=torch.Generator().manual_seed(0))
    noise = initial_noise(model, geometry.shape, [0])
    run = lambda cache, on_step: runtime.generate(cond, noise, cache=cache, steps=steps, on_step=on_step)
    m = runtime.manifest
    rows = _time_caches(run, caches, steps, repeats, model, progress, f"engines {m.backend} {m.precision}")
    note = f"{folder}: {m.model['name']}, latents {s['height']}x{s['width']}"
    for row in rows:
        del row["latents"]  # other weights than the rows above: no quality figure against them
        row.update(rel_l2_vs_first=None, note=note)
    return rows


def _is_tensorrt(folder) -> bool:
    """Whether the folder's engines were built for (and run on) a GPU (TensorRT plans)."""
    from ..engines import registry
    from ..engines.manifest import read_manifest

    return registry.of(read_manifest(folder, verify_hashes=False)).runs_on_gpu


def markdown(results: dict) -> str:
    m = results["machine"]
    where = m.get("gpu", m["cpu"])
    lines = [f"{results['config']} at {results['resolution']}x{results['resolution']}, {results['steps']} steps, "
             f"batch 1, {results['dtype']}, on {where}, torch {m['torch']}", "",
             "| mode | cache | full steps | end to end | speedup | full step | predicted step | host syncs "
             "| rel. L2 vs first | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        pred = "-" if r["predicted_step_ms"] is None else f"{r['predicted_step_ms']:.1f} ms"
        rel = "-" if r["rel_l2_vs_first"] is None else f"{r['rel_l2_vs_first']:.3f}"
        syncs = "-" if r.get("host_syncs") is None else str(r["host_syncs"])
        lines.append(f"| {r['mode']} | {r['cache']} | {r['full_steps']} | {r['latency_s']:.3f} s | {r['speedup']:.2f}x "
                     f"| {r['full_step_ms']:.1f} ms | {pred} | {syncs} | {rel} | {r['note']} |")
    return "\n".join(lines)
