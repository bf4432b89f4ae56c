"""GPU benchmark: a FLUX.1-dev-size transformer (the published architecture, random weights built on
the device) at 1024x1024, 20 steps, batch 1, torch backend: eager and torch.compile in the model
dtype (bf16 on a GPU), and FP8 linears in the block stack - each with and without TC-Padé.
Reports per-step latency of full and predicted steps and end-to-end latency (median of repeats
after a warm-up, device synchronised before the clock is read). ``config="tiny"`` runs the same
code on CPU in seconds (the test).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from ..cache import make_policy
from ..models.example_inputs import example_cond
from ..models.registry import split_model
from ..runtime.sampler import initial_noise, sample
from .fp8_linear import convert_blocks_to_fp8, fp8_matmul_supported
from .machine import machine_info

FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
TINY = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=24, guidance_embeds=True,
            axes_dims_rope=(4, 6, 6))
MODES = ("eager", "compile", "fp8")  # eager and compile run in the model dtype (bf16 on GPU)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(config: str, device: torch.device, dtype: torch.dtype):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    with torch.device(device):
        transformer = FluxTransformer2DModel(**(FLUX_DEV if config == "flux-dev" else TINY)).to(dtype).eval()
    return split_model(transformer, name=f"{config} (random weights)")


def prepare_mode(model, mode: str):
    """A copy of the model prepared for one mode (compile / FP8 conversion of the block stack)."""
    m = copy.copy(model)
    m.transformer = copy.deepcopy(model.transformer) if mode != "eager" else model.transformer
    note = ""
    if mode == "fp8":
        converted = convert_blocks_to_fp8(m.transformer)
        note = f"{converted} linears in FP8" + ("" if fp8_matmul_supported(m.device) else " (simulated: no FP8 matmul)")
    if mode == "compile":
        for block in (*m.transformer.transformer_blocks, *m.transformer.single_transformer_blocks):
            block.compile()
        note = "torch.compile per block"
    return m, note


@torch.no_grad()
def run_gpu_bench(config: str = "flux-dev", resolution: int = 1024, steps: int = 20, text_tokens: int = 512,
                  device: str = "cuda", dtype: torch.dtype = torch.bfloat16, modes=MODES,
                  caches=("none", "tcpade-fast"), repeats: int = 3, progress=print) -> dict:
    device = torch.device(device)
    base = build(config, device, dtype)
    latent = resolution // 8  # VAE latents of a FLUX image
    geometry = base.geometry(1, latent, latent)
    cond = example_cond(base, geometry, height=latent, width=latent, text_tokens=text_tokens,
                        generator=torch.Generator().manual_seed(0))
    noise = initial_noise(base, geometry.shape, [0])
    runs, reference = [], None
    for mode in modes:
        model, note = prepare_mode(base, mode)
        for cache in caches:
            progress(f"{mode} {cache}: warm-up")
            sample(model, cond, noise, num_steps=steps, policy=make_policy(cache))  # warm-up (and compile)
            per_step = {True: [], False: []}

            def timed_step(step, t, computed, seconds, per_step=per_step):
                per_step[computed].append(seconds)

            _sync(device)  # per-step times: a synchronising callback, in a separate run
            sample(model, cond, noise, num_steps=steps, policy=make_policy(cache),
                   on_step=lambda *a: (_sync(device), timed_step(*a)))
            latencies = []
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                result = sample(model, cond, noise, num_steps=steps, policy=make_policy(cache))
                _sync(device)
                latencies.append(time.perf_counter() - start)
            latents = result.latents.float()
            if reference is None:
                reference = latents
            rel = float((latents - reference).norm() / reference.norm())
            runs.append({"mode": mode, "cache": cache, "steps": steps, "full_steps": result.full_steps,
                         "latency_s": statistics.median(latencies),
                         "full_step_ms": 1000 * statistics.median(per_step[True]),
                         "predicted_step_ms": 1000 * statistics.median(per_step[False]) if per_step[False] else None,
                         "rel_l2_vs_first": rel, "note": note})
            progress(f"{mode} {cache}: {runs[-1]['latency_s']:.3f} s")
        del model
    first = runs[0]["latency_s"]
    for r in runs:
        r["speedup"] = first / r["latency_s"]
    return {"config": config, "resolution": resolution, "steps": steps, "text_tokens": text_tokens,
            "dtype": str(dtype), "machine": machine_info(), "runs": runs}


def markdown(results: dict) -> str:
    m = results["machine"]
    where = m.get("gpu", m["cpu"])
    lines = [f"{results['config']} at {results['resolution']}x{results['resolution']}, {results['steps']} steps, "
             f"batch 1, {results['dtype']}, on {where}, torch {m['torch']}", "",
             "| mode | cache | full steps | end to end | speedup | full step | predicted step | rel. L2 vs first "
             "| note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        pred = "-" if r["predicted_step_ms"] is None else f"{r['predicted_step_ms']:.1f} ms"
        lines.append(f"| {r['mode']} | {r['cache']} | {r['full_steps']} | {r['latency_s']:.3f} s | {r['speedup']:.2f}x "
                     f"| {r['full_step_ms']:.1f} ms | {pred} | {r['rel_l2_vs_first']:.3f} | {r['note']} |")
    return "\n".join(lines)
