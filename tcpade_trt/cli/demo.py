"""Run the demo: sample the shipped demo model (a small FLUX-architecture transformer trained by
this project) with each cache preset, time it against uncached sampling on the same backend, and
measure each image against the uncached image of the same seed. Writes results.json, samples.png
and speed_vs_quality.png into the output folder.

By default quick (8 seeds, every class once, 3 timed rounds: a few minutes on 2 cores); --full is
the protocol of the committed figures (16 seeds, every class twice, 7 rounds)."""

from __future__ import annotations

from pathlib import Path

import matplotlib  # noqa: F401  (the demo draws pictures: its absence disables just this command)

from .args import positive_int


def add_arguments(p) -> None:
    from ..bench.demo_run import DEFAULT_CACHES

    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out/)")
    p.add_argument("--caches", nargs="+", default=list(DEFAULT_CACHES),
                   help="cache specs, PRESET[:field=value,...] (default: %(default)s)")
    p.add_argument("--full", action="store_true", help="the committed figures' protocol: 16 seeds, 7 timed rounds")
    p.add_argument("--seeds", type=positive_int, help="samples per run, classes cycling (default 8; --full 16)")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--repeats", type=positive_int,
                   help="timed rounds over every cell; the median is reported (default 3; --full 7)")
    p.add_argument("--torch-only", action="store_true", help="skip the onnxruntime engines (no build)")
    p.add_argument("--precisions", nargs="+", metavar="[BACKEND:]PRECISION",
                   help="engine variants: onnxruntime precisions (fp32, int8; fp8: simulated on CPU, for its quality "
                        "only) or BACKEND:PRECISION, e.g. openvino:fp32 (default: fp32, int8, and openvino:bf16 "
                        "where OpenVINO is installed and the CPU has bf16 kernels)")


def run(args) -> int:
    import time

    from ..bench.demo_run import FULL, QUICK, format_table, run_demo
    from ..bench.machine import describe
    from ..cache import cache_config
    from ..errors import ConfigError
    from ..paths import check_output_folder

    if args.steps < 2:
        raise ConfigError("--steps must be at least 2.")
    check_output_folder(args.out, "--out")
    for spec in args.caches:
        cache_config(spec)  # a bad spec is one sentence before the engine builds
    from ..bench.subjects import parse_variant

    for text in args.precisions or ():
        parse_variant(text)  # likewise an unknown backend or precision
    protocol = FULL if args.full else QUICK
    seeds = args.seeds or protocol["seeds"]
    repeats = args.repeats or protocol["repeats"]
    start = time.perf_counter()
    results = run_demo(args.out, caches=tuple(args.caches), seeds=seeds, steps=args.steps, repeats=repeats,
                       engines=not args.torch_only, precisions=tuple(args.precisions) if args.precisions else None)
    print(format_table(results))
    from ..bench.demo_run import QUALITY_FLOOR_DB, fastest_engines
    from ..cache import DEFAULT_CACHE

    best = fastest_engines(results, DEFAULT_CACHE)
    if best is not None:
        print(f"\nfastest engines on this machine whose images hold {QUALITY_FLOOR_DB:g} dB against torch FP32: "
              f"{best['backend']} {best['precision']} with {DEFAULT_CACHE} ({best['latency_s'] * 1000:.0f} ms for "
              f"{seeds} images, {best['speedup_vs_torch_fp32']:.2f}x eager torch FP32 uncached): build it with "
              f"`tcpade-trt build demo --backend {best['backend']} --precision {best['precision']} --out DIR`.")
    print(f"\nmachine: {describe(results['machine'])}; {seeds} seeds, median of {repeats} timed rounds. Speedups on "
          "a shared machine move by several percent from run to run (speedup_rounds in results.json shows the "
          "spread); the image quality does not.")
    if results["lpips_note"]:
        print(results["lpips_note"])
    print(f"wrote {args.out}/results.json, samples.png, speed_vs_quality.png in {time.perf_counter() - start:.0f} s")
    return 0
