"""The demo: every cache preset on the shipped demo model, on torch and on onnxruntime engines (FP32 and
INT8), timed and compared with uncached, in one measurement (matrix.py).

Stage 1 builds the engine folders (or reuses valid ones for the same weights). Then all backends x
cache specs run once untimed and ``repeats`` timed rounds round-robin; speedup = median of the per-round
ratios to uncached on the same backend (and, "vs torch fp32", to eager torch FP32 uncached: for the
torch rows the same number). Quality = PSNR / SSIM of each image against the uncached image of the same
seed on the same backend, and PSNR against the torch FP32 uncached image (what quantization costs).

The default is quick (8 seeds, every class once; 3 timed rounds: a few minutes on 2 cores); ``full``
is the protocol of the committed figures (16 seeds, every class twice; 7 rounds).
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from ..cache import UNCACHED, compared_presets, with_reference
from ..metrics import lpips_metric, psnr
from ..models.demo import CLASSES
from ..paths import write_text_atomic
from .machine import machine_info
from .matrix import engine_backend, label, measure, torch_backend
from .subjects import demo_subject

DEFAULT_CACHES = compared_presets()  # every method's compared presets (cache/methods/)
QUICK = {"seeds": 8, "repeats": 3}
FULL = {"seeds": 16, "repeats": 7}


def run_demo(out: Path, caches=DEFAULT_CACHES, seeds: int = QUICK["seeds"], steps: int = 20,
             repeats: int = QUICK["repeats"], progress: bool = True, engines: bool = True,
             precisions: tuple[str, ...] | None = None) -> dict:
    """``precisions``: engine variants (bench/subjects.variant; default: ``default_variants()``)."""
    from ..runtime.runtime import Runtime

    out.mkdir(parents=True, exist_ok=True)
    precisions = default_variants() if precisions is None else precisions
    subject = demo_subject(out / "engines", seeds, precisions if engines else (), progress)
    model = subject.torch_model
    cond, noise = subject.inputs(seeds)
    backends = [torch_backend(model)]
    if engines:
        backends += [engine_backend(Runtime(folder)) for folder in subject.folders.values()]
    caches = with_reference(caches)
    bar = tqdm(total=len(backends) * len(caches) * (repeats + 1), desc="sampling", disable=not progress)
    runs, images = measure(backends, caches, cond, noise, steps, repeats, subject.quality_space, tick=bar.update)
    bar.close()
    lpips, lpips_note = lpips_metric()
    for run in runs:
        own = images[label(run["backend"], run["precision"], UNCACHED)]
        this = images[label(run["backend"], run["precision"], run["cache"])]
        run["seeds"] = seeds
        run["lpips"] = float(lpips(this, own).mean()) if lpips else None
        run["psnr_db_min"] = None if run["psnr_db"] is None else float(psnr(this, own).min())
        run["psnr_vs_fp32_db"] = run.pop("psnr_vs_reference_db")
        run["speedup_vs_torch_fp32"] = run.pop("speedup_vs_reference")
    labels = [i % len(CLASSES) for i in range(seeds)]  # the classes subject.inputs() cycles through
    results = {"model": "demo", "classes": list(CLASSES), "labels": labels, "steps": steps, "repeats": repeats,
               "machine": machine_info(), "lpips_note": lpips_note, "runs": runs}
    write_text_atomic(out / "results.json", json.dumps(results, indent=1))
    _pictures(out, results, images)
    return results


def _pictures(out: Path, results: dict, images: dict) -> None:
    from .plots import sample_grid, speed_vs_quality

    rows, notes = {}, {}
    for run in results["runs"]:
        key = label(run["backend"], run["precision"], run["cache"])
        rows[key] = images[key]
        if run["cache"] != UNCACHED:
            own = images[label(run["backend"], run["precision"], UNCACHED)]
            notes[key] = ["identical" if v == float("inf") else f"{v:.1f} dB" for v in psnr(images[key], own).tolist()]
    titles = [f"seed {i}\n{results['classes'][c]}" for i, c in enumerate(results["labels"])]
    sample_grid(rows, out / "samples.png", titles, notes)
    speed_vs_quality(results["runs"], out / "speed_vs_quality.png",
                     f"demo model, {results['steps']} steps, {len(results['labels'])} seeds")


QUALITY_FLOOR_DB = 40.0  # an engine variant "holds" when its uncached images are this close to torch FP32's


def default_variants() -> tuple[str, ...]:
    """The engine variants the demo builds: onnxruntime FP32 and INT8, and every other installed CPU backend's
    variant that is expected to be fast on this CPU (OpenVINO bf16 where the CPU has bf16 kernels)."""
    from ..engines import registry
    from .subjects import variant

    extra = [variant(b.name, p) for b in registry.backends().values()
             if b.name != registry.DEFAULT and not b.runs_on_gpu and b.available() for p in b.promising_here()]
    return ("fp32", "int8", *extra)


def fastest_engines(results: dict, cache: str) -> dict | None:
    """The engine variant with the lowest latency at ``cache`` among those whose uncached images hold
    QUALITY_FLOOR_DB against torch FP32 (the demo's answer to "what should this machine run")."""
    runs = results["runs"]
    held = {(r["backend"], r["precision"]) for r in runs if r["cache"] == UNCACHED and r["backend"] != "torch"
            and (r["psnr_vs_fp32_db"] or 0) >= QUALITY_FLOOR_DB}
    candidates = [r for r in runs if r["cache"] == cache and (r["backend"], r["precision"]) in held]
    return min(candidates, key=lambda r: r["latency_s"], default=None)


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
