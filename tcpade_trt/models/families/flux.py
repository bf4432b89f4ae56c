"""FLUX.1 (dev / schnell): diffusers ``FluxTransformer2DModel`` split into head / blocks / tail.

Shapes (B batch, S image tokens, L text tokens, D = heads * head_dim):
    latents               [B, S, in_channels]   packed 2x2 latents, as FluxPipeline holds them
    encoder_hidden_states [B, L, joint_attention_dim] before the context embedder (T5 output)
    pooled_projections    [B, pooled_projection_dim]  (CLIP pooled output)
    txt_ids [L, 3], img_ids [S, 3]; guidance [B] for guidance-distilled models (dev)
Blocks inputs: hidden_states [B, S, D], context [B, L, D] (text tokens after the context
embedder: prompt-only, computed once), temb [B, D], rope_cos / rope_sin [L + S, head_dim].
FLUX.1-dev embeds its guidance instead of running classifier-free guidance.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import ShapeError, check_shape
from ..family import Family, LatentGeometry, Tensors, per_row, tokenizer_max_length, vae_input
from ..parts import TorchParts


def calculate_shift(image_seq_len: int, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15):
    """FluxPipeline's resolution-dependent shift ``mu`` of the flow-matching schedule."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * m + (base_shift - m * base_seq_len)


