"""Calibration data for static quantization: block-stack inputs from real, seeded trajectories.

The same model, shape and seeds always give the same feeds, so the same quantized graph.
"""

from __future__ import annotations

import numpy as np
import torch

from ..export.parts import BuildShape
from ..models.base import SplitModel, Tensors
from ..models.example_inputs import example_cond
from ..runtime.sampler import initial_noise, sample


class _RecordingModel:
    """Delegates to a SplitModel, recording the named inputs of every blocks() call."""

    def __init__(self, model: SplitModel):
        self._model = model
        self.records: list[dict[str, np.ndarray]] = []

    def blocks(self, step: Tensors):
        self.records.append({n: step[n].detach().cpu().numpy().copy() for n in self._model.BLOCK_INPUTS})
        return self._model.blocks(step)

    def __getattr__(self, name):
        return getattr(self._model, name)


def calibration_conds(model: SplitModel, shape: BuildShape, samples: int, seed: int = 0) -> Tensors:
    """Conditioning for ``samples`` calibration samples: the demo's classes in turn, else seeded random."""
    if hasattr(model, "class_cond"):  # the demo model: its real classes
        from ..models.demo import CLASSES

        return model.class_cond(torch.arange(samples) % len(CLASSES))
    geometry = model.geometry(samples, shape.height, shape.width, shape.frames)
    return example_cond(model, geometry, height=shape.height, width=shape.width, text_tokens=shape.text_tokens,
                        generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def collect_block_inputs(model: SplitModel, shape: BuildShape, samples: int = 8, steps: int = 20,
                         seed: int = 0) -> list[dict[str, np.ndarray]]:
    """One feed per denoising step (batch = ``samples``), from uncached trajectories."""
    recorder = _RecordingModel(model)
    cond = calibration_conds(model, shape, samples, seed)
    geometry = model.geometry(samples, shape.height, shape.width, shape.frames)
    noise = initial_noise(model, geometry.shape, [seed + i for i in range(samples)])
    sample(recorder, cond, noise, num_steps=steps)
    return recorder.records
