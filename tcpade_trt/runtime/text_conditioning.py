"""Prompt conditioning from a local diffusers pipeline folder (text encoders + VAE), for text-conditioned
families (FLUX, Wan).

The engine folder holds only the transformer's parts; the text encoders and the VAE come from the
pipeline folder the user downloaded. Nothing is fetched. What is family-specific (which pipeline,
how a prompt becomes the conditioning, how latents become pixels) is the family's
(``Family.encode_prompt`` / ``Family.decode``); this module loads the pipeline and writes the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError
from ..models.model import Model
from .images import save_images, save_video


@dataclass
class PromptConditioning:
    cond: dict  # the transformer's conditioning for the batch
    decode: Callable[[torch.Tensor, Path], Path]  # final latents, output path -> the file written
    guidance_scale: float | None  # classifier-free guidance; None for FLUX's embedded guidance
    negative_cond: dict | None = None  # the uncond half of a CFG batch


def prompt_conditioning(model: Model, pipeline: Path, prompt: str, batch: int, negative_prompt: str = "",
                        guidance_scale: float | None = None) -> PromptConditioning:
    """Encode ``prompt`` (``batch`` times) with the text encoders of the pipeline folder ``pipeline``."""
    import diffusers

    family = model.family
    if family.pipeline_class is None:
        raise ConfigError(f"--prompt is for text-conditioned models; this folder holds {family.title}: use --class.")
    folder = Path(pipeline)
    if not (folder / "model_index.json").is_file():
        raise ConfigError(f"{folder} is not a diffusers pipeline folder (no model_index.json).")
    pipe = getattr(diffusers, family.pipeline_class).from_pretrained(folder, transformer=None)
    height, width, _ = model.latent_size
    text_tokens = model.parts.manifest.shape["text_tokens"]
    cond, negative, guidance = family.encode_prompt(pipe, prompt, batch, height=height, width=width,
                                                    text_tokens=text_tokens, negative_prompt=negative_prompt,
                                                    guidance_scale=guidance_scale)

    def decode(latents: torch.Tensor, path: Path) -> Path:
        pixels = family.decode(pipe.vae, latents, height, width)
        return save_video(pixels[0] * 2 - 1, path) if family.video else save_images(pixels, path)

    return PromptConditioning(cond, decode, guidance, negative)
