"""The demo: every cache preset on the shipped demo model, on torch and on onnxruntime engines
(FP32 and INT8), timed and compared with uncached.

Stage 1 builds the engine folders (or reuses valid ones for the same weights). Then for each
backend x precision, for each cache spec: one untimed warm-up run, then ``repeats`` timed runs of
the whole batch (one seed per sample, classes cycling); latency = median, speedup = median
of the per-round ratios to uncached (see timing.py). Quality = PSNR / SSIM of
each image against the uncached image of the same seed on the same backend, and PSNR against the
torch FP32 uncached image (what quantization costs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..cache import parse_cache_spec
from ..models.base import SplitModel
from ..models.demo import CLASSES, DemoSplit, latents_to_images, load_demo_model
from ..runtime.sampler import initial_noise, sample
from .machine import machine_info
from .metrics import psnr, relative_l2, ssim, to_unit
from .timing import round_robin

DEFAULT_CACHES = ("none", "tcpade-slow", "tcpade-fast", "taylorseer", "teacache", "reuse")


@dataclass
class Backend:
    """A way to run a model's sampler: name, precision and the model (torch or engines)."""

    name: str
    precision: str
    model: object  # a SplitModel (eager torch) or a Runtime (engines)

    def run(self, cond, noise, cache_spec: str, steps: int, guidance_scale: float | None = None):
        if isinstance(self.model, SplitModel):
            return sample(self.model, cond, noise, num_steps=steps, guidance_scale=guidance_scale,
                          policy=parse_cache_spec(cache_spec).make_policy())
        return self.model.generate(cond, noise, cache=cache_spec, steps=steps, guidance_scale=guidance_scale)


def demo_engines(model: DemoSplit, folder: Path, seeds: int, progress: bool,
                 precisions: tuple[str, ...] = ("fp32", "int8")) -> dict[str, Path]:
    """onnxruntime folders for the demo model, one per precision (reused when valid for these weights).

    FP8 is an E4M3 QDQ graph that onnxruntime runs as simulated quantization: its quality is what a
    TensorRT FP8 build would give, its speed on CPU is meaningless (several times slower)."""
    from ..export.parts import BuildShape
    from .subjects import ensure_engines

    shape = BuildShape(height=16, width=16, text_tokens=4, batch_min=1, batch_opt=seeds, batch_max=max(seeds, 16))
    return ensure_engines(model, folder, "demo", shape, precisions, progress)


def run_demo(out: Path, caches=DEFAULT_CACHES, seeds: int = 16, steps: int = 20, repeats: int = 3,
             progress: bool = True, engines: bool = True, precisions: tuple[str, ...] = ("fp32", "int8")) -> dict:
    if "none" not in caches:
        caches = ("none", *caches)  # the reference every figure is measured against
    out.mkdir(parents=True, exist_ok=True)
    model = load_demo_model()
    labels = torch.arange(seeds) % len(CLASSES)
    with torch.no_grad():
        cond = model.class_cond(labels)
    noise = initial_noise(model, model.geometry_for(seeds).shape, list(range(seeds)))
    backends = [Backend("torch", "fp32", model)]
    if engines:
        from ..runtime.runtime import Runtime

        for precision, folder in demo_engines(model, out / "engines", seeds, progress, precisions).items():
            backends.append(Backend("onnxruntime", precision, Runtime(folder)))

    from .metrics import lpips_metric

    lpips, lpips_note = lpips_metric()
    runs, images, fp32_reference = [], {}, None
    bar = tqdm(total=len(backends) * len(caches) * (repeats + 1), desc="sampling", disable=not progress)
    for backend in backends:
        runs_by_spec = {spec: (lambda spec=spec: backend.run(cond, noise, spec, steps)) for spec in caches}
        results, timings = round_robin(runs_by_spec, repeats, bar.update)
        ref_latents = results["none"].latents
        ref_image = to_unit(latents_to_images(ref_latents))
        ref_latency = timings.median("none")
        if fp32_reference is None:
            fp32_reference = (ref_image, ref_latency)
        for spec in caches:
            result, latency = results[spec], timings.median(spec)
            image = to_unit(latents_to_images(result.latents))
            p = psnr(image, ref_image)
            runs.append({
                "backend": backend.name, "precision": backend.precision, "cache": spec, "steps": steps,
                "seeds": seeds, "full_steps": result.full_steps, "latency_s": latency,
                "latency_per_image_s": latency / seeds, "speedup": timings.speedup("none", spec),
                "speedup_rounds": [round(x, 3) for x in timings.round_ratios("none", spec)],
                "psnr_db": None if spec == "none" else float(p.mean()),
                "psnr_db_min": None if spec == "none" else float(p.min()),
                "ssim": float(ssim(image, ref_image).mean()),
                "lpips": float(lpips(image, ref_image).mean()) if lpips else None,
                "psnr_vs_fp32_db": _finite_mean(psnr(image, fp32_reference[0])),
                "speedup_vs_torch_fp32": fp32_reference[1] / latency,
                "rel_l2_latents": float(relative_l2(result.latents, ref_latents).mean()),
                "decisions": "".join("F" if d else "." for d in result.decisions),
            })
            images[f"{backend.name} {backend.precision} {spec}"] = image
    bar.close()
    results = {"model": "demo", "classes": list(CLASSES), "labels": labels.tolist(), "steps": steps,
               "repeats": repeats, "machine": machine_info(), "lpips_note": lpips_note, "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    _pictures(out, results, images)
    return results


def _finite_mean(values: torch.Tensor) -> float | None:
    """Mean PSNR; None when the images are identical (infinite PSNR)."""
    return None if torch.isinf(values).all() else float(values[torch.isfinite(values)].mean())


def _pictures(out: Path, results: dict, images: dict) -> None:
    from .plots import sample_grid, speed_vs_quality

    labels = results["labels"]
    notes = {}
    for run in results["runs"]:
        key = f"{run['backend']} {run['precision']} {run['cache']}"
        if run["cache"] != "none":
            ref = images[f"{run['backend']} {run['precision']} none"]
            notes[key] = ["identical" if v == float("inf") else f"{v:.1f} dB" for v in psnr(images[key], ref).tolist()]
    titles = [f"seed {i}\n{results['classes'][c]}" for i, c in enumerate(labels)]
    sample_grid(images, out / "samples.png", titles, notes)
    speed_vs_quality(results["runs"], out / "speed_vs_quality.png",
                     f"demo model, {results['steps']} steps, {len(labels)} seeds")


def format_table(results: dict) -> str:
    w = max(22, *(len(r["cache"]) + 2 for r in results["runs"]))
    head = (f"{'backend':<12}{'precision':<10}{'cache':<{w}}{'full steps':>11}{'speedup':>9}{'PSNR dB':>9}"
            f"{'SSIM':>7}{'vs torch fp32':>15}")
    lines = [head, "-" * len(head)]
    for r in results["runs"]:
        p = "ref" if r["psnr_db"] is None else f"{r['psnr_db']:.2f}"
        q = "ref" if r["psnr_vs_fp32_db"] is None else f"{r['psnr_vs_fp32_db']:.1f} dB"
        lines.append(f"{r['backend']:<12}{r['precision']:<10}{r['cache']:<{w}}{r['full_steps']:>11}"
                     f"{r['speedup']:>8.2f}x{p:>9}{r['ssim']:>7.3f}{r['speedup_vs_torch_fp32']:>6.2f}x {q:>8}")
    return "\n".join(lines)
