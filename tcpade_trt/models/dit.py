"""DiT (DiT-XL/2): diffusers ``DiTTransformer2DModel`` split into head / blocks / tail.

Shapes (B batch, C latent channels, H = W latent size, p patch, S = (H/p)^2 tokens, D hidden):
    latents [B, C, H, W]; class_labels [B] (long; the null class for CFG is num_embeds_ada_norm)
Blocks inputs: hidden_states [B, S, D], timestep [B], class_labels [B]. Every DiT block has its
own AdaLN-zero embedding of (timestep, class), so the block stack takes them raw.
The output has 2C channels when the model learns its variance; the sampler uses the first C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from ..errors import ShapeError, check_shape
from .base import LatentGeometry, SplitModel, per_row


class DiTSplit(SplitModel):
    family = "dit"
    PREPARE_INPUTS = ("class_labels",)
    PREPARE_OUTPUTS = ()  # nothing prompt-only to precompute: class labels go straight to the blocks
    HEAD_OUTPUTS = ("hidden_states",)
    BLOCK_INPUTS = ("hidden_states", "timestep", "class_labels")
    TAIL_INPUTS = ("timestep", "class_labels")
    MODULATED_INPUTS = ("hidden_states", "timestep", "class_labels")

    COND_INPUTS = ("class_labels",)

    def _check(self, latents, cond):
        self.check_cond_keys(cond)
        cfg = self.config
        check_shape("latents", latents, (None, cfg.in_channels, None, None))
        b, _, h, w = latents.shape
        if h != w or h % cfg.patch_size:
            raise ShapeError(
                f"DiT latents must be square and a multiple of the patch size {cfg.patch_size} (got {h}x{w})."
            )
        check_shape("class_labels", cond["class_labels"], (b,))
        labels = cond["class_labels"]
        if labels.dtype.is_floating_point or not bool(((labels >= 0) & (labels <= self.null_class)).all()):
            raise ShapeError(f"class_labels must be whole numbers from 0 to {self.null_class - 1} (and "
                             f"{self.null_class}, the null class, for the unconditional half of guidance).")

    def prepare_part(self, named):
        return {}

    def prepare(self, latents, cond):
        self._check(latents, cond)
        return {"class_labels": cond["class_labels"], "_latent_shape": tuple(latents.shape)}

    def head(self, latents, timestep, prepared):
        return {**prepared, "hidden_states": self.transformer.pos_embed(latents), "timestep": timestep}

    def blocks(self, step):
        hidden = step["hidden_states"]
        for block in self.transformer.transformer_blocks:
            hidden = block(hidden, timestep=step["timestep"], class_labels=step["class_labels"])
        return hidden

    def tail_tokens(self, x_out, step):
        t = self.transformer
        cond = t.transformer_blocks[0].norm1.emb(step["timestep"], step["class_labels"], hidden_dtype=x_out.dtype)
        shift, scale = t.proj_out_1(F.silu(cond)).chunk(2, dim=1)
        return t.proj_out_2(t.norm_out(x_out) * (1 + scale[:, None]) + shift[:, None])

    def unpatchify(self, tokens, latent_shape):
        p = self.config.patch_size
        c = tokens.shape[-1] // (p * p)
        side = int(tokens.shape[1] ** 0.5)  # DiT is square, as its own forward assumes
        x = torch.einsum("nhwpqc->nchpwq", tokens.reshape(-1, side, side, p, p, c))
        return x.reshape(-1, c, side * p, side * p)

    def forward_unsplit(self, latents, timestep, cond):
        self._check(latents, cond)
        return self.transformer(latents, timestep=timestep, class_labels=cond["class_labels"], return_dict=False)[0]

    def modulated_input(self, step):
        norm1 = self.transformer.transformer_blocks[0].norm1
        x = step["hidden_states"]
        return norm1(x, step["timestep"], step["class_labels"], hidden_dtype=x.dtype)[0]

    def geometry(self, batch, height, width, frames=1):
        p = self.config.patch_size
        if height != width or height % p:
            raise ShapeError(f"DiT latents must be square and a multiple of the patch size {p} (got {height}x{width}).")
        tokens = (height // p) * (width // p)
        return LatentGeometry(shape=(batch, self.config.in_channels, height, width), tokens=tokens)

    def make_scheduler(self, num_steps, geometry):
        # DiT's training schedule (linear betas, 1000 steps), sampled with DDIM
        scheduler = DDIMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, clip_sample=False)
        scheduler.set_timesteps(num_steps, device=self.device)
        return scheduler

    def model_timestep(self, t, batch):
        return per_row(t, batch)

    def model_output_to_prediction(self, output, guidance_scale):
        c = self.config.in_channels
        eps = output[:, :c] if output.shape[1] != c else output  # drop the learned variance
        return super().model_output_to_prediction(eps, guidance_scale)

    @property
    def null_class(self) -> int:
        return self.config.num_embeds_ada_norm
