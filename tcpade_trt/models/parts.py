"""The head / blocks / tail split that the whole toolkit rests on, as an interface.

A diffusion-transformer step is split into functions of named tensors:

    prepare(latents, cond)            once per generation: prompt- or resolution-only tensors
                                      (FLUX context embedder + RoPE tables, Wan text embedding...)
    head(latents, timestep, prepared) every step, cheap: x_in = the image-token hidden state that
                                      enters the first block, plus per-step conditioning (temb)
    blocks_with_residual(step)        every *full* step, expensive: the whole block stack, returns
                                      x_out = image tokens leaving the last block, and x_out - x_in
    tail(x_out, step)                 every step, cheap: output norm and projection (then unpatchify)
    modulated_input(step)             the first block's modulated input (TeaCache's change signal)

so that ``tail(blocks(head(...)))`` equals the diffusers model's own forward, and ``x_out - x_in``
is exactly the "full-block residual" that TC-Padé caches. ``step`` is a plain dict of named tensors
(``head``'s outputs merged with ``prepared``; keys starting with "_" hold plain metadata such as the
latent shape). The names are the family's (models/family.py) and the exported engines' I/O names.

Two implementations: ``TorchParts`` (a diffusers transformer's own submodules, called exactly as
its ``forward`` calls them; one subclass per family) and the engines (runtime/engine_parts.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from .family import Family, Tensors


class Parts(ABC):
    """The split of one model: ``family`` knows the names and shapes, the parts compute."""

    family: Family

    @abstractmethod
    def prepare_part(self, named: Tensors) -> Tensors:
        """PREPARE_OUTPUTS from PREPARE_INPUTS, unchecked: the body of the prepare engine."""

    def prepare(self, latents: torch.Tensor, cond: Tensors) -> Tensors:
        """Per-generation tensors (checked inputs); ``latents`` is only read for its shape. Returns them
        with what head() reads from the conditioning every step and the latent shape."""
        self.family.check_inputs(latents, cond)
        out = {k: v for k, v in cond.items() if k in self.family.HEAD_INPUTS or k in self.family.BLOCK_INPUTS}
        out.update(self.prepare_part({"latents": latents, **cond}) if self.family.PREPARE_OUTPUTS else {})
        out["_latent_shape"] = tuple(latents.shape)
        return out

    @abstractmethod
    def head(self, latents: torch.Tensor, timestep: torch.Tensor, prepared: Tensors) -> Tensors:
        """``prepared`` plus ``hidden_states`` (x_in, [B, tokens, hidden]) and the per-step tensors."""

    @abstractmethod
    def blocks(self, step: Tensors) -> torch.Tensor:
        """The whole block stack: x_in -> x_out, both [B, tokens, hidden]."""

    def blocks_with_residual(self, step: Tensors) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_out, x_out - x_in): what a full step of a caching policy needs (the blocks engine returns
        both from one graph)."""
        x_out = self.blocks(step)
        return x_out, x_out - step["hidden_states"]

    @abstractmethod
    def tail_tokens(self, x_out: torch.Tensor, step: Tensors) -> torch.Tensor:
        """Output norm and projection: [B, tokens, out_features], before unpatchify."""

    def tail(self, x_out: torch.Tensor, step: Tensors) -> torch.Tensor:
        """Output head; returns what ``transformer(...).sample`` returns."""
        return self.family.unpatchify(self.tail_tokens(x_out, step), step.get("_latent_shape"))

    @abstractmethod
    def modulated_input(self, step: Tensors) -> torch.Tensor:
        """The first block's modulated input (TeaCache's change signal), [B, tokens, hidden]."""

    def synchronize(self) -> None:
        """Block the host until the device has run the work queued for these parts (CUDA runs asynchronously;
        nothing to wait for on a CPU). For timings: a generation itself never waits."""
        device = torch.device(self.family.device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward_split(self, latents: torch.Tensor, timestep: torch.Tensor, cond: Tensors) -> torch.Tensor:
        """tail(blocks(head(...))) in one call: the uncached split forward."""
        step = self.head(latents, timestep, self.prepare(latents, cond))
        return self.tail(self.blocks(step), step)

    def forward_unsplit(self, latents: torch.Tensor, timestep: torch.Tensor, cond: Tensors) -> torch.Tensor:
        """The model's own forward where it exists (the reference the split is tested against)."""
        return self.forward_split(latents, timestep, cond)


class TorchParts(Parts):
    """The parts of an unmodified diffusers transformer: its submodules, called as its forward calls them.
    Subclasses (one per family) never edit the wrapped module."""

    def __init__(self, transformer: nn.Module, family: Family):
        self.transformer, self.family = transformer, family

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    def prepare(self, latents: torch.Tensor, cond: Tensors) -> Tensors:
        """As Parts.prepare, with the floating conditioning in the transformer's dtype and on its device, as
        diffusers' pipelines hand it over (a bf16 model on a GPU, fed float32 prompt embeddings by a caller)."""
        device, dtype = self.device, self.dtype
        cond = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
                if isinstance(v, torch.Tensor) else v for k, v in cond.items()}
        return super().prepare(latents, cond)
