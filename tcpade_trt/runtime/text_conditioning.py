"""Prompt conditioning from a local diffusers pipeline folder (text encoders + VAE), for text-conditioned
families (FLUX, Wan).

The engine folder holds only the transformer's parts; the text encoders and the VAE come from the
pipeline folder the user downloaded. Nothing is fetched. What is family-specific (which pipeline,
how a prompt becomes the conditioning, how latents become pixels) is the family's
(``Family.encode_prompt`` / ``Family.decode``); this module loads the pipeline and writes the result.
"""

from __future__ import annotations

import gc
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import torch

from ..engines import gpu
from ..errors import ConfigError
from ..models.model import Model
from .images import save_images, save_video


def pipeline_placement(model: Model) -> tuple[torch.device, torch.dtype]:
    """Where a pipeline's text encoders and VAE run beside ``model``'s engines: on their GPU in bf16 (T5-XXL: 9.5 GB
    there instead of 19 GB of host memory and seconds of CPU per prompt), else on the host in fp32."""
    if getattr(model.parts, "stream", None) is not None:
        return torch.device(model.device), torch.bfloat16
    return torch.device("cpu"), torch.float32


def pipeline_vae(model: Model, pipeline: str | Path):
    """The VAE of a local pipeline folder (pipeline/vae), placed beside the engines: what turns a class-conditional
    folder's latents (DiT) into pixels."""
    from diffusers import AutoencoderKL

    folder = Path(pipeline) / "vae"
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{pipeline} holds no VAE (vae/config.json); pass the model's pipeline folder.")
    device, dtype = pipeline_placement(model)
    return AutoencoderKL.from_pretrained(folder, torch_dtype=dtype).to(device).eval()


def encode_prompts(model: Model, pipeline: Path, prompts: list[str], shape) -> tuple[dict, dict | None, float | None]:
    """(cond, negative cond or None, guidance scale or None) of ``prompts`` (one sample each) through a pipeline
    folder's text encoders, for a build's ``shape`` (its text tokens); the encoders are freed afterwards."""
    import diffusers

    family = model.family
    device = torch.device(model.device)  # beside the model being built: on its GPU in bf16, or the host in fp32
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    pipe = getattr(diffusers, family.pipeline_class).from_pretrained(pipeline, transformer=None, vae=None,
                                                                      torch_dtype=dtype).to(device)
    encoded = [family.encode_prompt(pipe, p, 1, height=shape.height, width=shape.width, text_tokens=shape.text_tokens)
               for p in prompts]
    del pipe  # T5-XXL's 10 GB back to the driver before the model's quantized copy is made
    gc.collect()
    gpu.release_cached_memory()
    joined = lambda conds: {k: v.to(device) for k, v in family.cat_cond([_float32(c) for c in conds]).items()}
    negative = joined([n for _, n, _ in encoded]) if encoded[0][1] is not None else None
    return joined([c for c, _, _ in encoded]), negative, encoded[0][2]


class PromptEncoder:
    """A local pipeline folder's text encoders and VAE, loaded once (a server replica keeps one for all its
    requests). ``encode`` may be called from several threads: fast tokenizers refuse concurrent use
    ("Already borrowed"), so calls take turns. The last ``cache_size`` encodings are kept: a served prompt that
    comes again (a popular prompt, a retry, a sweep over seeds) skips the text encoders (T5-XXL is tens of ms
    on a GPU). The kept tensors are never written to: the sampler builds its batch from copies."""

    def __init__(self, model: Model, pipeline: str | Path, cache_size: int = 256):
        import diffusers

        family = model.family
        if family.pipeline_class is None:
            raise ConfigError(f"prompts are for text-conditioned models; this folder holds {family.title}, which "
                              "is conditioned by class labels: give a class instead.")
        folder = Path(pipeline)
        if not (folder / "model_index.json").is_file():
            raise ConfigError(f"{folder} is not a diffusers pipeline folder (no model_index.json).")
        self.family, self.folder = family, folder
        device, dtype = pipeline_placement(model)
        self.pipe = getattr(diffusers, family.pipeline_class).from_pretrained(folder, transformer=None,
                                                                               torch_dtype=dtype).to(device)
        self.height, self.width, _ = model.latent_size
        self.text_tokens = model.parts.manifest.shape["text_tokens"]
        self.folder_name = str(getattr(model.parts, "folder", "the engine folder"))
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple, tuple] = OrderedDict()
        self.cache_size = cache_size

    def encode(self, prompt: str, batch: int = 1, negative_prompt: str = "", guidance_scale: float | None = None):
        """(cond, negative_cond or None, the sampler's guidance scale or None) for ``batch`` copies of ``prompt``."""
        key = (prompt, batch, negative_prompt, guidance_scale)
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
            for text in (prompt, negative_prompt):
                self.warn_if_cut(text)
            cond, negative, scale = self.family.encode_prompt(
                self.pipe, prompt, batch, height=self.height, width=self.width, text_tokens=self.text_tokens,
                negative_prompt=negative_prompt, guidance_scale=guidance_scale)
            encoded = (_float32(cond), _float32(negative) if negative is not None else None, scale)
            if self.cache_size > 0:
                self._kept[key] = encoded
                if len(self._kept) > self.cache_size:
                    self._kept.popitem(last=False)
            return encoded

    def warn_if_cut(self, prompt: str) -> None:
        """Say so when a prompt is longer than the folder's text tokens (its encoder would cut it silently)."""
        if not prompt:
            return
        tokens, others = self.family.prompt_tokens(self.pipe, prompt)
        room = self.text_tokens - others
        if tokens > room:
            warnings.warn(f"the prompt is {tokens} tokens long, but {self.folder_name} was built for {room}: "
                          f"the text encoder keeps the first {room}. Rebuild with --text-tokens {tokens + others} "
                          "to keep all of it.", stacklevel=3)

    def pixels(self, latents: torch.Tensor) -> torch.Tensor:
        """Final latents -> images [B, 3, H, W] in [0, 1] (video: [B, 3, F, H, W]) through the pipeline's VAE."""
        return self.family.decode(self.pipe.vae, latents, self.height, self.width)

    def write(self, latents: torch.Tensor, path: Path) -> Path:
        pixels = self.pixels(latents)
        return save_video(pixels[0] * 2 - 1, path) if self.family.video else save_images(pixels, path)


def _float32(cond: dict) -> dict:
    """The conditioning in float32, as the engines take it (text encoders on a GPU run in bf16)."""
    return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in cond.items()}
