"""The inputs quantization recipes calibrate on (not the schedules `tcpade-trt calibrate` measures): block-stack inputs
from real, seeded trajectories, conditioned as the model is used: DiT on a spread of ImageNet classes with
classifier-free guidance (the null class's rows are half of what its blocks see), a text model on prompts through
its pipeline's text encoders when it came from a pipeline folder (NVIDIA calibrates FLUX on prompts), else on seeded
random text embeddings.

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

# prompts of the kinds diffusion models are asked for: subjects, scenes, styles, text in images
CALIBRATION_PROMPTS = (
    "a photograph of an astronaut riding a horse on the moon",
    "a watercolor painting of a lighthouse at dawn, soft pastel colors",
    "close-up portrait of an old fisherman with a weathered face, dramatic lighting",
    "a cozy reading nook with a cat sleeping on a pile of books",
    "an isometric illustration of a futuristic city with flying cars",
    "a bowl of ramen with a soft-boiled egg, steam rising, food photography",
    "a neon sign that says OPEN in a rainy alley at night",
    "a snowy mountain range reflected in a still alpine lake",
    "a red fox in an autumn forest, shallow depth of field",
    "an oil painting of a ship in a storm in the style of the old masters",
    "a minimalist logo of a hummingbird, flat vector art",
    "children flying kites on a windy beach, film photograph",
    "a medieval castle on a cliff, fantasy concept art",
    "macro photograph of a dewdrop on a spider web",
    "a busy street market in Marrakech, vibrant colors",
    "a robot tending a vegetable garden, Studio Ghibli style",
)


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


def calibration_conds(model: Model, shape: BuildShape, samples: int, seed: int = 0):
    """(cond, negative cond or None, guidance scale or None, what it is) for ``samples`` calibration samples."""
    family = model.family
    if model.class_conditional:
        classes = family.num_classes or len(model.conditioner.tokens)
        order = torch.randperm(classes, generator=torch.Generator().manual_seed(seed))  # a spread, not 0..n-1
        labels = order[torch.arange(samples) % classes]
        guidance = family.default_guidance if model.conditioner is None else None  # DiT: CFG's null-class rows
        return model.class_cond(labels), None, guidance, f"{samples} classes spread over {classes}" + (
            f", classifier-free guidance {guidance}" if guidance else "")
    if model.pipeline is not None and family.pipeline_class is not None:
        from ..runtime.text_conditioning import encode_prompts

        prompts = [CALIBRATION_PROMPTS[i % len(CALIBRATION_PROMPTS)] for i in range(samples)]
        cond, negative, guidance = encode_prompts(model, model.pipeline, prompts, shape)
        return cond, negative, guidance, f"{samples} prompts through {model.pipeline.name}'s text encoders"
    geometry = family.geometry(samples, shape.height, shape.width, shape.frames)
    cond = family.example_cond(geometry, height=shape.height, width=shape.width, text_tokens=shape.text_tokens,
                               generator=torch.Generator().manual_seed(seed))
    return cond, None, None, "seeded random conditioning (no pipeline folder: build from one to calibrate on prompts)"


@torch.no_grad()
def collect_block_inputs(model: Model, shape: BuildShape, samples: int = 8, steps: int = 20,
                         seed: int = 0) -> tuple[list[dict[str, np.ndarray]], str]:
    """(one feed per denoising step: the samples' rows, doubled under classifier-free guidance; what conditioned
    them), from uncached trajectories."""
    recorder = _RecordingParts(model.parts)
    cond, negative, guidance, described = calibration_conds(model, shape, samples, seed)
    geometry = model.family.geometry(samples, shape.height, shape.width, shape.frames)
    noise = initial_noise(model, geometry.shape, [seed + i for i in range(samples)])
    sample(Model(model.name, model.family, recorder), cond, noise, num_steps=steps, guidance_scale=guidance,
           negative_cond=negative)
    return recorder.records, described
