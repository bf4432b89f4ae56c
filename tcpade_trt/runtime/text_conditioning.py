"""Prompt conditioning from a local diffusers pipeline folder (text encoders + VAE), for FLUX and Wan.

The engine folder holds only the transformer's parts; the text encoders and the VAE come from the
pipeline folder the user downloaded. Nothing is fetched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError
from .images import save_images, save_video


@dataclass
class PromptConditioning:
    cond: dict  # the transformer's conditioning for the batch
    decode: Callable[[torch.Tensor, Path], Path]  # final latents, output path -> the file written
    guidance_scale: float | None  # classifier-free guidance (Wan); None for FLUX's embedded guidance
    negative_cond: dict | None = None  # the uncond half of a CFG batch (Wan)


def prompt_conditioning(model, pipeline: Path, prompt: str, batch: int, negative_prompt: str = "",
                        guidance_scale: float | None = None) -> PromptConditioning:
    """Encode ``prompt`` (``batch`` times) with the text encoders of the pipeline folder ``pipeline``."""
    import diffusers

    folder = Path(pipeline)
    if not (folder / "model_index.json").is_file():
        raise ConfigError(f"{folder} is not a diffusers pipeline folder (no model_index.json).")
    s = model.manifest.shape
    if model.family == "flux":
        pipe = diffusers.FluxPipeline.from_pretrained(folder, transformer=None)
        with torch.no_grad():
            embeds, pooled, text_ids = pipe.encode_prompt(prompt=[prompt] * batch, prompt_2=None,
                                                          max_sequence_length=s["text_tokens"])
        from ..models.flux import latent_image_ids, unpack_latents

        cond = {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids,
                "img_ids": latent_image_ids(s["height"], s["width"])}
        if model.config.guidance_embeds:
            cond["guidance"] = torch.full((batch,), guidance_scale if guidance_scale is not None else 3.5)

        def decode(latents, path):
            vae = pipe.vae
            x = unpack_latents(latents, s["height"], s["width"])
            x = x / vae.config.scaling_factor + vae.config.shift_factor
            with torch.no_grad():
                images = (vae.decode(x, return_dict=False)[0] + 1) / 2
            return save_images(images.clamp(0, 1), path)

        return PromptConditioning(cond, decode, None)
    if model.family == "wan":
        pipe = diffusers.WanPipeline.from_pretrained(folder, transformer=None)
        with torch.no_grad():
            embeds, negative = pipe.encode_prompt(prompt=[prompt] * batch, negative_prompt=[negative_prompt] * batch,
                                                  do_classifier_free_guidance=True,
                                                  max_sequence_length=s["text_tokens"])

        def decode(latents, path):
            vae = pipe.vae
            mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
            std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
            with torch.no_grad():
                video = vae.decode(latents / std + mean, return_dict=False)[0]  # [B, 3, F, H, W] in [-1, 1]
            return save_video(video[0], path)

        # the sampler puts cond and negative_cond in one CFG batch
        return PromptConditioning({"encoder_hidden_states": embeds}, decode,
                                  guidance_scale if guidance_scale is not None else 5.0,
                                  {"encoder_hidden_states": negative})
    raise ConfigError(f"--prompt is for FLUX and Wan; this folder holds {model.family}: use --class.")
