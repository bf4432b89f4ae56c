"""Run the demo: sample the shipped demo model with every cache preset and compare with uncached."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out/)")


def run(args) -> int:
    from .sample_cli import run as run_sample

    class A:  # until the demo model lands, exercise the split and sampler on a tiny model
        model, cache, steps, batch, height, width, frames, seed, guidance_scale = (
            "tiny-flux", "none", 20, 2, 16, 16, 1, 0, None)

    return run_sample(A)
