"""Model families (weightless knowledge) and their parts (torch modules), and how to load a model."""

from .family import Family, LatentGeometry, Tensors, per_row
from .model import Model
from .parts import Parts, TorchParts
from .registry import family_classes, family_for, load_model, model_family, split_model, tiny_model, tiny_names

__all__ = [
    "Family", "LatentGeometry", "Model", "Parts", "Tensors", "TorchParts", "family_classes", "family_for",
    "load_model", "model_family", "per_row", "split_model", "tiny_model", "tiny_names",
]
