"""Generate from an engine folder with a cache preset.

  demo model:   tcpade-trt generate --engines engines/demo --class astronaut --class rocket --out a.png
  FLUX / Wan:   --prompt TEXT --pipeline DIR (a local diffusers pipeline folder: text encoders, VAE)
  otherwise:    random conditioning, and a preview of the latents' first three channels (no VAE)
Images are written as PNG, videos (Wan) as animated GIF."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch


def add_arguments(p) -> None:
    p.add_argument("--engines", type=Path, required=True, help="engine folder from `tcpade-trt build`")
    p.add_argument("--cache", default="tcpade-fast", help="cache spec: PRESET[:field=value,...] (default tcpade-fast)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample; sample i uses seed + i")
    p.add_argument("--out", type=Path, default=Path("generated.png"))
    p.add_argument("--class", dest="classes", action="append", help="demo class name or index (repeatable)")
    p.add_argument("--prompt", help="text prompt (FLUX / Wan; needs --pipeline)")
    p.add_argument("--negative-prompt", default="", help="Wan: negative prompt for classifier-free guidance")
    p.add_argument("--pipeline", type=Path, help="local diffusers pipeline folder with text encoders and VAE")
    p.add_argument("--batch", type=int, default=None, help="samples (default: one per --class, else 1)")
    p.add_argument("--guidance-scale", type=float, default=None,
                   help="classifier-free guidance (Wan, DiT); FLUX.1-dev's embedded guidance (default 3.5)")
    p.add_argument("--scale", type=int, default=8, help="demo images: nearest-neighbour upscale factor (default 8)")
    p.add_argument("--verbose", action="store_true", help="print every step's decision and time")
    p.add_argument("--repeats", type=int, default=1,
                   help="generate this many times on the warm runtime and report the median of the runs after the "
                        "first (a serving process's steady state); the image is the last run's")
    p.add_argument("--cuda-graphs", action="store_true", help="TensorRT folders: replay each plan from a CUDA graph")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"],
                   help="onnxruntime folders: execution provider (auto = CUDA when onnxruntime-gpu sees a GPU)")


def run(args) -> int:
    from .errors import ConfigError
    from .runtime.runtime import Runtime
    from .runtime.sampler import initial_noise

    if args.steps < 2:
        raise ConfigError("--steps must be at least 2.")
    if args.repeats < 1:
        raise ConfigError("--repeats must be at least 1.")
    runtime = Runtime(args.engines, device=args.device, cuda_graphs=args.cuda_graphs)
    model = runtime.model
    cond, decode, batch, guidance, *negative = _conditioning(args, model)
    noise = initial_noise(model, model.geometry_for(batch).shape, [args.seed + i for i in range(batch)])

    def report(step, t, computed, seconds):
        print(f"  step {step:>3}  t={t:8.3f}  {'full     ' if computed else 'predicted'}  {seconds * 1000:7.1f} ms")

    print(f"{model.name}: {batch} sample(s), {args.steps} steps, cache {args.cache}, {model.manifest.precision} "
          f"{model.manifest.backend}")
    timings = []
    for run in range(args.repeats):
        last = run == args.repeats - 1
        start = time.perf_counter()
        result = runtime.generate(cond, noise, cache=args.cache, steps=args.steps, guidance_scale=guidance,
                                  negative_cond=negative[0] if negative else None,
                                  progress=not args.verbose and args.repeats == 1,
                                  on_step=report if args.verbose and last else None)
        timings.append((time.perf_counter() - start, runtime.last_timing))
    path = decode(result.latents, args.out)
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


def _conditioning(args, model):
    """(cond, decode(latents, path) -> path, batch, guidance_scale[, negative_cond]) for the folder's model."""
    from .errors import ConfigError

    if model.conditioner is not None:  # the demo model
        from .models.demo import CLASSES, class_index

        names = args.classes or [CLASSES[0]]
        labels = [class_index(c) for c in names]
        batch = args.batch or len(labels)
        labels = torch.tensor([labels[i % len(labels)] for i in range(batch)])
        return model.class_cond(labels), lambda lat, path: _save_demo(lat, path, args.scale), batch, None
    if args.classes:
        if model.family != "dit":
            raise ConfigError("--class works with the demo model and DiT; this folder holds "
                              f"{model.family}: use --prompt with --pipeline.")
        labels = torch.tensor([int(c) for c in args.classes])
        batch = args.batch or len(labels)
        labels = labels.repeat(batch)[:batch]
        return {"class_labels": labels}, _save_preview, batch, args.guidance_scale
    if args.prompt:
        if args.pipeline is None:
            raise ConfigError("--prompt needs --pipeline DIR: a local diffusers pipeline folder with the text encoders "
                              "and VAE of this model (tcpade-trt never downloads).")
        from .runtime.text_conditioning import prompt_conditioning

        return prompt_conditioning(args, model)
    from .models import example_cond

    batch = args.batch or 1
    s = model.manifest.shape
    print("no --class / --prompt: random conditioning (a smoke run); the output previews the latents")
    cond = example_cond(model, model.geometry_for(batch), height=s["height"], width=s["width"],
                        text_tokens=s["text_tokens"], generator=torch.Generator().manual_seed(args.seed))
    guidance = args.guidance_scale if model.family != "flux" else None
    return cond, _save_preview, batch, guidance


def _save_demo(latents, path: Path, scale: int) -> Path:
    from .bench.metrics import to_unit
    from .models.demo import latents_to_images

    images = to_unit(latents_to_images(latents))  # [B, 3, 32, 32]
    return _save_images(images, path, scale)


def _save_images(images: torch.Tensor, path: Path, scale: int = 1) -> Path:
    """[B, 3, H, W] in [0, 1] -> one PNG, samples side by side."""
    from PIL import Image

    strip = torch.cat(list(images), dim=2)  # [3, H, B*W]
    if scale > 1:
        strip = strip.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    array = (strip.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _save_preview(latents, path: Path) -> Path:
    """No VAE: the first three latent channels, normalised, as an image (or GIF over frames)."""
    x = latents.float()
    if x.ndim == 3:  # packed FLUX tokens: a square grid of tokens, 3 channels
        side = int(x.shape[1] ** 0.5)
        x = x[:, : side * side, :3].reshape(x.shape[0], side, side, 3).permute(0, 3, 1, 2)
    x = x[:, :3]
    x = (x - x.amin()) / (x.amax() - x.amin() + 1e-8)
    if x.ndim == 5:  # video [B, 3, F, H, W]: an animated GIF of the first sample
        from PIL import Image

        frames = [Image.fromarray((x[0, :, f].permute(1, 2, 0) * 255).byte().numpy()).resize((128, 128), 0)
                  for f in range(x.shape[2])]
        path = path.with_suffix(".gif")
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=200, loop=0)
        return path
    return _save_images(x, path, scale=8)
