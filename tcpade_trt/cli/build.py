"""Build an engine folder from a model: ONNX export of prepare / head / blocks / tail / Padé, each
checked against torch, quantization of the block stack (int8, fp8), TensorRT plans (--backend
tensorrt), and a manifest that records shapes, precisions, versions and file hashes. Sizes are
latent sizes (FLUX and Wan: VAE latents, 1/8 of the image; the demo model: 16x16).

--out may be a new folder, an empty one, or an engine folder this tool wrote (it is replaced once
the new one is complete); anything else is refused unless --force, which never replaces the source
model's folder. Every option is checked before the export starts."""

from __future__ import annotations

import sys
from pathlib import Path

from .args import positive_int

# above this relative L2 of the quantized blocks against the model (builder/blocks_stage.QUANTIZATION_LIMIT refuses
# at 0.25 / 0.3), a build succeeds with a warning: its images may differ visibly
COSTLY_QUANTIZATION = 0.1


def add_arguments(p) -> None:
    from ..builder import BACKENDS, PRECISIONS

    p.add_argument("model", help="demo | tiny-flux | tiny-wan | tiny-dit | local diffusers folder")
    p.add_argument("--out", type=Path, required=True, help="engine folder to write (replaced atomically)")
    p.add_argument("--force", action="store_true",
                   help="replace --out even if it is not an engine folder this tool wrote (never the model's own)")
    from ..engines import registry

    p.add_argument("--backend", choices=BACKENDS, default=registry.DEFAULT,
                   help="what builds and runs the engines (engines/<backend>/): " + "; ".join(
                       f"{b.name}: {b.install}" for b in registry.backends().values()))
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="precision of the block stack")
    p.add_argument("--int8-mode", choices=("dynamic", "static"), default="dynamic",
                   help="onnxruntime INT8: dynamic (no calibration) or static QDQ calibrated on trajectories")
    p.add_argument("--height", type=positive_int, help="latent height (default: per model)")
    p.add_argument("--width", type=positive_int, help="latent width (default: per model)")
    p.add_argument("--frames", type=positive_int, help="latent frames (Wan)")
    p.add_argument("--text-tokens", type=positive_int, default=None,
                   help="text tokens the engines take (default: what the model's pipeline feeds its transformer: "
                        "FLUX.1-dev 512, schnell 256, Wan2.1 512, SD3 77+256; demo 4, tiny models 8)")
    p.add_argument("--batch-min", type=positive_int, default=1)
    p.add_argument("--batch-opt", type=positive_int, default=1)
    p.add_argument("--batch-max", type=positive_int, default=4, help="largest batch (CFG counts cond + uncond rows)")
    p.add_argument("--calibration-samples", type=positive_int, default=8,
                   help="trajectories the INT8 / FP8 recipes calibrate on (classes, or prompts through a pipeline "
                        "folder's text encoders)")
    p.add_argument("--calibration-steps", type=positive_int, default=20, help="denoising steps of each trajectory")
    p.add_argument("--reuse-onnx", type=Path, metavar="FOLDER",
                   help="take the ONNX export from this onnxruntime fp32 folder of the same model and shape instead "
                        "of exporting again (a quantized or TensorRT build after an fp32 one)")
    p.add_argument("--no-ort-fusions", action="store_true",
                   help="onnxruntime: keep the exported standard ops instead of onnxruntime's fused GELU and "
                        "RMSNorm kernels (for folders run by onnxruntime's TensorRT execution provider)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model is loaded, calibrated and exported: cuda loads it on the GPU in the blocks' "
                        "dtype (bf16 for bf16 / fp8 / int8, as NVIDIA's demo/Diffusion); auto (default): cuda for "
                        "--backend tensorrt on a machine with a GPU, else cpu")
    p.add_argument("--opt-level", type=int, choices=range(6), metavar="0-5", default=3,
                   help="TensorRT builder optimization level 0-5")
    p.add_argument("--timing-cache", help="TensorRT timing cache file (read and updated)")
    p.add_argument("--refittable", action="store_true", help="TensorRT: refittable plans (weight swaps)")
    p.add_argument("--weight-streaming", action="store_true", help="TensorRT: stream block weights from host")


def build_options(args, family):
    from ..builder import BuildOptions, TensorRTOptions
    from ..export.parts import BuildShape
    from ..models.registry import default_build_shape, default_text_tokens

    if args.frames not in (None, 1) and not family.video:
        from ..errors import ConfigError

        raise ConfigError(f"--frames is for video models (Wan); {args.model} makes images: leave it out.")
    h, w, f = default_build_shape(args.model, family)
    text = args.text_tokens if args.text_tokens is not None else default_text_tokens(args.model)
    shape = BuildShape(height=_given(args.height, h), width=_given(args.width, w), frames=_given(args.frames, f),
                       text_tokens=text, batch_min=args.batch_min, batch_opt=args.batch_opt,
                       batch_max=args.batch_max)
    trt = TensorRTOptions(optimization_level=args.opt_level, timing_cache=args.timing_cache,
                          refittable=args.refittable, weight_streaming=args.weight_streaming)
    return BuildOptions(backend=args.backend, precision=args.precision, shape=shape, int8_mode=args.int8_mode,
                        calibration_samples=args.calibration_samples, calibration_steps=args.calibration_steps,
                        tensorrt=trt,
                        ort_fusions=not args.no_ort_fusions, reuse_onnx_from=args.reuse_onnx, device=args.device)


def _given(value, default):
    return default if value is None else value


def run(args) -> int:
    import time

    from ..builder import build_engines
    from ..builder.output_folder import check_destination
    from ..models.registry import load_model, model_family

    start = time.perf_counter()
    family = model_family(args.model)  # reads a folder's config.json only: no weights loaded yet
    options = build_options(args, family)
    options.validate()
    check_destination(args.out, Path(args.model) if Path(args.model).exists() else None, args.force)
    from ..engines import registry

    registry.backend(options.backend).check_build_machine(options)  # e.g. TensorRT and a GPU, before the weights load
    from ..builder.device import check_fits, load_dtype, resolve_device, torch_device

    device = resolve_device(options.device, options.backend)
    model_path = Path(args.model) if Path(args.model).exists() else None
    check_fits(model_path, device, options.backend, options.precision, args.out)  # before the weights load
    model = load_model(args.model, device=torch_device(device), dtype=load_dtype(device, options.precision))
    options.validate_for(model)
    text = f", {options.shape.text_tokens} text tokens" if model.family.pipeline_class else ""
    print(f"building {args.backend} {args.precision} engines for {model.name} ({model.family.title}{text}) -> "
          f"{args.out}")
    manifest = build_engines(model, args.out, options, force=args.force)
    check = manifest.parts["blocks"].check_error
    checked = ("not checked here (checked when TensorRT builds the plan)" if check is None
               else f"{check:.1e} (relative L2 vs torch)")
    print(f"done in {time.perf_counter() - start:.0f} s: {len(manifest.parts)} engines, blocks check error "
          f"{checked}. Inspect: tcpade-trt inspect {args.out}")
    cost = (manifest.quantization or {}).get("quantization_error")
    if cost is not None and cost > COSTLY_QUANTIZATION:
        print(f"warning: the {options.precision} recipe changes the blocks' output by {cost:.1e} (relative L2); "
              f"images may be visibly worse than the model's: compare a few with `tcpade-trt generate` on an fp32 or "
              f"bf16 folder before serving this one.", file=sys.stderr)
    return 0
