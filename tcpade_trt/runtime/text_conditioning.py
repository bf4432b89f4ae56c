"""Prompt conditioning from a local diffusers pipeline folder (text encoders + VAE), for FLUX and Wan.

The engine folder holds only the transformer's parts; the text encoders and the VAE come from the
pipeline folder the user downloaded. Nothing is fetched.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError


def prompt_conditioning(args, model):
    """(cond, decode(latents, path), batch, guidance_scale[, negative_cond]) for --prompt with --pipeline."""
    import diffusers

    folder = Path(args.pipeline)
    if not (folder / "model_index.json").is_file():
        raise ConfigError(f"{folder} is not a diffusers pipeline folder (no model_index.json).")
    batch = args.batch or 1
    s = model.manifest.shape
    if model.family == "flux":
        pipe = diffusers.FluxPipeline.from_pretrained(folder, transformer=None)
        with torch.no_grad():
            embeds, pooled, text_ids = pipe.encode_prompt(prompt=[args.prompt] * batch, prompt_2=None,
                                                          max_sequence_length=s["text_tokens"])
        from ..models.flux import latent_image_ids, unpack_latents

        guidance = args.guidance_scale if args.guidance_scale is not None else 3.5
        cond = {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids,
                "img_ids": latent_image_ids(s["height"], s["width"])}
        if model.config.guidance_embeds:
            cond["guidance"] = torch.full((batch,), guidance)

        def decode(latents, path):
            vae = pipe.vae
            x = unpack_latents(latents, s["height"], s["width"])
            x = x / vae.config.scaling_factor + vae.config.shift_factor
            with torch.no_grad():
                images = (vae.decode(x, return_dict=False)[0] + 1) / 2
            from ..generate_cli import _save_images

            return _save_images(images.clamp(0, 1), path)

        return cond, decode, batch, None
    if model.family == "wan":
        pipe = diffusers.WanPipeline.from_pretrained(folder, transformer=None)
        guidance = args.guidance_scale if args.guidance_scale is not None else 5.0
        with torch.no_grad():
            embeds, negative = pipe.encode_prompt(prompt=[args.prompt] * batch,
                                                  negative_prompt=[args.negative_prompt] * batch,
                                                  do_classifier_free_guidance=True,
                                                  max_sequence_length=s["text_tokens"])

        def decode(latents, path):
            vae = pipe.vae
            mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
            std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
            with torch.no_grad():
                video = vae.decode(latents / std + mean, return_dict=False)[0]  # [B, 3, F, H, W] in [-1, 1]
            from PIL import Image

            frames = ((video[0].clamp(-1, 1) + 1) * 127.5).byte().permute(1, 2, 3, 0).numpy()
            images = [Image.fromarray(f) for f in frames]
            path = Path(path).with_suffix(".gif")
            images[0].save(path, save_all=True, append_images=images[1:], duration=62, loop=0)
            return path

        # the sampler puts cond and negative_cond in one CFG batch
        return {"encoder_hidden_states": embeds}, decode, batch, guidance, {"encoder_hidden_states": negative}
    raise ConfigError(f"--prompt is for FLUX and Wan; this folder holds {model.family}: use --class.")
