"""Has the demo model learned its classes? A colour-histogram nearest-class check.

Each class's reference is the mean joint RGB histogram (4 bins per channel, 64 bins) of random
training crops of its photograph; a sample is "right" when its own class's reference is the
closest (L1) of all eight.
"""

from __future__ import annotations

import torch

BINS = 4


def color_histogram(images: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> normalised joint RGB histograms [B, bins**3]."""
    q = (images.clamp(0, 1) * bins).long().clamp(max=bins - 1)  # [B, 3, H, W] bin index per channel
    index = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]  # [B, H, W]
    hist = torch.zeros(images.shape[0], bins**3)
    hist.scatter_add_(1, index.flatten(1), torch.ones(index.flatten(1).shape))
    return hist / hist.sum(1, keepdim=True)


def class_references(crops_per_class: int = 64, seed: int = 1234) -> torch.Tensor:
    """Mean histogram per class [num_classes, bins**3] over random training crops."""
    from research.train_demo import load_sources, random_crops
    from tcpade_trt.models.demo import CLASSES

    sources = load_sources()
    gen = torch.Generator().manual_seed(seed)
    refs = []
    for c in range(len(CLASSES)):
        crops = random_crops(sources, torch.full((crops_per_class,), c), gen)
        refs.append(color_histogram((crops + 1) / 2).mean(0))
    return torch.stack(refs)


def nearest_class(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Index of the closest class reference for each image in [0, 1], [B]."""
    return torch.cdist(color_histogram(images), references, p=1).argmin(1)
