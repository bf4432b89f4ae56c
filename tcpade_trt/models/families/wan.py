"""Wan2.1 (T2V 1.3B / 14B): diffusers ``WanTransformer3DModel`` split into head / blocks / tail.

Shapes (B batch, C latent channels, F frames, H x W latent size, patch (pt, ph, pw),
S = (F/pt)(H/ph)(W/pw) image tokens, L text tokens, D hidden):
    latents               [B, C, F, H, W]
    encoder_hidden_states [B, L, text_dim] (umT5 output); encoder_hidden_states_image for I2V
Blocks inputs: hidden_states [B, S, D], context [B, L, D] (text tokens after the text
embedder: prompt-only, computed once), timestep_proj [B, 6, D], rope_cos / rope_sin [1, S, 1, head_dim].
Classifier-free guidance with the negative prompt (default scale 5.0).
"""

from __future__ import annotations

import torch

from ...errors import ShapeError, check_shape
from ..family import Family, LatentGeometry, tokenizer_max_length, vae_input
from ..parts import TorchParts


class WanFamily(Family):
    name = "wan"
    diffusers_class = "WanTransformer3DModel"
    title = "Wan2.1"
    pipeline_class = "WanPipeline"
    video = True
    default_guidance = 5.0
    default_build_shape = (60, 104, 21)  # 480 x 832, 81 frames
    tiny_config = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4,
                       out_channels=4, text_dim=32, freq_dim=32, ffn_dim=48, num_layers=2, rope_max_seq_len=32)
    flow_shift = 3.0  # Wan2.1's recommended shift at 480p (5.0 at 720p)
    PREPARE_INPUTS = ("latents", "encoder_hidden_states")  # latents: for the RoPE grid's shape only
    PREPARE_OUTPUTS = ("context", "rope_cos", "rope_sin")
    HEAD_OUTPUTS = ("hidden_states", "temb", "timestep_proj")
    BLOCK_INPUTS = ("hidden_states", "context", "timestep_proj", "rope_cos", "rope_sin")
    TAIL_INPUTS = ("temb",)
    MODULATED_INPUTS = ("hidden_states", "timestep_proj")

    @property
    def COND_INPUTS(self):  # noqa: N802
        return ("encoder_hidden_states",)

    def check_inputs(self, latents, cond):
        self.check_cond_keys(cond)
        cfg = self.config
        check_shape("latents", latents, (None, cfg.in_channels, None, None, None))
        b, _, f, h, w = latents.shape
        self.geometry(b, h, w, f)  # divisible by the patch
        check_shape("encoder_hidden_states", cond["encoder_hidden_states"], (b, None, cfg.text_dim))

    def example_cond(self, geometry, *, height, width, text_tokens=8, generator=None):
        b = geometry.shape[0]
        return {"encoder_hidden_states": torch.randn(b, text_tokens, self.config.text_dim,
                                                     generator=generator).to(self.device, self.dtype)}

    def uncond(self, cond):
        text = cond["encoder_hidden_states"]
        return {**cond, "encoder_hidden_states": torch.zeros_like(text)}

    def encode_prompt(self, pipe, prompt, batch, *, height, width, text_tokens, negative_prompt="",
                      guidance_scale=None):
        with torch.no_grad():
            embeds, negative = pipe.encode_prompt(prompt=[prompt] * batch, negative_prompt=[negative_prompt] * batch,
                                                  do_classifier_free_guidance=True, max_sequence_length=text_tokens)
        scale = guidance_scale if guidance_scale is not None else self.default_guidance
        return {"encoder_hidden_states": embeds}, {"encoder_hidden_states": negative}, scale

    def decode(self, vae, latents, height, width):
        latents = vae_input(vae, latents)
        column = lambda values: torch.tensor(values, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1, 1)
        mean, std = column(vae.config.latents_mean), 1.0 / column(vae.config.latents_std)
        with torch.no_grad():
            video = vae.decode(latents / std + mean, return_dict=False)[0].float()  # [B, 3, F, H, W] in [-1, 1]
        return ((video + 1) / 2).clamp(0, 1)

    def unpack_forward(self, a):
        cond = {"encoder_hidden_states": a["encoder_hidden_states"]}
        if a.get("encoder_hidden_states_image") is not None:
            cond["encoder_hidden_states_image"] = a["encoder_hidden_states_image"]
        return a["hidden_states"], a["timestep"], cond, a["return_dict"]

    def geometry(self, batch, height, width, frames=1):
        pt, ph, pw = self.config.patch_size
        if frames % pt or height % ph or width % pw:
            raise ShapeError(f"latents of {frames} frames x {height}x{width} are not divisible by the patch size "
                             f"{tuple(self.config.patch_size)}; pick frames, height and width that are multiples "
                             "of it.")
        tokens = (frames // pt) * (height // ph) * (width // pw)
        return LatentGeometry(shape=(batch, self.config.in_channels, frames, height, width), tokens=tokens)

    def spatial_size(self, latents):
        _, _, f, h, w = latents.shape
        return (h, w, f)

    def unpatchify(self, tokens, latent_shape):
        b, _, f, h, w = latent_shape
        pt, ph, pw = self.config.patch_size
        x = tokens.reshape(b, f // pt, h // ph, w // pw, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def reference_scheduler(self):
        """Flow matching with Wan2.1's shift at 480p (the released pipelines carry UniPC with flow_shift 3.0,
        used when the model comes from a pipeline folder)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(shift=self.flow_shift)

    def pipeline_text_tokens(self, pipeline):
        # WanPipeline.__call__'s max_sequence_length (512): the UMT5 embeddings, zero-padded to it
        return min(512, tokenizer_max_length(pipeline, "tokenizer") or 512)

    def prompt_tokens(self, pipe, prompt):
        return len(pipe.tokenizer(prompt).input_ids), 0


class WanParts(TorchParts):
    def prepare_part(self, named):
        t = self.transformer
        text = t.condition_embedder.text_embedder(named["encoder_hidden_states"])
        image = named.get("encoder_hidden_states_image")
        if image is not None:
            text = torch.concat([t.condition_embedder.image_embedder(image), text], dim=1)
        cos, sin = t.rope(named["latents"])
        return {"context": text, "rope_cos": cos, "rope_sin": sin}

    def head(self, latents, timestep, prepared):
        t = self.transformer
        hidden_states = t.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
        emb = t.condition_embedder
        proj = emb.timesteps_proj(timestep)
        time_dtype = next(iter(emb.time_embedder.parameters())).dtype
        if proj.dtype != time_dtype and time_dtype != torch.int8:
            proj = proj.to(time_dtype)
        # WanTimeTextImageEmbedding casts temb to the text embedding's dtype, i.e. the model's
        temb = emb.time_embedder(proj).to(t.patch_embedding.weight.dtype)
        timestep_proj = emb.time_proj(emb.act_fn(temb)).unflatten(1, (6, -1))
        return {**prepared, "hidden_states": hidden_states, "temb": temb, "timestep_proj": timestep_proj}

    def blocks(self, step):
        hidden = step["hidden_states"]
        rope = (step["rope_cos"], step["rope_sin"])
        for block in self.transformer.blocks:
            hidden = block(hidden, step["context"], step["timestep_proj"], rope)
        return hidden

    def tail_tokens(self, x_out, step):
        t = self.transformer
        shift, scale = (t.scale_shift_table.to(step["temb"].device) + step["temb"].unsqueeze(1)).chunk(2, dim=1)
        x = (t.norm_out(x_out.float()) * (1 + scale) + shift).type_as(x_out)
        return t.proj_out(x)

    def forward_unsplit(self, latents, timestep, cond):
        self.family.check_inputs(latents, cond)
        return self.transformer(hidden_states=latents, timestep=timestep,
                                encoder_hidden_states=cond["encoder_hidden_states"],
                                encoder_hidden_states_image=cond.get("encoder_hidden_states_image"),
                                return_dict=False)[0]

    def modulated_input(self, step):
        block = self.transformer.blocks[0]
        shift, scale = (block.scale_shift_table + step["timestep_proj"].float()).chunk(6, dim=1)[:2]
        x = step["hidden_states"]
        return (block.norm1(x.float()) * (1 + scale) + shift).type_as(x)