def latent_image_ids(height: int, width: int) -> torch.Tensor:
    """Position ids [(H/2)(W/2), 3] of packed latent tokens, as FluxPipeline builds them."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] += torch.arange(height // 2)[:, None]
    ids[..., 2] += torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3)


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/2)(W/2), 4C] (FluxPipeline._pack_latents)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, (H/2)(W/2), 4C] -> [B, C, H, W] (inverse of pack_latents)."""
    b, _, c4 = packed.shape
    x = packed.view(b, height // 2, width // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, height, width)


class FluxFamily(Family):
    name = "flux"
    diffusers_class = "FluxTransformer2DModel"
    title = "FLUX.1"
    pipeline_class = "FluxPipeline"
    default_build_shape = (128, 128, 1)  # 1024 x 1024 images
    tiny_config = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=16,
                       num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=24, guidance_embeds=True,
                       axes_dims_rope=(4, 6, 6))
    PREPARE_INPUTS = ("encoder_hidden_states", "txt_ids", "img_ids")
    PREPARE_OUTPUTS = ("context", "rope_cos", "rope_sin")
    HEAD_OUTPUTS = ("hidden_states", "temb")
    BLOCK_INPUTS = ("hidden_states", "context", "temb", "rope_cos", "rope_sin")
    TAIL_INPUTS = ("temb",)
    MODULATED_INPUTS = ("hidden_states", "temb")
    SHARED_COND_INPUTS = ("txt_ids", "img_ids")  # [tokens, 3]: the same for every sample of a folder's shape

    @property
    def embedded_guidance(self) -> bool:
        return bool(self.config.guidance_embeds)

    @property
    def HEAD_INPUTS(self):  # noqa: N802
        return ("pooled_projections", "guidance") if self.config.guidance_embeds else ("pooled_projections",)

    @property
    def COND_INPUTS(self):  # noqa: N802
        return ("encoder_hidden_states", "pooled_projections", "txt_ids", "img_ids", *self.HEAD_INPUTS[1:])

    def check_inputs(self, latents: torch.Tensor, cond: Tensors) -> None:
        self.check_cond_keys(cond)
        cfg = self.config
        b = latents.shape[0]
        check_shape("latents", latents, (b, None, cfg.in_channels))
        check_shape("encoder_hidden_states", cond["encoder_hidden_states"], (b, None, cfg.joint_attention_dim))
        check_shape("pooled_projections", cond["pooled_projections"], (b, cfg.pooled_projection_dim))
        check_shape("img_ids", cond["img_ids"], (latents.shape[1], 3))
        check_shape("txt_ids", cond["txt_ids"], (cond["encoder_hidden_states"].shape[1], 3))

    def example_cond(self, geometry, *, height, width, text_tokens=8, generator=None, guidance: float = 3.5):
        b, cfg, dev, dt = geometry.shape[0], self.config, self.device, self.dtype
        rand = lambda *shape: torch.randn(*shape, generator=generator).to(dev, dt)
        cond = {"encoder_hidden_states": rand(b, text_tokens, cfg.joint_attention_dim),
                "pooled_projections": rand(b, cfg.pooled_projection_dim),
                "txt_ids": torch.zeros(text_tokens, 3, device=dev, dtype=dt),
                "img_ids": latent_image_ids(height, width).to(dev, dt)}
        if cfg.guidance_embeds:
            cond["guidance"] = torch.full((b,), guidance, device=dev, dtype=dt)
        return cond

    def uncond(self, cond):
        from ...errors import ConfigError

        raise ConfigError("FLUX.1 is guidance-distilled: pass cond['guidance'] instead of a guidance scale.")

    def encode_prompt(self, pipe, prompt, batch, *, height, width, text_tokens, negative_prompt="",
                      guidance_scale=None):
        with torch.no_grad():
            embeds, pooled, text_ids = pipe.encode_prompt(prompt=[prompt] * batch, prompt_2=None,
                                                          max_sequence_length=text_tokens)
        cond = {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids,
                "img_ids": latent_image_ids(height, width)}
        if self.config.guidance_embeds:  # FLUX.1-dev: embedded guidance, no second (uncond) batch
            cond["guidance"] = torch.full((batch,), guidance_scale if guidance_scale is not None else 3.5)
        return cond, None, None

    def decode(self, vae, latents, height, width):
        x = unpack_latents(vae_input(vae, latents), height, width) / vae.config.scaling_factor
        x = x + (vae.config.shift_factor or 0.0)
        with torch.no_grad():
            return ((vae.decode(x, return_dict=False)[0].float() + 1) / 2).clamp(0, 1)  # [B, 3, 8H, 8W] in [0, 1]

    def unpack_forward(self, a: dict):
        cond = {k: a[k] for k in ("encoder_hidden_states", "pooled_projections", "txt_ids", "img_ids")}
        if a.get("guidance") is not None:
            cond["guidance"] = a["guidance"]
        return a["hidden_states"], a["timestep"], cond, a["return_dict"]

    # latents are held packed: [B, (H/2)(W/2), 4C] for a latent image of C x H x W
    def geometry(self, batch, height, width, frames=1):
        if height % 2 or width % 2:
            raise ShapeError(f"FLUX latent height and width must be even (got {height}x{width}); pick even sizes.")
        tokens = (height // 2) * (width // 2)
        return LatentGeometry(shape=(batch, tokens, self.config.in_channels), tokens=tokens)

    def spatial_size(self, latents):
        side = int(latents.shape[1] ** 0.5) * 2  # only the token count matters to the schedule
        return (side, latents.shape[1] * 4 // side)

    def spatial_latents(self, latents, height, width):
        return unpack_latents(latents, height, width)

    def reference_scheduler(self):
        """FLUX.1-dev's released scheduler_config.json (tests/fixtures/released/FLUX.1-dev)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                               base_image_seq_len=256, max_image_seq_len=4096)

    def make_scheduler(self, num_steps, geometry):
        # as FluxPipeline: sigmas from 1 to 1/n, shifted by mu (of the image's tokens) when the scheduler shifts
        # dynamically (dev); schnell's scheduler does not (shift 1.0)
        scheduler = self.configured_scheduler() or self.reference_scheduler()
        c = scheduler.config
        mu = None
        if c.get("use_dynamic_shifting"):
            mu = calculate_shift(geometry.tokens, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                                 c.get("base_shift", 0.5), c.get("max_shift", 1.15))
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / num_steps, num_steps), mu=mu, device=self.device)
        return scheduler

    def pipeline_text_tokens(self, pipeline):
        # FluxPipeline's max_sequence_length: 512 by default and at most (dev); BFL's schnell uses 256
        tokens = 512 if self.config.guidance_embeds else 256
        return min(tokens, tokenizer_max_length(pipeline, "tokenizer_2") or tokens)

    def prompt_tokens(self, pipe, prompt):
        return len(pipe.tokenizer_2(prompt).input_ids), 0

    def model_timestep(self, t, batch):
        return per_row(t / 1000, batch).to(self.dtype)


class FluxParts(TorchParts):
    def prepare_part(self, named):
        t = self.transformer
        cos, sin = t.pos_embed(torch.cat((named["txt_ids"], named["img_ids"]), dim=0))
        return {"context": t.context_embedder(named["encoder_hidden_states"]), "rope_cos": cos, "rope_sin": sin}

    def head(self, latents, timestep, prepared):
        t = self.transformer
        hidden_states = t.x_embedder(latents)
        timestep = timestep.to(hidden_states.dtype) * 1000
        if "guidance" in prepared:
            guidance = prepared["guidance"].to(hidden_states.dtype) * 1000
            temb = t.time_text_embed(timestep, guidance, prepared["pooled_projections"])
        else:
            temb = t.time_text_embed(timestep, prepared["pooled_projections"])
        return {**prepared, "hidden_states": hidden_states, "temb": temb}

    def blocks(self, step):
        t = self.transformer
        hidden, context, temb = step["hidden_states"], step["context"], step["temb"]
        rope = (step["rope_cos"], step["rope_sin"])
        # double-stream blocks, then single-stream ones; text tokens flow along, image tokens come out
        for block in (*t.transformer_blocks, *t.single_transformer_blocks):
            context, hidden = block(hidden_states=hidden, encoder_hidden_states=context, temb=temb,
                                    image_rotary_emb=rope)
        return hidden

    def tail_tokens(self, x_out, step):
        t = self.transformer
        return t.proj_out(t.norm_out(x_out, step["temb"]))  # FLUX's output stays packed: unpatchify is the identity

    def forward_unsplit(self, latents, timestep, cond):
        self.family.check_inputs(latents, cond)
        return self.transformer(hidden_states=latents, timestep=timestep,
                                encoder_hidden_states=cond["encoder_hidden_states"],
                                pooled_projections=cond["pooled_projections"], txt_ids=cond["txt_ids"],
                                img_ids=cond["img_ids"], guidance=cond.get("guidance"), return_dict=False)[0]

    def modulated_input(self, step):
        return self.transformer.transformer_blocks[0].norm1(step["hidden_states"], emb=step["temb"])[0]
