"""Benchmark caching x quantization: eager torch FP32 and engines (onnxruntime FP32, INT8; OpenVINO) x cache
presets x batch sizes, with diffusers' own cache hooks as independent peers, on a model (default:
the demo model; engines are built for it under OUT/engines) or on existing engine folders
(--engines). Writes bench.json, bench.md (the tables) and plots into the output folder."""

from __future__ import annotations

from pathlib import Path

import matplotlib  # noqa: F401  (plots: its absence disables just this command)

from .args import positive_int


def add_arguments(p) -> None:
    from ..bench.peers import PEERS
    from ..bench.runner import DEFAULT_CACHES

    p.add_argument("model", nargs="?", default="demo",
                   help="demo (default) | tiny-flux | tiny-wan | tiny-dit | local diffusers folder")
    p.add_argument("--engines", type=Path, nargs="+",
                   help="benchmark these onnxruntime engine folders of one model (one per precision) instead")
    p.add_argument("--out", type=Path, default=Path("bench-out"))
    p.add_argument("--batches", type=positive_int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--caches", nargs="+", default=list(DEFAULT_CACHES), help="cache specs (default: %(default)s)")
    p.add_argument("--peers", nargs="*", default=list(PEERS), help="diffusers hooks to compare (default: all)")
    p.add_argument("--precisions", nargs="*", default=["fp32", "int8"], metavar="[BACKEND:]PRECISION",
                   help="engine variants to build and time: a precision of the default backend (fp32, int8, fp8) or "
                        "BACKEND:PRECISION, e.g. openvino:fp32, openvino:bf16 (none: torch only)")
    p.add_argument("--compiled", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                   help="torch.compile peers of the model's block stack: fp32, bf16 (autocast); cached with the same "
                        "policies (none: leave them out; compiling takes a minute or two per batch size)")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--markdown", type=Path, help="also write the tables to this file (e.g. docs/benchmarks.md)")


def run(args) -> int:
    import time

    from ..bench.runner import run_bench
    from ..cache import cache_config
    from ..errors import ConfigError
    from ..paths import check_output_file, check_output_folder, write_text_atomic

    check_output_folder(args.out, "--out")  # before the minutes of builds and timing, not after
    if args.markdown:
        check_output_file(args.markdown, (".md",), "--markdown")
    if args.engines and args.model != "demo":
        raise ConfigError("give either a MODEL or --engines folders, not both.")
    if args.steps < 2:
        raise ConfigError("--steps must be at least 2.")
    for spec in args.caches:
        cache_config(spec)  # a bad spec is one sentence before the minutes of engine builds
    from ..bench.subjects import parse_variant

    for text in args.precisions:
        parse_variant(text)  # likewise an unknown backend or precision
    start = time.perf_counter()
    run_bench(args.out, batches=tuple(args.batches), caches=tuple(args.caches), peers=tuple(args.peers),
              precisions=tuple(args.precisions), steps=args.steps, repeats=args.repeats, model=args.model,
              engines=args.engines, compiled=tuple(args.compiled))
    print((args.out / "bench.md").read_text())
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        text = (args.out / "bench.md").read_text()
        rel = args.out.resolve().relative_to(args.markdown.parent.resolve()) if args.out.resolve().is_relative_to(
            args.markdown.parent.resolve()) else None
        if rel is not None:  # point the pictures at the output folder
            text = text.replace("](speed_vs_quality.png)", f"]({rel}/speed_vs_quality.png)").replace(
                "](throughput.png)", f"]({rel}/throughput.png)")
        write_text_atomic(args.markdown, text)
    print(f"wrote {args.out}/bench.json, bench.md, speed_vs_quality.png, throughput.png in "
          f"{time.perf_counter() - start:.0f} s")
    return 0
