"""The shipped demo model: a small FLUX-architecture transformer trained by the project itself.

It generates 32x32 RGB crops of eight scikit-image sample photographs, one class per photograph.
Pixels are the "latents": an image [3, 32, 32] in [-1, 1] is space-to-depth'd to [12, 16, 16]
(the latent image), which FLUX packing turns into 8 x 8 = 64 tokens of 48 channels. The class
conditions the model through the text stream: 4 learned tokens [4, 64] plus a pooled vector [64].
Train it again with ``python -m research.train_demo`` (see MODEL_CARD.md).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import FluxTransformer2DModel
from torch import nn

from ..errors import ModelNotFoundError
from .families.flux import FluxFamily, FluxParts, latent_image_ids, pack_latents, unpack_latents
from .model import Model

CLASSES = (
    "astronaut", "chelsea", "coffee", "rocket",
    "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel",
)
IMAGE_SIZE = 32
LATENT_CHANNELS, LATENT_SIZE = 12, 16  # space-to-depth of a 3 x 32 x 32 image
TEXT_TOKENS = 4
TRANSFORMER_CONFIG = dict(
    patch_size=1, in_channels=48, num_layers=2, num_single_layers=4, attention_head_dim=32,
    num_attention_heads=16, joint_attention_dim=64, pooled_projection_dim=64, guidance_embeds=False,
    axes_dims_rope=(8, 12, 12),
)
WEIGHTS_FILE = "demo.safetensors"


class ClassConditioner(nn.Module):
    """Class index -> (text tokens [B, 4, 64], pooled vector [B, 64]), both learned."""

    def __init__(self, num_classes: int = len(CLASSES)):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(num_classes, TEXT_TOKENS, 64) * 0.5)
        self.pooled = nn.Parameter(torch.randn(num_classes, 64) * 0.5)

    def forward(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"encoder_hidden_states": self.tokens[labels], "pooled_projections": self.pooled[labels]}

    def conditioning(self, labels: torch.Tensor, device, dtype) -> dict[str, torch.Tensor]:
        """The whole FLUX conditioning dict for class indices [B] (the torch model and its engine folders
        alike). Trainable: the embeddings get their gradients through this call."""
        cond = {k: v.to(device, dtype) for k, v in self(labels.to(self.tokens.device)).items()}
        cond["txt_ids"] = torch.zeros(TEXT_TOKENS, 3, device=device, dtype=dtype)
        cond["img_ids"] = latent_image_ids(LATENT_SIZE, LATENT_SIZE).to(device, dtype)
        return cond


def images_to_latents(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, 32, 32] in [-1, 1] -> packed latents [B, 64, 48]."""
    return pack_latents(F.pixel_unshuffle(images, 2))


def latents_to_images(latents: torch.Tensor) -> torch.Tensor:
    """Packed latents [B, 64, 48] -> images [B, 3, 32, 32], clamped to [-1, 1]."""
    return F.pixel_shuffle(unpack_latents(latents, LATENT_SIZE, LATENT_SIZE), 2).clamp(-1, 1)


def demo_config(heads: int = TRANSFORMER_CONFIG["num_attention_heads"]) -> dict:
    """The demo transformer's config with ``heads`` attention heads of 32 (hidden size 32 * heads).

    The shipped model has 16 (hidden 512): onnxruntime's INT8 linears gain with the width (1.5x at
    128, 3x at 512 on the development VM, scripts/int8_by_width.py), so a narrow demo model would
    hide what quantization gives; tests train narrower ones in seconds."""
    return {**TRANSFORMER_CONFIG, "num_attention_heads": heads}


def build_demo_model(heads: int = TRANSFORMER_CONFIG["num_attention_heads"]) -> Model:
    """A demo model with fresh (untrained) weights: a FLUX transformer and the class conditioner."""
    transformer = FluxTransformer2DModel(**demo_config(heads))
    family = FluxFamily(transformer.config)
    return Model("demo", family, FluxParts(transformer, family), conditioner=ClassConditioner(),
                 latent_size=(LATENT_SIZE, LATENT_SIZE, 1))


def weights_path():
    return resources.files("tcpade_trt.models") / "demo_weights" / WEIGHTS_FILE


def load_demo_model(path=None) -> Model:
    """The shipped, trained demo model (fp32, CPU, eval mode); ``path``: another weights file
    written by research/train_demo.py."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else weights_path()
    if not path.is_file():
        raise ModelNotFoundError(
            f"the demo weights are missing ({path}); reinstall tcpade-trt or retrain them with "
            "`python -m research.train_demo` in a clone of the repository."
        )
    # stored as fp16 to halve the checkout (research/train_demo.py); the model runs in fp32
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    # the width is read from the weights (x_embedder: [hidden, 48]), so a retrained wider model loads as is
    hidden = state["transformer.x_embedder.weight"].shape[0]
    model = build_demo_model(heads=hidden // TRANSFORMER_CONFIG["attention_head_dim"])
    model.transformer.load_state_dict({k[len("transformer."):]: v for k, v in state.items()
                                       if k.startswith("transformer.")})
    model.conditioner.load_state_dict({k[len("conditioner."):]: v for k, v in state.items()
                                       if k.startswith("conditioner.")})
    model.transformer.eval()
    calibration = path.with_name("calibration.json")  # `tcpade-trt calibrate demo --out ...` for these weights
    if path == weights_path() and calibration.is_file():
        from ..cache.calibrate import load_calibration

        model.calibrated = load_calibration(calibration)
    return model
