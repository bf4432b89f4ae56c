"""The demo: every cache preset on the shipped demo model, timed and compared with uncached.

For each backend x precision (torch fp32 until engines land), for each cache spec: one untimed
warm-up run, then ``repeats`` timed runs of the whole batch (one seed per sample, classes cycling);
latency = median. Quality = PSNR / SSIM of each image against the uncached image of the same
seed on the same backend.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..cache import parse_cache_spec
from ..models.demo import CLASSES, DemoSplit, latents_to_images, load_demo_model
from ..runtime.sampler import initial_noise, sample
from .machine import machine_info
from .metrics import psnr, relative_l2, ssim, to_unit

DEFAULT_CACHES = ("none", "tcpade-slow", "tcpade-fast", "taylorseer", "teacache", "reuse")


@dataclass
class Backend:
    """A way to run the demo model's sampler: name, precision and a sampling function."""

    name: str
    precision: str
    model: DemoSplit

    def run(self, cond, noise, cache_spec: str, steps: int):
        policy = parse_cache_spec(cache_spec).make_policy()
        return sample(self.model, cond, noise, num_steps=steps, policy=policy)


def torch_backend(model: DemoSplit) -> Backend:
    return Backend("torch", "fp32", model)


def run_demo(out: Path, caches=DEFAULT_CACHES, seeds: int = 16, steps: int = 20, repeats: int = 3,
             progress: bool = True) -> dict:
    if "none" not in caches:
        caches = ("none", *caches)  # the reference every figure is measured against
    out.mkdir(parents=True, exist_ok=True)
    model = load_demo_model()
    labels = torch.arange(seeds) % len(CLASSES)
    cond = model.class_cond(labels)
    noise = initial_noise(model, model.geometry_for(seeds).shape, list(range(seeds)))
    backends = [torch_backend(model)]

    runs, images = [], {}
    bar = tqdm(total=len(backends) * len(caches) * (repeats + 1), desc="sampling", disable=not progress)
    for backend in backends:
        reference = None
        for spec in caches:
            backend.run(cond, noise, spec, steps)  # warm-up, untimed
            bar.update()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                result = backend.run(cond, noise, spec, steps)
                times.append(time.perf_counter() - start)
                bar.update()
            image = to_unit(latents_to_images(result.latents))
            if spec == "none":
                reference = (result.latents, image, statistics.median(times))
            latency = statistics.median(times)
            p = psnr(image, reference[1])
            runs.append({
                "backend": backend.name, "precision": backend.precision, "cache": spec, "steps": steps,
                "seeds": seeds, "full_steps": result.full_steps, "latency_s": latency,
                "latency_per_image_s": latency / seeds, "speedup": reference[2] / latency,
                "psnr_db": None if spec == "none" else float(p.mean()),
                "psnr_db_min": None if spec == "none" else float(p.min()),
                "ssim": float(ssim(image, reference[1]).mean()),
                "rel_l2_latents": float(relative_l2(result.latents, reference[0]).mean()),
                "decisions": "".join("F" if d else "." for d in result.decisions),
            })
            images[f"{backend.name} {backend.precision} {spec}"] = image
    bar.close()
    results = {"model": "demo", "classes": list(CLASSES), "labels": labels.tolist(), "steps": steps,
               "repeats": repeats, "machine": machine_info(), "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    _pictures(out, results, images)
    return results


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
    head = f"{'backend':<12}{'precision':<10}{'cache':<28}{'full steps':>11}{'speedup':>9}{'PSNR dB':>9}{'SSIM':>7}"
    lines = [head, "-" * len(head)]
    for r in results["runs"]:
        p = "ref" if r["psnr_db"] is None else f"{r['psnr_db']:.2f}"
        lines.append(f"{r['backend']:<12}{r['precision']:<10}{r['cache']:<28}{r['full_steps']:>11}"
                     f"{r['speedup']:>8.2f}x{p:>9}{r['ssim']:>7.3f}")
    return "\n".join(lines)
