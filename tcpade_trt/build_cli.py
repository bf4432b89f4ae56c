"""Build an engine folder from a model: ONNX export of prepare / head / blocks / tail / Padé, each
checked against torch, quantization of the block stack (int8, fp8), TensorRT plans (--backend
tensorrt), and a manifest that records shapes, precisions, versions and file hashes. Sizes are
latent sizes (FLUX and Wan: VAE latents, 1/8 of the image; the demo model: 16x16)."""

from __future__ import annotations

from pathlib import Path

# latent height, width, frames a build targets when none is given
DEFAULT_SHAPES = {
    "demo": (16, 16, 1), "tiny-flux": (8, 8, 1), "tiny-wan": (8, 8, 3), "tiny-dit": (8, 8, 1),
    "flux": (128, 128, 1),  # 1024 x 1024 images
    "wan": (60, 104, 21),  # 480 x 832, 81 frames
    "dit": (32, 32, 1),  # 256 x 256 images
}


def add_arguments(p) -> None:
    from .engines.build import BACKENDS, PRECISIONS

    p.add_argument("model", help="demo | tiny-flux | tiny-wan | tiny-dit | local diffusers folder")
    p.add_argument("--out", type=Path, required=True, help="engine folder to write (replaced atomically)")
    p.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="precision of the block stack")
    p.add_argument("--int8-mode", choices=("dynamic", "static"), default="dynamic",
                   help="onnxruntime INT8: dynamic (no calibration) or static QDQ calibrated on trajectories")
    p.add_argument("--height", type=int, help="latent height (default: per model)")
    p.add_argument("--width", type=int, help="latent width (default: per model)")
    p.add_argument("--frames", type=int, help="latent frames (Wan)")
    p.add_argument("--text-tokens", type=int, default=None, help="text sequence length (default: 8; demo: 4)")
    p.add_argument("--batch-min", type=int, default=1)
    p.add_argument("--batch-opt", type=int, default=1)
    p.add_argument("--batch-max", type=int, default=4, help="largest batch (CFG counts cond + uncond rows)")
    p.add_argument("--calibration-samples", type=int, default=8)
    p.add_argument("--no-ort-fusions", action="store_true",
                   help="onnxruntime: keep the exported standard ops instead of onnxruntime's fused GELU and "
                        "RMSNorm kernels (for folders run by onnxruntime's TensorRT execution provider)")
    p.add_argument("--opt-level", type=int, default=3, help="TensorRT builder optimization level 0-5")
    p.add_argument("--timing-cache", help="TensorRT timing cache file (read and updated)")
    p.add_argument("--refittable", action="store_true", help="TensorRT: refittable plans (weight swaps)")
    p.add_argument("--weight-streaming", action="store_true", help="TensorRT: stream block weights from host")


def build_options(args, model):
    from .engines.build import BuildOptions, TensorRTOptions
    from .export.parts import BuildShape

    key = args.model if args.model in DEFAULT_SHAPES else model.family
    h, w, f = DEFAULT_SHAPES[key]
    text = args.text_tokens or (4 if args.model == "demo" else 8)
    shape = BuildShape(height=args.height or h, width=args.width or w, frames=args.frames or f, text_tokens=text,
                       batch_min=args.batch_min, batch_opt=args.batch_opt, batch_max=args.batch_max)
    trt = TensorRTOptions(optimization_level=args.opt_level, timing_cache=args.timing_cache,
                          refittable=args.refittable, weight_streaming=args.weight_streaming)
    return BuildOptions(backend=args.backend, precision=args.precision, shape=shape, int8_mode=args.int8_mode,
                        calibration_samples=args.calibration_samples, tensorrt=trt,
                        ort_fusions=not args.no_ort_fusions)


def run(args) -> int:
    import time

    from .engines.build import build_engines
    from .models import load_model

    start = time.perf_counter()
    model = load_model(args.model)
    options = build_options(args, model)
    options.validate()
    print(f"building {args.backend} {args.precision} engines for {model.name} ({model.family}) -> {args.out}")
    manifest = build_engines(model, args.out, options)
    print(f"done in {time.perf_counter() - start:.0f} s: {len(manifest.parts)} engines, blocks check error "
          f"{manifest.parts['blocks'].check_error:.1e} (relative L2 vs torch). Inspect: tcpade-trt inspect {args.out}")
    return 0
