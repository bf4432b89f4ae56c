"""DiT (DiT-XL/2): diffusers ``DiTTransformer2DModel`` split into head / blocks / tail.

Shapes (B batch, C latent channels, H = W latent size, p patch, S = (H/p)^2 tokens, D hidden):
    latents [B, C, H, W]; class_labels [B] (long; the null class for CFG is num_embeds_ada_norm)
Blocks inputs: hidden_states [B, S, D], timestep [B], class_labels [B]. Every DiT block has its
own AdaLN-zero embedding of (timestep, class), so the block stack takes them raw.
The output has 2C channels when the model learns its variance; the sampler uses the first C.
Class-conditional, with classifier-free guidance against the null class (default scale 4.0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import ConfigError, ShapeError, check_shape
from ..family import Family, LatentGeometry, vae_input
from ..parts import TorchParts


class DiTFamily(Family):
    name = "dit"
    diffusers_class = "DiTTransformer2DModel"
    title = "DiT"
    default_guidance = 4.0
    default_build_shape = (32, 32, 1)  # 256 x 256 images
    tiny_config = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
                       sample_size=8, patch_size=2, num_embeds_ada_norm=1000, norm_num_groups=1)
    PREPARE_INPUTS = ("class_labels",)
    PREPARE_OUTPUTS = ()  # nothing prompt-only to precompute: class labels go straight to the blocks
    HEAD_OUTPUTS = ("hidden_states",)
    BLOCK_INPUTS = ("hidden_states", "timestep", "class_labels")
    TAIL_INPUTS = ("timestep", "class_labels")
    MODULATED_INPUTS = ("hidden_states", "timestep", "class_labels")

    @property
    def COND_INPUTS(self):  # noqa: N802
        return ("class_labels",)

    @property
    def num_classes(self) -> int:
        return self.config.num_embeds_ada_norm  # labels 0 .. n-1; n is the null class of guidance

    def check_inputs(self, latents, cond):
        self.check_cond_keys(cond)
        check_shape("latents", latents, (None, self.config.in_channels, None, None))
        b, _, h, w = latents.shape
        self.geometry(b, h, w)  # square, a multiple of the patch
        labels = cond["class_labels"]
        check_shape("class_labels", labels, (b,))
        if labels.dtype.is_floating_point or not bool(((labels >= 0) & (labels <= self.num_classes)).all()):
            raise ShapeError(f"class_labels must be whole numbers from 0 to {self.num_classes - 1} (and "
                             f"{self.num_classes}, the null class, for the unconditional half of guidance).")

    def class_label(self, text: str) -> int:
        """A class given on the command line, checked against the model's classes."""
        try:
            label = int(text)
        except ValueError:
            label = -1
        if not 0 <= label < self.num_classes:
            raise ConfigError(f"--class {text!r}: this DiT model's classes are the whole numbers 0 to "
                              f"{self.num_classes - 1}.")
        return label

    def class_cond(self, labels):
        return {"class_labels": labels.to(self.device)}

    def example_cond(self, geometry, *, height, width, text_tokens=8, generator=None):
        labels = torch.randint(0, self.num_classes, (geometry.shape[0],), generator=generator)
        return {"class_labels": labels.to(self.device)}

    def uncond(self, cond):
        labels = cond["class_labels"]
        return {"class_labels": torch.full_like(labels, self.num_classes)}

    def unpack_forward(self, a):
        timestep, latents = a["timestep"], a["hidden_states"]
        if timestep.ndim == 0:
            timestep = timestep[None].expand(latents.shape[0])
        return latents, timestep, {"class_labels": a["class_labels"]}, a["return_dict"]

    def geometry(self, batch, height, width, frames=1):
        p = self.config.patch_size
        if height != width or height % p:
            raise ShapeError(f"DiT latents must be square and a multiple of the patch size {p} (got {height}x{width}).")
        tokens = (height // p) * (width // p)
        return LatentGeometry(shape=(batch, self.config.in_channels, height, width), tokens=tokens)

    def unpatchify(self, tokens, latent_shape):
        p = self.config.patch_size
        c = tokens.shape[-1] // (p * p)
        side = int(tokens.shape[1] ** 0.5)  # DiT is square, as its own forward assumes
        x = torch.einsum("nhwpqc->nchpwq", tokens.reshape(-1, side, side, p, p, c))
        return x.reshape(-1, c, side * p, side * p)

    def decode(self, vae, latents, height, width):
        """DiTPipeline's decode: latents / the VAE's scaling factor, through the VAE, to [0, 1]."""
        x = vae_input(vae, latents) / vae.config.scaling_factor
        with torch.no_grad():
            return ((vae.decode(x, return_dict=False)[0].float() + 1) / 2).clamp(0, 1)  # [B, 3, 8H, 8W]

    def reference_scheduler(self):
        from diffusers import DDIMScheduler

        # DiT's training schedule (linear betas, 1000 steps), sampled with DDIM: the released DiT-XL-2 pipelines'
        return DDIMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, clip_sample=False)

    # the policies' time axis on DDPM's discrete schedule: "timestep" (minus the integer timestep, evenly spaced:
    # the same fit as the step index), "log_snr" (log abar / (1 - abar)) or "sigma" (minus sqrt((1 - abar) / abar),
    # the variable DDIM is Euler in)
    TIME_AXIS = "timestep"

    def sampler_times(self, scheduler, model_timesteps):
        if self.TIME_AXIS == "timestep" or not hasattr(scheduler, "alphas_cumprod"):
            return super().sampler_times(scheduler, model_timesteps)
        abar = scheduler.alphas_cumprod.double()[model_timesteps[:, 0].long().cpu()]
        if self.TIME_AXIS == "log_snr":
            return torch.log(abar / (1 - abar)).tolist()
        return (-torch.sqrt((1 - abar) / abar)).tolist()

    def model_output_to_prediction(self, output, guidance_scale):
        c = self.config.in_channels
        eps = output[:, :c] if output.shape[1] != c else output  # drop the learned variance
        return super().model_output_to_prediction(eps, guidance_scale)


class DiTParts(TorchParts):
    def prepare_part(self, named):
        return {}

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

    def forward_unsplit(self, latents, timestep, cond):
        self.family.check_inputs(latents, cond)
        return self.transformer(latents, timestep=timestep, class_labels=cond["class_labels"], return_dict=False)[0]

    def modulated_input(self, step):
        norm1 = self.transformer.transformer_blocks[0].norm1
        x = step["hidden_states"]
        return norm1(x, step["timestep"], step["class_labels"], hidden_dtype=x.dtype)[0]
