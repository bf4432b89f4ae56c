"""Benchmark a FLUX.1-dev-size transformer (random weights built on the device) at 1024x1024,
20 steps, batch 1 on CUDA: bf16 eager, bf16 + torch.compile, FP8 linears, each with and without
TC-Padé. `--config tiny --device cpu` runs the same code on CPU in seconds."""

from __future__ import annotations

import json
from pathlib import Path

from .args import positive_int


def add_arguments(p) -> None:
    from ..bench.gpu_bench import MODES
    from ..cache import DEFAULT_CACHE, UNCACHED

    p.add_argument("--config", choices=["flux-dev", "tiny"], default="flux-dev")
    p.add_argument("--device", default="cuda")
    p.add_argument("--resolution", type=positive_int, default=1024, help="image side in pixels (latents are 1/8)")
    p.add_argument("--text-tokens", type=positive_int, default=512)
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--caches", nargs="+", default=[UNCACHED, DEFAULT_CACHE])
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--engines", type=Path, nargs="*", default=[],
                   help="engine folders from `tcpade-trt build` to time too (TensorRT plans: needs TensorRT)")
    p.add_argument("--out", type=Path, default=Path("gpu-bench.json"))


def run(args) -> int:
    import torch

    from ..bench.gpu_bench import markdown, run_gpu_bench
    from ..cache import cache_config
    from ..engines import gpu
    from ..errors import ConfigError
    from ..paths import check_output_file, write_text_atomic

    for spec in args.caches:
        cache_config(spec)
    check_output_file(args.out, (".json",), "--out")
    if args.resolution % 16:  # latents are 1/8 of the image and FLUX packs them 2x2: a 1/16 grid
        raise ConfigError(f"--resolution must be a multiple of 16 pixels (got {args.resolution}), e.g. 1024.")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise ConfigError(f"--device must be cuda, cuda:N or cpu (got {args.device!r}).")
    if args.device.startswith("cuda") and not gpu.available():
        raise ConfigError("no CUDA GPU is visible; run on a GPU machine, or try `--config tiny --device cpu`.")
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    results = run_gpu_bench(args.config, args.resolution, args.steps, args.text_tokens, args.device, dtype,
                            tuple(args.modes), tuple(args.caches), args.repeats, engines=args.engines)
    write_text_atomic(args.out, json.dumps(results, indent=1))
    print(markdown(results))
    print(f"wrote {args.out}")
    return 0
