"""Run the demo: sample the shipped demo model (a small FLUX-architecture transformer trained by
this project) with each cache preset, time it against uncached sampling on the same backend, and
measure each image against the uncached image of the same seed. Writes results.json, samples.png
and speed_vs_quality.png into the output folder."""

from __future__ import annotations

from pathlib import Path

import matplotlib  # noqa: F401  (the demo draws pictures: its absence disables just this command)

from .args import positive_int


def add_arguments(p) -> None:
    from ..bench.demo_run import DEFAULT_CACHES

    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out/)")
    p.add_argument("--caches", nargs="+", default=list(DEFAULT_CACHES),
                   help="cache specs, PRESET[:field=value,...] (default: %(default)s)")
    p.add_argument("--seeds", type=positive_int, default=16, help="samples per run, classes cycling (default 16)")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--repeats", type=positive_int, default=7, help="timed runs per cell; the median is reported")
    p.add_argument("--torch-only", action="store_true", help="skip the onnxruntime engines (no build)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8", "fp8"],
                   help="onnxruntime engine precisions (fp8: simulated on CPU, for its quality only)")


def run(args) -> int:
    import time

    from ..bench.demo_run import format_table, run_demo
    from ..bench.machine import describe
    from ..cache import parse_cache_spec
    from ..errors import ConfigError

    if args.steps < 2:
        raise ConfigError("--steps must be at least 2.")
    for spec in args.caches:
        parse_cache_spec(spec)  # a bad spec is one sentence before the engine builds
    start = time.perf_counter()
    results = run_demo(args.out, caches=tuple(args.caches), seeds=args.seeds, steps=args.steps,
                       repeats=args.repeats, engines=not args.torch_only, precisions=tuple(args.precisions))
    print(format_table(results))
    print(f"\nmachine: {describe(results['machine'])}")
    if results["lpips_note"]:
        print(results["lpips_note"])
    print(f"wrote {args.out}/results.json, samples.png, speed_vs_quality.png in {time.perf_counter() - start:.0f} s")
    return 0
