"""The second shipped model, "demo-dit": a small class-conditional DiT trained by the project itself.

A model of another family than the FLUX demo, so that caching is judged on two kinds of trajectory:
diffusers' ``DiTTransformer2DModel`` (AdaLN-zero blocks, class labels, epsilon prediction on DDPM's
linear-beta schedule, sampled with DDIM and classifier-free guidance against the null class) trained
on the same eight photographs as the demo model, one class each (models/demo.CLASSES).

Pixels are the latents: an image [3, 32, 32] in [-1, 1] is space-to-depth'd to [12, 16, 16]; patches
of 2 make 8 x 8 = 64 tokens of hidden 256. The weights ship as a plain diffusers folder
(demo_dit_weights/: config.json + fp16 safetensors), so every command that takes a model folder takes
it too; "demo-dit" is its built-in name. Retrain with ``python -m research.train_demo_dit``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ModelNotFoundError
from .demo import CLASSES
from .model import Model

NAME = "demo-dit"
LATENT_CHANNELS, LATENT_SIZE = 12, 16  # space-to-depth of a 3 x 32 x 32 image
TRANSFORMER_CONFIG = dict(
    num_attention_heads=8, attention_head_dim=32, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
    num_layers=6, sample_size=LATENT_SIZE, patch_size=2, num_embeds_ada_norm=len(CLASSES),
)
# DDPM's training schedule, the one the DiT family samples with (DDIM over the same betas)
TRAIN_TIMESTEPS, BETA_START, BETA_END = 1000, 1e-4, 0.02


def weights_folder() -> Path:
    return Path(str(resources.files("tcpade_trt.models") / "demo_dit_weights"))


def images_to_latents(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, 32, 32] in [-1, 1] -> latents [B, 12, 16, 16]."""
    return F.pixel_unshuffle(images, 2)


def latents_to_images(latents: torch.Tensor) -> torch.Tensor:
    """Latents [B, 12, 16, 16] -> images [B, 3, 32, 32], clamped to [-1, 1]."""
    return F.pixel_shuffle(latents, 2).clamp(-1, 1)


def build_demo_dit(seed: int | None = None):
    """A fresh (untrained) demo-dit transformer."""
    from diffusers import DiTTransformer2DModel

    if seed is not None:
        torch.manual_seed(seed)
    return DiTTransformer2DModel(**TRANSFORMER_CONFIG)


def load_demo_dit(folder: Path | None = None) -> Model:
    """The shipped, trained demo-dit model (fp32, CPU, eval mode), with its calibrated schedules if any."""
    from diffusers import DiTTransformer2DModel

    from .families.dit import DiTFamily, DiTParts

    folder = Path(folder) if folder is not None else weights_folder()
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"the demo-dit weights are missing ({folder}); reinstall tcpade-trt or retrain "
                                 "them with `python -m research.train_demo_dit` in a clone of the repository.")
    try:  # stored as fp16 to keep the checkout small; the model runs in fp32
        transformer = DiTTransformer2DModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
    except (OSError, ValueError, RuntimeError) as exc:  # truncated weights, a config that does not fit
        raise ModelNotFoundError(f"the demo-dit weights in {folder} do not load ({str(exc).splitlines()[0][:200]}); "
                                 "retrain them with `python -m research.train_demo_dit` in a clone of the "
                                 "repository.") from None
    family = DiTFamily(transformer.config)
    model = Model(NAME, family, DiTParts(transformer, family), latent_size=(LATENT_SIZE, LATENT_SIZE, 1))
    calibration = folder / "calibration.json"  # `tcpade-trt calibrate demo-dit --out ...`
    if calibration.is_file():
        from ..cache.calibrate import load_calibration

        model.calibrated = load_calibration(calibration)
    return model
