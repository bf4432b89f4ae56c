"""How fast INT8 + TC-Padé would be on a wider demo model, before anyone spends hours training one.

    .venv/bin/python scripts/width_projection.py --heads 16 [--batches 1 2 4 8 16] [--repeats 5]

Builds onnxruntime FP32 and dynamic-INT8 engine folders (as `tcpade-trt build` does) for a
FluxTransformer2DModel with the demo model's config but ``--heads`` attention heads of 32 (width
32 x heads; the shipped demo model has 4), with seeded random weights, then times 20-step
generations of the demo's latent size round-robin (median of ``--repeats`` rounds after a warm-up):
eager torch FP32, the FP32 engines and the INT8 engines uncached, and the INT8 engines with
tcpade-fast. Printed per batch: INT8's gain over FP32 uncached and INT8 + tcpade-fast against FP32
uncached and against eager torch (the CPU targets of the benchmarks issue: 4x and 5x).

Random weights make this a measurement of speed only: kernel times do not depend on the weights'
values, and tcpade-fast's schedule is fixed (7 full steps of 20). Image quality needs the trained
model (`python -m research.train_demo --heads N`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch


def build_folders(heads: int, root: Path, batch_max: int) -> tuple[Path, Path, Path]:
    """(transformer folder, FP32 engine folder, INT8 engine folder) under ``root``."""
    from diffusers import FluxTransformer2DModel

    from tcpade_trt.builder import BuildOptions, build_engines
    from tcpade_trt.export.parts import BuildShape
    from tcpade_trt.models.demo import LATENT_SIZE, TEXT_TOKENS, demo_config

    torch.manual_seed(0)
    FluxTransformer2DModel(**demo_config(heads)).save_pretrained(root / "transformer")
    shape = BuildShape(height=LATENT_SIZE, width=LATENT_SIZE, text_tokens=TEXT_TOKENS, batch_opt=batch_max,
                       batch_max=batch_max)
    for precision in ("fp32", "int8"):
        build_engines(str(root / "transformer"), root / precision,
                      BuildOptions(precision=precision, shape=shape, pade_variants=("rational",)), progress=False)
    return root / "transformer", root / "fp32", root / "int8"


def time_batches(transformer: Path, fp32: Path, int8: Path, batches, repeats: int, steps: int = 20) -> list[dict]:
    """Median generation time of each case per batch, and the ratios the issue's targets name."""
    from diffusers import FluxTransformer2DModel

    from tcpade_trt.bench.timing import round_robin
    from tcpade_trt.models.registry import split_model
    from tcpade_trt.runtime.runtime import Runtime
    from tcpade_trt.runtime.sampler import initial_noise, sample

    runtimes = {"fp32": Runtime(fp32), "int8": Runtime(int8)}
    eager = split_model(FluxTransformer2DModel.from_pretrained(transformer).eval(), name=transformer.parent.name)
    s = runtimes["fp32"].manifest.shape
    rows = []
    for batch in batches:
        geometry = runtimes["fp32"].model.geometry_for(batch)
        cond = eager.family.example_cond(geometry, height=s["height"], width=s["width"],
                                         text_tokens=s["text_tokens"], generator=torch.Generator().manual_seed(0))
        noise = initial_noise(eager, geometry.shape, list(range(batch)))
        cases = {
            "torch_none": lambda: sample(eager, cond, noise, num_steps=steps),
            "fp32_none": lambda: runtimes["fp32"].generate(cond, noise, cache="none", steps=steps),
            "int8_none": lambda: runtimes["int8"].generate(cond, noise, cache="none", steps=steps),
            "int8_tcpade_fast": lambda: runtimes["int8"].generate(cond, noise, cache="tcpade-fast", steps=steps),
        }
        _, timings = round_robin(cases, repeats)  # warm-up, then rounds: every case sees the same machine state
        median = {name: timings.median(name) for name in cases}
        rows.append({"batch": batch, **{f"{k}_s": v for k, v in median.items()},
                     "int8_gain": median["fp32_none"] / median["int8_none"],
                     "vs_fp32": median["fp32_none"] / median["int8_tcpade_fast"],
                     "vs_torch": median["torch_none"] / median["int8_tcpade_fast"]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heads", type=int, default=16, help="attention heads of 32 (the demo model has 4)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    if args.heads < 1 or min(args.batches) < 1 or args.repeats < 1:
        p.error("--heads, --batches and --repeats must be at least 1.")
    with tempfile.TemporaryDirectory() as tmp:
        folders = build_folders(args.heads, Path(tmp), max(args.batches))
        rows = time_batches(*folders, args.batches, args.repeats)
    print(f"width {32 * args.heads} (random weights), 20 steps, onnxruntime on this CPU\n")
    print("| batch | INT8 vs FP32 uncached | INT8 + tcpade-fast vs FP32 uncached | vs eager torch uncached |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['int8_gain']:.2f}x | {r['vs_fp32']:.2f}x | {r['vs_torch']:.2f}x |")


if __name__ == "__main__":
    main()
