"""Model families as head / blocks / tail splits, and how to load them."""

from .base import LatentGeometry, SplitModel, Tensors
from .example_inputs import example_cond, with_uncond
from .registry import ADAPTERS, SUPPORTED, TINY_CONFIGS, load_model, split_model, tiny_model

__all__ = [
    "ADAPTERS", "SUPPORTED", "TINY_CONFIGS", "LatentGeometry", "SplitModel", "Tensors",
    "example_cond", "load_model", "split_model", "tiny_model", "with_uncond",
]
