"""Stable Diffusion 3 / 3.5: diffusers ``SD3Transformer2DModel`` (MMDiT) split into head / blocks / tail.

Shapes (B batch, C latent channels, H x W latent size, p patch, S = (H/p)(W/p) image tokens,
L text tokens, D = heads * head_dim):
    latents               [B, C, H, W]
    encoder_hidden_states [B, L, joint_attention_dim] (CLIP + T5 embeddings, before the context embedder)
    pooled_projections    [B, pooled_projection_dim]
Blocks inputs: hidden_states [B, S, D] (patches plus the position embedding), context [B, L,
caption_projection_dim] (text tokens after the context embedder: prompt-only, computed once),
temb [B, D]. Joint blocks update text and image tokens; the last one returns image tokens only.
Classifier-free guidance with the negative prompt (default scale 7.0). ControlNet residuals and
skipped layers (the pipeline's skip-layer guidance) are not part of the cached split.
"""

from __future__ import annotations

import torch

from ...errors import ConfigError, ShapeError, check_shape
from ..family import Family, LatentGeometry, tokenizer_max_length, vae_input
from ..parts import TorchParts


class SD3Family(Family):
    name = "sd3"
    diffusers_class = "SD3Transformer2DModel"
    title = "Stable Diffusion 3"
    pipeline_class = "StableDiffusion3Pipeline"
    default_guidance = 7.0
    default_build_shape = (128, 128, 1)  # 1024 x 1024 images
    tiny_config = dict(sample_size=32, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                       num_attention_heads=4, joint_attention_dim=32, caption_projection_dim=32,
                       pooled_projection_dim=24, out_channels=4, pos_embed_max_size=32)
    flow_shift = 3.0  # SD3's scheduler config
    PREPARE_INPUTS = ("encoder_hidden_states",)
    PREPARE_OUTPUTS = ("context",)
    HEAD_OUTPUTS = ("hidden_states", "temb")
    BLOCK_INPUTS = ("hidden_states", "context", "temb")
    TAIL_INPUTS = ("temb",)
    MODULATED_INPUTS = ("hidden_states", "temb")

    @property
    def HEAD_INPUTS(self):  # noqa: N802
        return ("pooled_projections",)

    @property
    def COND_INPUTS(self):  # noqa: N802
        return ("encoder_hidden_states", "pooled_projections")

    def check_inputs(self, latents, cond):
        self.check_cond_keys(cond)
        cfg = self.config
        check_shape("latents", latents, (None, cfg.in_channels, None, None))
        b, _, h, w = latents.shape
        self.geometry(b, h, w)
        check_shape("encoder_hidden_states", cond["encoder_hidden_states"], (b, None, cfg.joint_attention_dim))
        check_shape("pooled_projections", cond["pooled_projections"], (b, cfg.pooled_projection_dim))

    def example_cond(self, geometry, *, height, width, text_tokens=8, generator=None):
        b, cfg = geometry.shape[0], self.config
        rand = lambda *shape: torch.randn(*shape, generator=generator).to(self.device, self.dtype)
        return {"encoder_hidden_states": rand(b, text_tokens, cfg.joint_attention_dim),
                "pooled_projections": rand(b, cfg.pooled_projection_dim)}

    def uncond(self, cond):
        return {k: torch.zeros_like(v) for k, v in cond.items()}

    def encode_prompt(self, pipe, prompt, batch, *, height, width, text_tokens, negative_prompt="",
                      guidance_scale=None):
        with torch.no_grad():
            embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
                prompt=[prompt] * batch, prompt_2=None, prompt_3=None, do_classifier_free_guidance=True,
                negative_prompt=[negative_prompt] * batch, max_sequence_length=text_tokens - pipe.tokenizer_max_length)
        scale = guidance_scale if guidance_scale is not None else self.default_guidance
        return ({"encoder_hidden_states": embeds, "pooled_projections": pooled},
                {"encoder_hidden_states": negative, "pooled_projections": negative_pooled}, scale)

    def decode(self, vae, latents, height, width):
        x = vae_input(vae, latents) / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
        with torch.no_grad():
            return ((vae.decode(x, return_dict=False)[0].float() + 1) / 2).clamp(0, 1)

    def unpack_forward(self, a):
        if a.get("block_controlnet_hidden_states") is not None or a.get("skip_layers"):
            raise ConfigError("ControlNet residuals and skipped layers change the block stack per call; the cached "
                              "SD3 transformer does not take them.")
        cond = {"encoder_hidden_states": a["encoder_hidden_states"], "pooled_projections": a["pooled_projections"]}
        return a["hidden_states"], a["timestep"], cond, a["return_dict"]

    def geometry(self, batch, height, width, frames=1):
        p, most = self.config.patch_size, self.config.pos_embed_max_size
        if height % p or width % p:
            raise ShapeError(f"SD3 latents must be multiples of the patch size {p} (got {height}x{width}).")
        if max(height, width) // p > most:
            raise ShapeError(f"SD3's position embedding covers at most {most * p} latent pixels a side "
                             f"(got {height}x{width}).")
        tokens = (height // p) * (width // p)
        return LatentGeometry(shape=(batch, self.config.in_channels, height, width), tokens=tokens)

    def unpatchify(self, tokens, latent_shape):
        p, c = self.config.patch_size, self.config.out_channels
        h, w = latent_shape[-2] // p, latent_shape[-1] // p
        x = torch.einsum("nhwpqc->nchpwq", tokens.reshape(tokens.shape[0], h, w, p, p, c))
        return x.reshape(tokens.shape[0], c, h * p, w * p)

    def reference_scheduler(self):
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(shift=self.flow_shift)

    CLIP_TOKENS = 77  # both CLIP encoders' length; T5's tokens follow them in encoder_hidden_states

    def pipeline_text_tokens(self, pipeline):
        # StableDiffusion3Pipeline: CLIP's 77 tokens, then T5's max_sequence_length (256 by default, at most 512)
        clip = tokenizer_max_length(pipeline, "tokenizer") or self.CLIP_TOKENS
        return clip + min(256, tokenizer_max_length(pipeline, "tokenizer_3") or 256)

    def prompt_tokens(self, pipe, prompt):
        return len(pipe.tokenizer_3(prompt).input_ids), pipe.tokenizer_max_length


class SD3Parts(TorchParts):
    def prepare_part(self, named):
        return {"context": self.transformer.context_embedder(named["encoder_hidden_states"])}

    def head(self, latents, timestep, prepared):
        t = self.transformer
        hidden_states = t.pos_embed(latents).contiguous()  # patches plus the position embedding
        temb = t.time_text_embed(timestep, prepared["pooled_projections"])
        return {**prepared, "hidden_states": hidden_states, "temb": temb}

    def blocks(self, step):
        hidden, context, temb = step["hidden_states"], step["context"], step["temb"]
        for block in self.transformer.transformer_blocks:
            context, hidden = block(hidden_states=hidden, encoder_hidden_states=context, temb=temb)
        return hidden

    def tail_tokens(self, x_out, step):
        t = self.transformer
        return t.proj_out(t.norm_out(x_out, step["temb"]))

    def forward_unsplit(self, latents, timestep, cond):
        self.family.check_inputs(latents, cond)
        return self.transformer(hidden_states=latents, timestep=timestep,
                                encoder_hidden_states=cond["encoder_hidden_states"],
                                pooled_projections=cond["pooled_projections"], return_dict=False)[0]

    def modulated_input(self, step):
        return self.transformer.transformer_blocks[0].norm1(step["hidden_states"], emb=step["temb"])[0]
