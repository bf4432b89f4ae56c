"""Turning a name or a local folder into a SplitModel; nothing is ever downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelNotFoundError, UnsupportedModelError
from .base import SplitModel
from .dit import DiTSplit
from .flux import FluxSplit
from .wan import WanSplit

# diffusers class name -> adapter
ADAPTERS: dict[str, type[SplitModel]] = {
    "FluxTransformer2DModel": FluxSplit,
    "WanTransformer3DModel": WanSplit,
    "DiTTransformer2DModel": DiTSplit,
}

SUPPORTED = "FLUX.1 (FluxTransformer2DModel), Wan2.1 (WanTransformer3DModel) and DiT (DiTTransformer2DModel)"

# Tiny random configs of each family, used by tests and smoke runs.
TINY_CONFIGS: dict[str, tuple[str, dict]] = {
    "tiny-flux": ("FluxTransformer2DModel", dict(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=24, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )),
    "tiny-wan": ("WanTransformer3DModel", dict(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=48, num_layers=2, rope_max_seq_len=32,
    )),
    "tiny-dit": ("DiTTransformer2DModel", dict(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
        sample_size=8, patch_size=2, num_embeds_ada_norm=1000, norm_num_groups=1,
    )),
}


# latent height, width, frames a build targets when none is given, by built-in name or family
DEFAULT_BUILD_SHAPES: dict[str, tuple[int, int, int]] = {
    "demo": (16, 16, 1), "tiny-flux": (8, 8, 1), "tiny-wan": (8, 8, 3), "tiny-dit": (8, 8, 1),
    "flux": (128, 128, 1),  # 1024 x 1024 images
    "wan": (60, 104, 21),  # 480 x 832, 81 frames
    "dit": (32, 32, 1),  # 256 x 256 images
}


def default_build_shape(name: str, family: str) -> tuple[int, int, int]:
    return DEFAULT_BUILD_SHAPES.get(name, DEFAULT_BUILD_SHAPES[family])


def split_model(transformer: nn.Module, name: str = "") -> SplitModel:
    """Wrap an unmodified diffusers transformer in the adapter of its family."""
    cls = type(transformer).__name__
    if cls not in ADAPTERS:
        raise UnsupportedModelError(f"{cls} is not supported; supported families are {SUPPORTED}.")
    return ADAPTERS[cls](transformer, name=name)


def _diffusers_class(name: str):
    import diffusers

    return getattr(diffusers, name)


def tiny_model(name: str, seed: int = 0) -> SplitModel:
    """A tiny random model of one family (seeded, so every call gives the same weights)."""
    cls_name, config = TINY_CONFIGS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = _diffusers_class(cls_name)(**config)
    return split_model(transformer.eval(), name=name)


def _transformer_folder(path: Path) -> Path:
    """A pipeline root (model_index.json + transformer/) or a transformer folder itself."""
    if (path / "transformer" / "config.json").is_file():
        return path / "transformer"
    if (path / "config.json").is_file():
        return path
    raise ModelNotFoundError(
        f"{path} holds neither a diffusers pipeline (transformer/config.json) nor a transformer "
        "(config.json); pass the folder that contains one."
    )


def model_family(name_or_path: str | Path) -> str:
    """The family ("flux", "wan", "dit") of a built-in name or a local folder, from its config alone:
    a bad name or folder is one sentence before any weights are read."""
    name = str(name_or_path)
    if name == "demo":
        return "flux"
    cls_name = TINY_CONFIGS[name][0] if name in TINY_CONFIGS else _folder_class(name)[1]
    return ADAPTERS[cls_name].family


def _folder_class(name: str) -> tuple[Path, str]:
    """(transformer folder, diffusers class name) of a local model folder, or one sentence."""
    path = Path(name).expanduser()
    if not path.exists():
        if "/" in name and not name.startswith((".", "/", "~")):
            raise ModelNotFoundError(
                f"'{name}' looks like a model-hub id, but tcpade-trt never downloads: download the model "
                "(e.g. `huggingface-cli download " + name + "`) and pass its local folder."
            )
        builtin = ", ".join([*TINY_CONFIGS, "demo"])
        raise ModelNotFoundError(f"'{name}' is neither a local folder nor a built-in model ({builtin}).")
    if not path.is_dir():
        raise ModelNotFoundError(f"{path} is a file; pass a diffusers model folder (with config.json) or a built-in "
                                 "model name.")
    folder = _transformer_folder(path)
    try:
        cls_name = json.loads((folder / "config.json").read_text()).get("_class_name", "?")
    except (OSError, ValueError, AttributeError):
        raise ModelNotFoundError(f"{folder / 'config.json'} is not a readable diffusers config.") from None
    if cls_name not in ADAPTERS:
        raise UnsupportedModelError(f"{folder} holds a {cls_name}; supported families are {SUPPORTED}.")
    return folder, cls_name


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> SplitModel:
    """A model by built-in name (tiny-flux, tiny-wan, tiny-dit, demo) or local diffusers folder."""
    name = str(name_or_path)
    if name in TINY_CONFIGS:
        return _to(tiny_model(name), device, dtype)
    if name == "demo":
        from .demo import load_demo_model

        return _to(load_demo_model(), device, dtype)
    folder, cls_name = _folder_class(name)
    transformer = _diffusers_class(cls_name).from_pretrained(folder, torch_dtype=dtype)
    return _to(split_model(transformer.eval(), name=str(Path(name).expanduser())), device, dtype)


def _to(model: SplitModel, device, dtype) -> SplitModel:
    # cast only when needed: diffusers warns on casting models that keep some modules in fp32
    if model.dtype != dtype:
        model.transformer.to(dtype=dtype)
    return model if model.device == torch.device(device) else _move(model, device)


def _move(model: SplitModel, device) -> SplitModel:
    model.transformer.to(device=device)
    if hasattr(model, "conditioner"):
        model.conditioner.to(device=device)
    return model
