"""`tcpade-trt bench`: backends x precisions x caches x batch sizes on a model (default: the demo
model) or on given engine folders, plus diffusers' own hooks as independent peers.

Per batch, one measurement (matrix.py): every cell timed in the same round-robin (median of ``repeats``
rounds after a warm-up), so both speedups are medians of per-round paired ratios: against uncached on
the same backend and precision, and (x-torch) against eager torch FP32 uncached. Per cell also
throughput, full steps, peak memory, and PSNR / SSIM of every sample against the reference of the same
seed: eager torch FP32 uncached, or (engine folders only) the FP32 folder uncached, so quantization and
caching errors add up there.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

from tqdm.auto import tqdm

from ..cache import DEFAULT_CACHE, UNCACHED, compared_presets, with_reference
from ..engines import gpu, registry
from ..paths import write_text_atomic
from .machine import machine_info
from .matrix import COMPILED, compiled_torch_backend, engine_backend, measure, torch_backend
from .peers import PEERS, calibrate_magcache, run_peer
from .subjects import BenchSubject, demo_subject, engines_subject, model_subject

DEFAULT_CACHES = compared_presets()  # every method's compared presets (cache/methods/)


def peak_memory_mb() -> float:
    """Peak memory: CUDA allocations when on a GPU, else the process's peak resident set (which only
    grows over a run: read it as the high-water mark so far)."""
    peak = gpu.peak_allocated_bytes()
    if peak is not None:
        return peak / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_subject(out: Path, model: str = "demo", engines: list[Path] | None = None, batches=(1, 2, 4, 8),
                  precisions=("fp32", "int8"), progress: bool = True) -> BenchSubject:
    """The model or engine folders to benchmark; engines for a model are built under out/engines."""
    if engines:
        return engines_subject(engines)
    if model == "demo":
        return demo_subject(out / "engines", max(batches), precisions, progress)
    return model_subject(model, out / "engines", batches, precisions, progress)


def run_bench(out: Path, batches=(1, 2, 4, 8), caches=DEFAULT_CACHES, peers=PEERS, precisions=("fp32", "int8"),
              steps: int = 20, repeats: int = 3, progress: bool = True, model: str = "demo",
              engines: list[Path] | None = None, compiled: tuple[str, ...] = ()) -> dict:
    """``compiled``: torch.compile peers of the torch model (matrix.COMPILED_PRECISIONS: fp32, bf16 autocast)."""
    from ..runtime.runtime import Runtime

    out.mkdir(parents=True, exist_ok=True)
    subject = bench_subject(out, model, engines, batches, precisions, progress)
    torch_model = subject.torch_model
    peers = tuple(peers) if torch_model is not None else ()
    caches = with_reference(caches)
    backends = [torch_backend(torch_model)] if torch_model is not None else []
    if torch_model is not None:  # the baseline a CPU user would pick, cached with the same policies
        backends += [compiled_torch_backend(torch_model, p) for p in compiled]
    order = sorted(subject.folders, key=lambda v: v != "fp32")  # FP32 first: the reference without torch
    backends += [engine_backend(Runtime(subject.folders[v], device="cpu")) for v in order]
    guidance = subject.guidance_scale
    bar = tqdm(total=len(batches) * (len(backends) * len(caches) + len(peers)) * (repeats + 1), desc="bench",
               disable=not progress)
    runs = []
    for batch in batches:
        cond, noise = subject.inputs(batch)
        peer_runs = {}
        if peers:
            ratios = (calibrate_magcache(torch_model, cond, noise, steps, guidance)
                      if "diffusers-magcache" in peers else None)
            peer_runs = {peer: (lambda peer=peer: run_peer(torch_model, peer, cond, noise, steps, guidance,
                                                           mag_ratios=ratios)) for peer in peers}
        rows, _ = measure(backends, caches, cond, noise, steps, repeats, subject.quality_space,
                          guidance_scale=guidance, peers=peer_runs, tick=bar.update)
        for row in rows:
            row["peak_mem_mb"] = round(peak_memory_mb(), 1)
            if torch_model is None:
                row["speedup_vs_reference"] = None  # no eager torch: the x-torch column stays empty
        runs += rows
    bar.close()
    reference_name = "eager torch FP32 uncached" if torch_model is not None else f"{registry.DEFAULT} FP32 uncached"
    results = {"model": subject.name, "family": subject.family.name, "steps": steps, "repeats": repeats,
               "batches": list(batches), "guidance_scale": guidance, "reference": reference_name,
               "notes": subject.notes, "machine": machine_info(), "runs": runs}
    write_text_atomic(out / "bench.json", json.dumps(results, indent=1))
    write_text_atomic(out / "bench.md", markdown(results))
    _plots(out, results)
    return results


def markdown(results: dict) -> str:
    m = results["machine"]
    kind = "image" if results.get("model", "demo") == "demo" else "sample's final latents"
    reference = results.get("reference", "eager torch FP32 uncached")
    small = "" if results.get("model", "demo") == "demo" else " (SSIM: - where the latents are under 11 pixels a side)"
    lines = [
        f"# Benchmarks: caching x quantization on the {_model_title(results)}",
        "",
        f"Generated by `tcpade-trt bench` ({results['steps']} steps, median of {results['repeats']} runs after a "
        f"warm-up, round-robin) on {m['cpu']} ({', '.join(m.get('cpu_features', [])) or 'features unknown'}), "
        f"{m['cores']} cores, torch {m['torch']}"
        + "".join(f", {name} {m[name]}" for name in registry.names() if name in m) + ".",
        f"Quality: PSNR / SSIM of every {kind} against the {reference} {kind} of the same seed{small}.",
        "Speedup: against uncached on the same backend and precision; x-torch: against eager torch FP32 uncached at "
        "the same batch; both the median over rounds of the ratio within a round (every cell of a batch runs in "
        "each round, seconds apart). Latencies on a shared VM drift 10-30% from round to round, so compare cells "
        "within a table, not across tables or runs. Peak memory on CPU is the process's high-water mark so far.",
        *(f"Note: {n}." for n in results.get("notes", [])),
        "",
    ]
    for batch in results["batches"]:
        lines += [f"## batch {batch}", "",
                  "| backend | precision | cache | full steps | latency / image | img/s | speedup | x-torch | PSNR dB "
                  "| SSIM | peak MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in results["runs"] if r["batch"] == batch):
            p = "ref" if r["psnr_vs_reference_db"] is None else f"{r['psnr_vs_reference_db']:.2f}"
            x_torch = "-" if r["speedup_vs_reference"] is None else f"{r['speedup_vs_reference']:.2f}x"
            q = "-" if r["ssim_vs_reference"] is None else f"{r['ssim_vs_reference']:.3f}"
            lines.append(f"| {r['backend']} | {r['precision']} | {r['cache']} | {r['full_steps']} | "
                         f"{r['latency_per_image_s'] * 1000:.1f} ms | {r['throughput_img_s']:.1f} | "
                         f"{r['speedup']:.2f}x | {x_torch} | {p} | {q} | {r['peak_mem_mb']:.0f} |")
        lines.append("")
    pictures = ["![speed vs quality](speed_vs_quality.png)", "", "![throughput](throughput.png)", ""]
    if all(r["speedup_vs_reference"] is None for r in results["runs"]):  # engine folders only
        return "\n".join([*lines, *pictures])
    lines += _orthogonal_speedups(results)
    lines += _against_compiled(results)
    return "\n".join([*lines, "", *pictures])


QUALITY_FLOOR_DB = 40.0  # "equal quality": at least this PSNR against the reference (eager torch FP32 uncached)


def _against_compiled(results: dict) -> list[str]:
    """Whether the fastest engine variant beats torch.compile with bf16 autocast, uncached and with the default
    cache, at each batch, counting only cells whose images hold QUALITY_FLOOR_DB against the reference."""
    lines = []
    engines = set(registry.names())
    for cache in (UNCACHED, DEFAULT_CACHE):
        for batch in results["batches"]:
            rows = [r for r in results["runs"] if r["batch"] == batch and r["cache"] == cache]
            peer = next((r for r in rows if r["backend"] == COMPILED and r["precision"] == "bf16"), None)
            held = [r for r in rows if r["backend"] in engines
                    and (r["psnr_vs_reference_db"] or 0) >= QUALITY_FLOOR_DB]
            if peer is None or not held:
                continue
            best = min(held, key=lambda r: r["latency_per_image_s"])
            ratio = peer["latency_per_image_s"] / best["latency_per_image_s"]
            verdict = "beats" if ratio > 1 else "does not beat"
            lines.append(f"- Target, batch {batch}, cache {cache}: the fastest engine variant at >= "
                         f"{QUALITY_FLOOR_DB:g} dB ({best['backend']} {best['precision']}, "
                         f"{best['latency_per_image_s'] * 1000:.1f} ms / image) {verdict} torch.compile bf16 "
                         f"({peer['latency_per_image_s'] * 1000:.1f} ms, {peer['psnr_vs_reference_db']:.1f} dB): "
                         f"{ratio:.2f}x.")
    return ["", *lines] if lines else []


# The project's CPU targets for INT8 + tcpade-fast, per image: (reference, at least this speedup).
CPU_TARGETS = ((f"{registry.DEFAULT} FP32 uncached", 4.0), ("eager torch FP32 uncached", 5.0))


def _orthogonal_speedups(results: dict) -> list[str]:
    """INT8 alone, tcpade-fast alone and both against each uncached FP32 reference at the same batch
    (ratios of median latencies per image), then whether CPU_TARGETS hold at each batch."""
    lines = ["## Orthogonal speedups (same batch, ratios of median latencies per image)", "",
             f"| batch | against | INT8 alone | {DEFAULT_CACHE} alone (FP32) | INT8 + {DEFAULT_CACHE} | PSNR of both |",
             "|---|---|---|---|---|---|"]
    both_speedup = {name: {} for name, _ in CPU_TARGETS}  # reference -> batch -> INT8 + tcpade-fast speedup
    int8_alone = {}  # batch -> INT8 uncached against the default backend's FP32 uncached
    for batch in results["batches"]:
        cell = {(r["backend"], r["precision"], r["cache"]): r for r in results["runs"] if r["batch"] == batch}
        int8, fast, both = (cell.get((registry.DEFAULT, p, c)) for p, c in
                            (("int8", UNCACHED), ("fp32", DEFAULT_CACHE), ("int8", DEFAULT_CACHE)))
        references = {f"{registry.DEFAULT} FP32 uncached": cell.get((registry.DEFAULT, "fp32", UNCACHED)),
                      "eager torch FP32 uncached": cell.get(("torch", "fp32", UNCACHED))}
        for name, ref in references.items():
            if not (ref and int8 and fast and both):
                continue
            a, b, c = (ref["latency_per_image_s"] / r["latency_per_image_s"] for r in (int8, fast, both))
            both_speedup[name][batch] = c
            if name.startswith(registry.DEFAULT):
                int8_alone[batch] = a
            quality = both["psnr_vs_reference_db"]
            lines.append(f"| {batch} | {name} | {a:.2f}x | {b:.2f}x | {c:.2f}x | {quality:.2f} dB |")
    lines.append("")
    for name, goal in CPU_TARGETS:
        by_batch = both_speedup[name]
        if by_batch:
            missed = [f"{b} ({x:.2f}x)" for b, x in by_batch.items() if x < goal]
            verdict = "met at every batch" if not missed else "not met at batch " + ", ".join(missed)
            lines.append(f"- Target: INT8 + tcpade-fast at least {goal:g}x faster per image than {name}: {verdict}; "
                         f"{min(by_batch.values()):.2f}-{max(by_batch.values()):.2f}x over batches "
                         f"{', '.join(map(str, by_batch))}.")
    if int8_alone:
        batch = max(int8_alone)
        verdict = "met" if int8_alone[batch] >= INT8_TARGET else "not met"
        exact = ("this CPU multiplies INT8 exactly in hardware (VNNI / AMX)" if results["machine"].get("int8_vnni")
                 else "this CPU has no VNNI / AMX: INT8 products run on AVX2, exact through 7-bit weights")
        lines.append(f"- Target: INT8 alone at least {INT8_TARGET:g}x faster than {registry.DEFAULT} FP32 at batch "
                     f"{batch}: {verdict} ({int8_alone[batch]:.2f}x; {exact}).")
    return lines


INT8_TARGET = 1.6  # INT8 uncached against FP32 uncached, at the largest batch (issue 25)


def _plots(out: Path, results: dict) -> None:
    from .plots import speed_vs_quality, throughput_vs_batch

    largest = max(results["batches"])
    speed_vs_quality([r for r in results["runs"] if r["batch"] == largest], out / "speed_vs_quality.png",
                     f"{_model_title(results)}, batch {largest}, {results['steps']} steps")
    throughput_vs_batch(results["runs"], out / "throughput.png")


def _model_title(results: dict) -> str:
    name = results.get("model", "demo")
    return "demo model" if name == "demo" else f"{name} ({results['family']})"

