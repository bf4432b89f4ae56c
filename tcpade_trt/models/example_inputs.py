"""Random but well-formed conditioning for each family: for tests, smoke runs and engine export.

Real conditioning comes from the pipeline's text encoders (FLUX, Wan) or class labels (DiT).
"""

from __future__ import annotations

import torch

from .base import LatentGeometry, SplitModel, Tensors
from .flux import latent_image_ids


def example_cond(
    model: SplitModel, geometry: LatentGeometry, *, height: int, width: int, text_tokens: int = 8,
    generator: torch.Generator | None = None, guidance: float = 3.5,
) -> Tensors:
    """Conditioning tensors of the right shapes for ``model`` and batch ``geometry.shape[0]``."""
    b = geometry.shape[0]
    cfg = model.config
    dev, dt = model.device, model.dtype
    rand = lambda *shape: torch.randn(*shape, generator=generator).to(dev, dt)
    if model.family == "flux":
        cond = {
            "encoder_hidden_states": rand(b, text_tokens, cfg.joint_attention_dim),
            "pooled_projections": rand(b, cfg.pooled_projection_dim),
            "txt_ids": torch.zeros(text_tokens, 3, device=dev, dtype=dt),
            "img_ids": latent_image_ids(height, width).to(dev, dt),
        }
        if cfg.guidance_embeds:
            cond["guidance"] = torch.full((b,), guidance, device=dev, dtype=dt)
        return cond
    if model.family == "wan":
        return {"encoder_hidden_states": rand(b, text_tokens, cfg.text_dim)}
    if model.family == "dit":
        labels = torch.randint(0, cfg.num_embeds_ada_norm, (b,), generator=generator)
        return {"class_labels": labels.to(dev)}
    raise ValueError(f"no example conditioning for family {model.family!r}")


def with_uncond(model: SplitModel, cond: Tensors) -> Tensors:
    """A CFG batch [cond; uncond]: DiT's null class, or zero text embeddings for Wan."""
    if model.family == "dit":
        labels = cond["class_labels"]
        return {"class_labels": torch.cat([labels, torch.full_like(labels, model.null_class)])}
    if model.family == "wan":
        text = cond["encoder_hidden_states"]
        return {**cond, "encoder_hidden_states": torch.cat([text, torch.zeros_like(text)])}
    raise ValueError(f"{model.family} is guidance-distilled here: use cond['guidance'] instead of a CFG batch")
