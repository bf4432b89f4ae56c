"""Sample a built-in tiny model, the demo model or a local diffusers folder with the torch reference
sampler, and print what each step did. Conditioning is random for the tiny and local models (this
command checks the split and the cache end to end; `generate` makes real pictures)."""

from __future__ import annotations

import time

import torch

from .args import finite_float, positive_int, seed


def add_arguments(p) -> None:
    p.add_argument("model", nargs="?", default="tiny-flux", help="tiny-flux | tiny-wan | tiny-dit | demo | FOLDER")
    from ..cache import UNCACHED

    p.add_argument("--cache", default=UNCACHED, help="cache preset name (default: %(default)s)")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--height", type=positive_int, default=16, help="latent height")
    p.add_argument("--width", type=positive_int, default=16, help="latent width")
    p.add_argument("--frames", type=positive_int, default=1, help="latent frames (Wan)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--guidance-scale", type=finite_float, default=None, help="classifier-free guidance (Wan, DiT)")


def run(args) -> int:
    from ..cache import make_policy
    from ..models import load_model
    from ..runtime.sampler import initial_noise, sample

    make_policy(args.cache)  # a bad spec is one sentence before the model loads
    model = load_model(args.model)
    if args.frames != 1 and not model.family.video:
        from ..errors import ConfigError

        raise ConfigError(f"--frames is for video models (Wan); {args.model} makes images: leave it out.")
    policy = make_policy(args.cache, calibrated=model.calibrated)  # the demo model's calibrated schedules
    geometry = model.family.geometry(args.batch, args.height, args.width, args.frames)
    cond = model.family.example_cond(geometry, height=args.height, width=args.width,
                                     generator=torch.Generator().manual_seed(args.seed))
    noise = initial_noise(model, geometry.shape, [args.seed + i for i in range(args.batch)])
    start = time.perf_counter()
    cached = sample(model, cond, noise, num_steps=args.steps, guidance_scale=args.guidance_scale, policy=policy)
    seconds = time.perf_counter() - start
    ref = sample(model, cond, noise, num_steps=args.steps, guidance_scale=args.guidance_scale, unsplit=True)
    rel = ((cached.latents - ref.latents).norm() / ref.latents.norm()).item()
    steps = "".join("F" if d else "." for d in cached.decisions)
    print(f"model {model.name} ({model.family.title}), latents {list(geometry.shape)}, {geometry.tokens} tokens")
    print(f"cache {args.cache}: steps {steps}  (F = block stack ran, . = predicted)")
    print(f"full steps {cached.full_steps}/{args.steps}, {seconds:.2f} s; "
          f"rel. L2 of final latents vs the unsplit model, uncached: {rel:.2e}")
    return 0
