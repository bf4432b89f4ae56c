"""The parts of a split model as torch modules with flat, named tensor I/O: what gets exported.

    prepare  PREPARE_INPUTS                      -> PREPARE_OUTPUTS   once per generation
    head     latents, timestep, *HEAD_INPUTS     -> HEAD_OUTPUTS      every step
    blocks   BLOCK_INPUTS                        -> x_out, residual   full steps only (residual =
                                                                      x_out - hidden_states, for the cache)
    tail     x_out, *TAIL_INPUTS                 -> tokens            every step (unpatchify: host)
    modulated MODULATED_INPUTS                   -> modulated         TeaCache's signal (first block's
                                                                      modulated input), cheap

Engines are built for one resolution (and text length) with a dynamic batch: the batch axis of
each tensor is found by building example inputs at two batch sizes and comparing shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.family import Tensors
from ..models.model import Model

PARTS = ("prepare", "head", "blocks", "tail", "modulated")


def part_io(model: Model, part: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(input names, output names) of one part."""
    f = model.family
    if part == "prepare":
        return f.PREPARE_INPUTS, f.PREPARE_OUTPUTS
    if part == "head":
        return ("latents", "timestep", *f.HEAD_INPUTS), f.HEAD_OUTPUTS
    if part == "blocks":
        return f.BLOCK_INPUTS, ("x_out", "residual")
    if part == "tail":
        return ("x_out", *f.TAIL_INPUTS), ("tokens",)
    if part == "modulated":
        return f.MODULATED_INPUTS, ("modulated",)
    raise ValueError(f"unknown part {part!r}; parts are {PARTS}")


class PartModule(nn.Module):
    """One part of ``model`` as a module taking and returning positional tensors."""

    def __init__(self, model: Model, part: str):
        super().__init__()
        self.parts, self.part = model.parts, part
        self.transformer = model.transformer  # registered, so .to() / .eval() reach the weights
        self.input_names, self.output_names = part_io(model, part)

    def forward(self, *tensors: torch.Tensor):
        named = dict(zip(self.input_names, tensors))
        m = self.parts
        if self.part == "prepare":
            out = m.prepare_part(named)
        elif self.part == "head":
            out = m.head(named.pop("latents"), named.pop("timestep"), named)
        elif self.part == "blocks":
            out = dict(zip(("x_out", "residual"), m.blocks_with_residual(named)))
        elif self.part == "tail":
            out = {"tokens": m.tail_tokens(named.pop("x_out"), named)}
        else:
            out = {"modulated": m.modulated_input(named)}
        return tuple(out[k] for k in self.output_names)


@dataclass
class BuildShape:
    """The resolution an engine folder is built for, and its batch range."""

    height: int
    width: int
    frames: int = 1
    text_tokens: int = 8
    batch_min: int = 1
    batch_opt: int = 1
    batch_max: int = 4

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def example_tensors(model: Model, shape: BuildShape, batch: int, seed: int = 0, cond: Tensors | None = None,
                    timestep_index: int = 5, num_steps: int = 20) -> Tensors:
    """Every named tensor of one step (inputs and outputs of all parts) for a batch of ``batch``."""
    family, parts = model.family, model.parts
    geometry = family.geometry(batch, shape.height, shape.width, shape.frames)
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(geometry.shape, generator=gen).to(model.device, model.dtype)
    if cond is None:
        cond = family.example_cond(geometry, height=shape.height, width=shape.width, text_tokens=shape.text_tokens,
                                   generator=gen)
    scheduler = family.make_scheduler(num_steps, geometry)
    timestep = family.model_timestep(scheduler.timesteps[timestep_index], batch)
    step = parts.head(latents, timestep, parts.prepare(latents, cond))
    x_out, residual = parts.blocks_with_residual(step)
    tokens = parts.tail_tokens(x_out, step)
    named = {"latents": latents, "timestep": timestep, **cond, **step, "x_out": x_out, "residual": residual,
             "tokens": tokens, "modulated": parts.modulated_input(step)}
    return {k: v for k, v in named.items() if isinstance(v, torch.Tensor)}


def batch_axes(model: Model, shape: BuildShape) -> dict[str, int | None]:
    """For every named tensor, the axis that grows with the batch (None: shared by the batch)."""
    a, b = example_tensors(model, shape, 2), example_tensors(model, shape, 3)
    axes = {}
    for name in a:
        diff = [i for i, (x, y) in enumerate(zip(a[name].shape, b[name].shape)) if x != y]
        axes[name] = diff[0] if diff else None
    return axes
