"""A model as the toolkit uses it: a family (what it is) and its parts (what computes it).

    model = load_model("tiny-flux")          # torch parts of a diffusers transformer
    model = Runtime("engines/demo").model    # engine parts of a built folder
    model.family.geometry(1, 16, 16)         # weightless knowledge
    model.parts.head(latents, t, prepared)   # the split, on whatever computes it

The demo model also carries its learned class embeddings (``conditioner``), which stand in for a
text encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from .family import Family, Tensors
from .parts import Parts


@dataclass
class Model:
    name: str
    family: Family
    parts: Parts
    conditioner: nn.Module | None = None  # the demo model's class -> (text tokens, pooled vector)
    latent_size: tuple[int, int, int] | None = None  # (height, width, frames) it generates at, where fixed
    # TC-Padé schedules calibrated for this model ((steps, budget, full steps), ...; `tcpade-trt calibrate`):
    # the shipped demo model's file, an engine folder's manifest; budget presets use them where they apply
    calibrated: tuple = ()
    pipeline: Path | None = None  # the diffusers pipeline folder it was loaded from (its text encoders calibrate)

    @property
    def transformer(self) -> nn.Module:
        """The diffusers transformer behind torch parts (engines have none)."""
        transformer = getattr(self.parts, "transformer", None)
        if transformer is None:
            raise ConfigError(f"{self.name} runs on engines: it has no torch transformer.")
        return transformer

    @property
    def device(self) -> torch.device:
        return self.family.device

    @property
    def dtype(self) -> torch.dtype:
        return self.family.dtype

    @property
    def class_conditional(self) -> bool:
        return self.conditioner is not None or self.family.num_classes is not None

    def class_cond(self, labels: torch.Tensor) -> Tensors:
        """The conditioning for class labels [B]: the demo's learned embeddings, or the family's labels (DiT)."""
        if self.conditioner is not None:
            return self.conditioner.conditioning(labels, self.device, self.dtype)
        return self.family.class_cond(labels)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Model:
        """Torch parts (and the demo's conditioner) on ``device`` / in ``dtype``; the family follows, so that
        schedulers and inputs are made there. Returns the model."""
        transformer = self.transformer
        if dtype is not None and next(transformer.parameters()).dtype != dtype:
            transformer.to(dtype=dtype)  # only when needed: diffusers warns on casting models with fp32 modules
        transformer.to(device=device)
        if self.conditioner is not None:
            self.conditioner.to(device=device)
        self.family.device = torch.device(device)
        self.family.dtype = next(transformer.parameters()).dtype
        return self

    def synchronize(self) -> None:
        """The host waits until the device has run this model's queued work (before reading a clock)."""
        self.parts.synchronize()

    def geometry_for(self, batch: int):
        """The latent geometry of ``batch`` samples at the model's own size (the demo model, engine folders)."""
        if self.latent_size is None:
            raise ConfigError(f"{self.name} has no fixed latent size: use model.family.geometry(batch, h, w, f).")
        return self.family.geometry(batch, *self.latent_size)
