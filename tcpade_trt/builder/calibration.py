"""Calibration data for static quantization: block-stack inputs from real, seeded trajectories.

The same model, shape and seeds always give the same feeds, so the same quantized graph.
"""

from __future__ import annotations

import numpy as np
import torch

from ..export.parts import BuildShape
from ..models.family import Tensors
from ..models.model import Model
from ..models.parts import Parts
from ..runtime.sampler import initial_noise, sample


class _RecordingParts(Parts):
    """Delegates to a model's parts, recording the named inputs of every block-stack call."""

    def __init__(self, parts: Parts):
        self._parts, self.family = parts, parts.family
        self.records: list[dict[str, np.ndarray]] = []

    def prepare_part(self, named):
        return self._parts.prepare_part(named)

    def prepare(self, latents, cond):
        return self._parts.prepare(latents, cond)

    def head(self, latents, timestep, prepared):
        return self._parts.head(latents, timestep, prepared)

    def blocks(self, step: Tensors):
        self.records.append({n: _host_array(step[n]) for n in self.family.BLOCK_INPUTS})
        return self._parts.blocks(step)

    def tail_tokens(self, x_out, step):
        return self._parts.tail_tokens(x_out, step)

    def modulated_input(self, step):
        return self._parts.modulated_input(step)


def _host_array(t: torch.Tensor) -> np.ndarray:
    """A copy in host memory; bf16 / fp16 as float32 (numpy has no bf16; the quantizer casts back)."""
    t = t.detach()
    return (t.float() if t.is_floating_point() else t).cpu().numpy().copy()


def calibration_conds(model: Model, shape: BuildShape, samples: int, seed: int = 0) -> Tensors:
    """Conditioning for ``samples`` calibration samples: the classes in turn for class-conditional models
    (the demo's, DiT's), else seeded random."""
    if model.class_conditional:
        classes = model.family.num_classes or len(model.conditioner.tokens)
        return model.class_cond(torch.arange(samples) % classes)
    geometry = model.family.geometry(samples, shape.height, shape.width, shape.frames)
    return model.family.example_cond(geometry, height=shape.height, width=shape.width, text_tokens=shape.text_tokens,
                                     generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def collect_block_inputs(model: Model, shape: BuildShape, samples: int = 8, steps: int = 20,
                         seed: int = 0) -> list[dict[str, np.ndarray]]:
    """One feed per denoising step (batch = ``samples``), from uncached trajectories."""
    recorder = _RecordingParts(model.parts)
    cond = calibration_conds(model, shape, samples, seed)
    geometry = model.family.geometry(samples, shape.height, shape.width, shape.frames)
    noise = initial_noise(model, geometry.shape, [seed + i for i in range(samples)])
    sample(Model(model.name, model.family, recorder), cond, noise, num_steps=steps)
    return recorder.records
