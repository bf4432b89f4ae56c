"""From a name, a folder, a transformer or an engine manifest to a Model; nothing is ever downloaded.

The families are discovered: every module in models/families/ that defines a Family subclass and
its Parts subclass (named <Name>Family and <Name>Parts) is one. Adding a family is adding that file.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelNotFoundError, UnsupportedModelError
from . import families
from .family import Family
from .model import Model
from .parts import TorchParts

# built-in models besides the trained demos ("demo": FLUX, "demo-dit": DiT): "tiny-" + a family's name,
# from its tiny_config
TINY_PREFIX = "tiny-"
DEMO_MODELS = ("demo", "demo-dit")


@cache
def family_classes() -> dict[str, tuple[type[Family], type[TorchParts]]]:
    """diffusers class name -> (Family subclass, its torch Parts), for every module in models/families/."""
    found = {}
    for info in pkgutil.iter_modules(families.__path__):
        module = importlib.import_module(f"{families.__name__}.{info.name}")
        for attr in vars(module).values():
            if isinstance(attr, type) and issubclass(attr, Family) and attr.__module__ == module.__name__:
                parts = getattr(module, attr.__name__.replace("Family", "Parts"))
                found[attr.diffusers_class] = (attr, parts)
    return found


def supported() -> str:
    return ", ".join(f"{f.title} ({name})" for name, (f, _) in family_classes().items())


def tiny_names() -> tuple[str, ...]:
    return tuple(TINY_PREFIX + f.name for f, _ in family_classes().values())


def is_text_conditioned(class_name: str, model_name: str) -> bool:
    """Whether a model (diffusers class, model name: an engine manifest's) is conditioned by prompts; the demo
    models are FLUX- and DiT-shaped but conditioned by class."""
    family = family_classes().get(class_name, (None,))[0]
    return family is not None and family.pipeline_class is not None and model_name not in DEMO_MODELS


def family_for(class_name: str, config, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, scheduler_config: dict | None = None) -> Family:
    """The weightless family of a diffusers class name and its config (e.g. from an engine manifest)."""
    if class_name not in family_classes():
        raise UnsupportedModelError(f"{class_name} is not supported; supported families are {supported()}.")
    return family_classes()[class_name][0](config, device=device, dtype=dtype, scheduler_config=scheduler_config)


def split_model(transformer: nn.Module, name: str = "") -> Model:
    """An unmodified diffusers transformer as a Model (its family and torch parts)."""
    class_name = type(transformer).__name__
    family_cls, parts_cls = family_classes().get(class_name, (None, None))
    if family_cls is None:
        raise UnsupportedModelError(f"{class_name} is not supported; supported families are {supported()}.")
    parameter = next(transformer.parameters())
    family = family_cls(transformer.config, device=parameter.device, dtype=parameter.dtype)
    return Model(name or class_name, family, parts_cls(transformer, family))


def _diffusers_class(name: str):
    import diffusers

    return getattr(diffusers, name)


def tiny_model(name: str, seed: int = 0) -> Model:
    """A tiny random model of one family, "tiny-" + its name (seeded: every call gives the same weights)."""
    family = next((f for f, _ in family_classes().values() if TINY_PREFIX + f.name == name), None)
    if family is None:
        raise ModelNotFoundError(f"no built-in {name!r}; tiny models are {', '.join(tiny_names())}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = _diffusers_class(family.diffusers_class)(**family.tiny_config)
    return split_model(transformer.eval(), name=name)


def _transformer_folder(path: Path) -> Path:
    """A pipeline root (model_index.json + transformer/) or a transformer folder itself."""
    if (path / "transformer" / "config.json").is_file():
        return path / "transformer"
    if (path / "config.json").is_file():
        return path
    raise ModelNotFoundError(f"{path} holds neither a diffusers pipeline (transformer/config.json) nor a transformer "
                             "(config.json); pass the folder that contains one.")


@dataclass(frozen=True)
class TrainedClasses:
    """A shipped demo model's I/O: its class names, and its own decoder (latents -> images in [-1, 1])."""

    names: tuple[str, ...]
    decode: Callable[[torch.Tensor], torch.Tensor]


def trained_classes(model_name: str) -> TrainedClasses | None:
    """The class names and decoder of a shipped demo model ("demo", "demo-dit"; an engine folder's manifest
    name), or None for every other model: the one place outside the demos' own files that tells them apart."""
    if model_name not in DEMO_MODELS:
        return None
    from . import demo, demo_dit

    decode = demo.latents_to_images if model_name == "demo" else demo_dit.latents_to_images
    return TrainedClasses(tuple(demo.CLASSES), decode)


def model_family(name_or_path: str | Path) -> type[Family]:
    """The Family class of a built-in name or a local folder, from its config alone: a bad name or folder is
    one sentence before any weights are read."""
    name = str(name_or_path)
    if name == "demo":
        return family_classes()["FluxTransformer2DModel"][0]
    if name == "demo-dit":
        return family_classes()["DiTTransformer2DModel"][0]
    for family, _ in family_classes().values():
        if name == TINY_PREFIX + family.name:
            return family
    return family_classes()[_folder_class(name)[1]][0]


def _folder_class(name: str) -> tuple[Path, str]:
    """(transformer folder, diffusers class name) of a local model folder, or one sentence."""
    path = Path(name).expanduser()
    if not path.exists():
        if "/" in name and not name.startswith((".", "/", "~")):
            raise ModelNotFoundError(
                f"'{name}' looks like a model-hub id, but tcpade-trt never downloads: download the model "
                "(e.g. `huggingface-cli download " + name + "`) and pass its local folder."
            )
        builtin = ", ".join([*tiny_names(), *DEMO_MODELS])
        raise ModelNotFoundError(f"'{name}' is neither a local folder nor a built-in model ({builtin}).")
    if not path.is_dir():
        raise ModelNotFoundError(f"{path} is a file; pass a diffusers model folder (with config.json) or a built-in "
                                 "model name.")
    folder = _transformer_folder(path)
    try:
        cls_name = current_class_name(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError, AttributeError):
        raise ModelNotFoundError(f"{folder / 'config.json'} is not a readable diffusers config.") from None
    if cls_name not in family_classes():
        raise UnsupportedModelError(f"{folder} holds a {cls_name}; supported families are {supported()}.")
    return folder, cls_name


# what diffusers loads a legacy class name as, by the config's norm_type (its _CLASS_REMAPPING_DICT, used when
# diffusers' private copy cannot be imported): the released DiT-XL/2 and PixArt checkpoints say Transformer2DModel
LEGACY_CLASSES = {"Transformer2DModel": {"ada_norm_zero": "DiTTransformer2DModel",
                                         "ada_norm_single": "PixArtTransformer2DModel"}}


def current_class_name(config: dict) -> str:
    """The diffusers class a saved transformer config loads as: its ``_class_name``, or the class diffusers maps
    a legacy name to (models/model_loading_utils._fetch_remapped_cls_from_config)."""
    name = config.get("_class_name", "?")
    try:
        from diffusers.models.model_loading_utils import _CLASS_REMAPPING_DICT as remapping
    except ImportError:
        remapping = LEGACY_CLASSES
    return remapping.get(name, {}).get(config.get("norm_type"), name)


def default_build_shape(name: str, family: type[Family]) -> tuple[int, int, int]:
    """The latent (height, width, frames) a build targets when none is given."""
    if name in DEMO_MODELS:  # both: 32 x 32 images as 16 x 16 latents
        from .demo import LATENT_SIZE

        return (LATENT_SIZE, LATENT_SIZE, 1)
    if name.startswith(TINY_PREFIX):  # tiny models: small latents (Wan: 3 frames)
        return (8, 8, 3 if family.video else 1)
    return family.default_build_shape


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> Model:
    """A model by built-in name (tiny-*, demo, demo-dit) or local diffusers folder."""
    name = str(name_or_path)
    if name == "demo":
        from .demo import load_demo_model

        return load_demo_model().to(device, dtype)
    if name == "demo-dit" and not Path(name).exists():
        from .demo_dit import load_demo_dit

        return load_demo_dit().to(device, dtype)
    if name.startswith(TINY_PREFIX) and not Path(name).exists():
        return tiny_model(name).to(device, dtype)
    folder, cls_name = _folder_class(name)
    try:
        transformer = _diffusers_class(cls_name).from_pretrained(folder, torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError) as exc:  # missing or truncated weights, a config that does not fit
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelNotFoundError(f"diffusers could not load the {cls_name} in {folder} ({reason[:200]}).") from None
    model = split_model(transformer.eval(), name=str(Path(name).expanduser()))
    model.pipeline = pipeline_root(name)
    model.family.scheduler_config = pipeline_scheduler_config(model.pipeline)
    return model.to(device, dtype)


def pipeline_root(name: str | Path) -> Path | None:
    """The diffusers pipeline folder a model name points at (model_index.json beside transformer/), or None."""
    path = Path(str(name)).expanduser()
    return path if (path / "model_index.json").is_file() and (path / "transformer").is_dir() else None


def pipeline_scheduler_config(pipeline: Path | None) -> dict | None:
    """A pipeline folder's scheduler/scheduler_config.json, the scheduler its pipeline samples with, or None."""
    if pipeline is None:
        return None
    path = pipeline / "scheduler" / "scheduler_config.json"
    try:
        config = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        raise ModelNotFoundError(f"{path} is not a readable diffusers scheduler config.") from None
    return config if isinstance(config, dict) and config.get("_class_name") else None


def default_text_tokens(name: str | Path) -> int:
    """The text tokens a build targets when none is given: what the model's pipeline feeds its transformer (from
    the folder's tokenizers, or the family's released pipeline for a bare transformer folder); 4 for the demo
    and 8 for the tiny models. Reads configs only."""
    name = str(name)
    if name in DEMO_MODELS:
        return 4
    if name.startswith(TINY_PREFIX) and not Path(name).exists():
        return 8
    from diffusers.configuration_utils import FrozenDict

    folder, cls_name = _folder_class(name)
    config = FrozenDict(json.loads((folder / "config.json").read_text()))
    family = family_classes()[cls_name][0](config)
    return family.pipeline_text_tokens(pipeline_root(name)) or 8
