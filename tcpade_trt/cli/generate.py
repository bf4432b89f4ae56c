"""Generate from an engine folder with a cache preset.

  demo model:   tcpade-trt generate --engines engines/demo --class astronaut --class rocket --out a.png
  DiT:          --class 207 --class 360 (ImageNet class indices)
  FLUX / Wan:   --prompt TEXT --pipeline DIR (a local diffusers pipeline folder: text encoders, VAE)
  otherwise:    random conditioning, and a preview of the latents' first three channels (no VAE)
Images are written as PNG (or JPEG / WebP by the extension), videos (Wan) as animated GIF. Every
option is checked before the generation starts."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from .args import SEED_MAX, finite_float, positive_int, seed

MAX_SCALE = 64  # the demo models' 32-pixel images become 2048 pixels a side: more is a memory error, not a picture


def add_arguments(p) -> None:
    from ..cache import DEFAULT_CACHE

    p.add_argument("--engines", type=Path, required=True, help="engine folder from `tcpade-trt build`")
    p.add_argument("--cache", default=DEFAULT_CACHE, help="cache spec: PRESET[:field=value,...] (default %(default)s)")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--seed", type=seed, default=0, help="seed of the first sample; sample i uses seed + i")
    p.add_argument("--out", default=None,
                   help="image file (default generated.png; generated.gif for video models)")
    p.add_argument("--class", dest="classes", action="append",
                   help="demo class name or index, or a DiT class index (repeatable)")
    p.add_argument("--prompt", help="text prompt (FLUX / Wan; needs --pipeline)")
    p.add_argument("--negative-prompt", default="", help="Wan: negative prompt for classifier-free guidance")
    p.add_argument("--pipeline", type=Path,
                   help="local diffusers pipeline folder: text encoders and VAE (prompts), or the VAE (DiT classes)")
    p.add_argument("--batch", type=positive_int, default=None, help="samples (default: one per --class, else 1)")
    p.add_argument("--guidance-scale", type=finite_float, default=None,
                   help="classifier-free guidance (Wan, DiT); FLUX.1-dev's embedded guidance (default 3.5)")
    p.add_argument("--scale", type=positive_int, default=8,
                   help=f"demo images: nearest-neighbour upscale factor (default 8, at most {MAX_SCALE})")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--verbose", action="store_true", help="print every step's decision and time")
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="generate this many times on the warm runtime and report the median of the runs after the "
                        "first (a serving process's steady state); the image is the last run's")
    p.add_argument("--cuda-graphs", action="store_true", help="TensorRT folders: replay each plan from a CUDA graph")
    p.add_argument("--weight-streaming-budget", metavar="BUDGET",
                   help="TensorRT folders built with --weight-streaming: how much of the block stack's weights stays "
                        "on the GPU, e.g. 40%% or 12GB; the rest streams from host memory each step")
    from ..engines import registry

    devices = list(dict.fromkeys(d for b in registry.backends().values() for d in b.devices))
    p.add_argument("--device", default="auto", choices=devices,
                   help="where the folder's engines run; onnxruntime folders: its execution provider (auto = CUDA "
                        "when onnxruntime-gpu sees a GPU); others take auto or their own device")


def run(args) -> int:
    from ..cache import cache_config
    from ..errors import ConfigError
    from ..paths import IMAGE_SUFFIXES, check_output_file
    from ..runtime.images import require_finite
    from ..runtime.runtime import Runtime
    from ..runtime.sampler import initial_noise

    if args.steps < 2:
        raise ConfigError("--steps must be at least 2.")
    cache = cache_config(args.cache)  # the one parse: a bad spec is one sentence before the engines load
    if args.scale > MAX_SCALE:
        raise ConfigError(f"--scale must be at most {MAX_SCALE} (got {args.scale}).")
    if args.out is not None:
        check_output_file(args.out, IMAGE_SUFFIXES, "--out", replace=args.force)
    runtime = Runtime(args.engines, device=args.device, cuda_graphs=args.cuda_graphs,
                      weight_streaming_budget=args.weight_streaming_budget)
    model = runtime.model
    video = model.family.video
    out = args.out if args.out is not None else Path("generated.gif" if video else "generated.png")
    check_output_file(out, (".gif",) if video else IMAGE_SUFFIXES, "--out (a video model's output is a GIF)"
                      if video else "--out", replace=args.force)
    conditioning = _conditioning(args, model)
    batch = conditioning.batch
    if args.seed + batch - 1 > SEED_MAX:
        raise ConfigError(f"--seed {args.seed} with {batch} samples passes 2**63 - 1 (sample i uses seed + i); "
                          "pick a smaller seed.")
    noise = initial_noise(model, model.geometry_for(batch).shape, [args.seed + i for i in range(batch)])

    def report(step, t, computed, seconds):
        print(f"  step {step:>3}  t={t:8.3f}  {'full     ' if computed else 'predicted'}  {seconds * 1000:7.1f} ms")

    print(f"{model.name}: {batch} sample(s), {args.steps} steps, cache {args.cache}, {runtime.manifest.precision} "
          f"{runtime.manifest.backend}")
    timings = []
    for run in range(args.repeats):
        last = run == args.repeats - 1
        start = time.perf_counter()
        result = runtime.generate(conditioning.cond, noise, cache=cache, steps=args.steps,
                                  guidance_scale=conditioning.guidance_scale,
                                  negative_cond=conditioning.negative_cond,
                                  progress=not args.verbose and args.repeats == 1,
                                  on_step=report if args.verbose and last else None)
        timings.append((time.perf_counter() - start, runtime.last_timing))
    require_finite(result.latents)
    path = conditioning.decode(result.latents, out)
    print(f"full steps {result.full_steps}/{args.steps}, {timings[-1][0]:.2f} s -> {path}")
    if args.verbose:
        t = timings[-1][1]
        overhead = t["total_s"] - t["engines_s"]
        print(f"time in engines {t['engines_s']:.3f} s of {t['total_s']:.3f} s; runtime overhead (scheduler, "
              f"policy, conversions, Python) {overhead:.3f} s = {100 * overhead / t['total_s']:.1f}%")
    if args.repeats > 1:
        warm = timings[1:]
        total = statistics.median(t["total_s"] for _, t in warm)
        share = statistics.median(1 - t["engines_s"] / t["total_s"] for _, t in warm)
        print(f"warm runtime, median of {len(warm)} runs after the first: {total:.3f} s per generation, runtime "
              f"overhead {100 * share:.1f}% (first run: {timings[0][0]:.3f} s)")
    return 0


class _Conditioning:
    def __init__(self, cond, decode, batch, guidance_scale=None, negative_cond=None):
        self.cond, self.decode, self.batch = cond, decode, batch
        self.guidance_scale, self.negative_cond = guidance_scale, negative_cond


def _conditioning(args, model) -> _Conditioning:
    """The folder's conditioning for --class / --prompt / nothing (runtime/model_io.ModelIO decides what the
    model takes and how its latents become pixels), checked before any generation."""
    from ..errors import ConfigError
    from ..runtime.model_io import ModelIO

    family = model.family
    if args.classes and args.batch is not None and len(args.classes) > args.batch:
        raise ConfigError(f"{len(args.classes)} --class values for --batch {args.batch}: give at most one per sample, "
                          "or leave --batch out (one sample per --class).")
    io = ModelIO(model)  # what the model takes, before any pipeline is loaded
    if args.classes and not io.takes_classes:
        raise ConfigError(f"--class works with class-conditional models (the demo models, DiT); this folder "
                          f"holds {family.title}: use --prompt with --pipeline.")
    if args.negative_prompt and io.takes_classes:
        raise ConfigError("--negative-prompt is for text-conditioned folders (Wan, SD3); this one is "
                          "class-conditional: leave it out.")
    if args.guidance_scale is not None and io.takes_classes and not io.takes_guidance:
        raise ConfigError(f"the {model.name} model takes no guidance (it was trained without classifier-free "
                          "guidance): leave out --guidance-scale.")
    if io.takes_classes and args.prompt:
        raise ConfigError(f"the {model.name} model is class-conditional: use --class NAME, not --prompt.")
    if args.pipeline is not None and (args.prompt or args.classes):  # its encoders / VAE; a smoke run previews
        io = ModelIO(model, args.pipeline)
    save = lambda latents, path: io.save(latents, path, args.scale)
    if args.classes or io.class_names:  # the demo models: their first class when none is given
        labels = [io.class_label(c) for c in args.classes or io.class_names[:1]]
        batch = args.batch or len(labels)
        labels = torch.tensor([labels[i % len(labels)] for i in range(batch)])
        # classifier-free guidance (DiT, demo-dit as trained): the family's scale unless --guidance-scale says otherwise
        return _Conditioning(io.class_cond(labels), save, batch, io.guidance(args.guidance_scale))
    if args.prompt:
        if io.encoder is None:
            raise ConfigError("--prompt needs --pipeline DIR: a local diffusers pipeline folder with the text encoders "
                              "and VAE of this model (tcpade-trt never downloads).")
        batch = args.batch or 1
        cond, negative, guidance = io.encoder.encode(args.prompt, batch, args.negative_prompt, args.guidance_scale)
        return _Conditioning(cond, save, batch, guidance, negative)
    batch = args.batch or 1
    print("no --class / --prompt: random conditioning (a smoke run); the output previews the latents")
    height, width, _ = model.latent_size
    cond = family.example_cond(model.geometry_for(batch), height=height, width=width,
                               text_tokens=model.parts.manifest.shape["text_tokens"],
                               generator=torch.Generator().manual_seed(args.seed))
    guidance = args.guidance_scale if family.default_guidance is not None else None
    return _Conditioning(cond, save, batch, guidance)
