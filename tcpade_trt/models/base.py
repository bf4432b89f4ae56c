"""The head / blocks / tail split that the whole toolkit rests on.

A diffusion-transformer step is split into three functions with named tensors:

    prepare(latents, cond)            once per generation: prompt- or resolution-only tensors
                                      (FLUX context embedder + RoPE tables, Wan text embedding...)
    head(latents, timestep, prepared) every step, cheap: x_in = the image-token hidden state that
                                      enters the first block, plus per-step conditioning (temb)
    blocks(step)                      every *full* step, expensive: the whole block stack,
                                      returns x_out = image tokens leaving the last block
    tail(x_out, step)                 every step, cheap: output norm, projection, unpatchify

so that ``tail(blocks(head(...)))`` equals the diffusers model's own forward, and
``x_out - x_in`` is exactly the "full-block residual" that TC-Padé caches.

``step`` is a plain dict of named tensors (``head``'s outputs merged with ``prepared``; keys that
start with "_" hold plain metadata such as the latent shape, never tensors an engine reads); each
adapter lists in ``BLOCK_INPUTS`` the names the block stack reads, which are also the input names
of the exported blocks engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LatentGeometry:
    """What a generation's latents look like, in the units the sampler holds them."""

    shape: tuple[int, ...]  # latents as the sampler holds them, batch first
    tokens: int  # image tokens the block stack sees per sample


def per_row(t: torch.Tensor, batch: int) -> torch.Tensor:
    """t [*S] -> [*S, batch], every value repeated for each row of the batch (a view)."""
    return t.unsqueeze(-1).expand(*t.shape, batch)


class SplitModel(ABC):
    """An unmodified diffusers transformer seen as head / blocks / tail.

    Subclasses implement one family each. They never edit the wrapped module: every function
    here calls its submodules exactly as its own ``forward`` does.
    """

    family: str = ""
    # Named tensors of each part, in the order the exported engines take them (see export/parts.py):
    PREPARE_INPUTS: tuple[str, ...] = ()  # conditioning names (plus "latents" when only its shape matters)
    PREPARE_OUTPUTS: tuple[str, ...] = ()  # per-generation tensors prepare() computes
    HEAD_INPUTS: tuple[str, ...] = ()  # besides latents and timestep, from the prepared dict
    HEAD_OUTPUTS: tuple[str, ...] = ()  # hidden_states (x_in) first, then per-step tensors
    BLOCK_INPUTS: tuple[str, ...] = ()  # hidden_states first
    TAIL_INPUTS: tuple[str, ...] = ()  # besides x_out
    MODULATED_INPUTS: tuple[str, ...] = ()  # what modulated_input() reads (TeaCache's signal)
    COND_INPUTS: tuple[str, ...] = ()  # the conditioning dict's required keys

    def __init__(self, transformer: nn.Module | None, name: str = "", config=None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        """``transformer=None`` with a ``config`` gives a weightless adapter: the family's
        geometry, scheduler and unpatchify for the engine runtime, which runs no torch module."""
        if transformer is None and config is None:
            raise ValueError("give a transformer or its config")
        self.transformer = transformer
        self._config = config
        self._device, self._dtype = torch.device(device), dtype
        self.name = name or (type(transformer).__name__ if transformer is not None else self.family)

    # ---- inputs ------------------------------------------------------------------------------
    def check_cond_keys(self, cond: Tensors, what: str = "cond") -> None:
        """One sentence naming what a conditioning dict lacks (instead of a KeyError deep inside)."""
        if not isinstance(cond, dict):
            from ..errors import ConfigError

            raise ConfigError(f"{what} must be a dict of tensors with keys {', '.join(self.COND_INPUTS)}.")
        missing = [k for k in self.COND_INPUTS if cond.get(k) is None]
        if missing:
            from ..errors import ConfigError

            raise ConfigError(f"{what} lacks {', '.join(repr(k) for k in missing)}; a {self.family} model needs "
                              f"{', '.join(self.COND_INPUTS)}.")

    # ---- the split -------------------------------------------------------------------------
    @abstractmethod
    def prepare_part(self, named: Tensors) -> Tensors:
        """PREPARE_OUTPUTS from PREPARE_INPUTS, unchecked: the body of the exported prepare engine."""

    @abstractmethod
    def prepare(self, latents: torch.Tensor, cond: Tensors) -> Tensors:
        """Per-generation tensors; ``latents`` is only read for its shape."""

    @abstractmethod
    def head(self, latents: torch.Tensor, timestep: torch.Tensor, prepared: Tensors) -> Tensors:
        """Returns ``prepared`` plus ``hidden_states`` (x_in, [B, tokens, hidden]) and per-step tensors."""

    @abstractmethod
    def blocks(self, step: Tensors) -> torch.Tensor:
        """The whole block stack: x_in -> x_out, both [B, tokens, hidden]."""

    def blocks_with_residual(self, step: Tensors) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_out, x_out - x_in): what a full step of a caching policy needs (the blocks engine
        returns both from one graph)."""
        x_out = self.blocks(step)
        return x_out, x_out - step["hidden_states"]

    @abstractmethod
    def tail_tokens(self, x_out: torch.Tensor, step: Tensors) -> torch.Tensor:
        """Output norm and projection: [B, tokens, out_features], before unpatchify."""

    def unpatchify(self, tokens: torch.Tensor, latent_shape: tuple[int, ...]) -> torch.Tensor:
        """Projected tokens -> the model output layout (a pure reshape; identity for packed FLUX)."""
        return tokens

    def tail(self, x_out: torch.Tensor, step: Tensors) -> torch.Tensor:
        """Output head; returns what ``transformer(...).sample`` returns."""
        return self.unpatchify(self.tail_tokens(x_out, step), step.get("_latent_shape"))

    @abstractmethod
    def forward_unsplit(self, latents: torch.Tensor, timestep: torch.Tensor, cond: Tensors) -> torch.Tensor:
        """The wrapped model's own forward (the reference the split is tested against)."""

    @abstractmethod
    def modulated_input(self, step: Tensors) -> torch.Tensor:
        """The first block's modulated input (TeaCache's change signal), [B, tokens, hidden]."""

    # ---- what the sampler needs to know about the family ------------------------------------
    @abstractmethod
    def geometry(self, batch: int, height: int, width: int, frames: int = 1) -> LatentGeometry:
        """Latent shape for a generation of ``batch`` samples at a latent resolution."""

    @abstractmethod
    def make_scheduler(self, num_steps: int, geometry: LatentGeometry):
        """A diffusers scheduler with its timesteps set for ``num_steps`` steps."""

    @abstractmethod
    def model_timestep(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """Scheduler timestep(s) -> the ``timestep`` argument of the model's forward: [batch] for one
        timestep, [T, batch] for a vector of T (the sampler maps all steps at once, before its loop)."""

    def model_output_to_prediction(self, output: torch.Tensor, guidance_scale: float | None) -> torch.Tensor:
        """Model output for the (possibly CFG-doubled) batch -> the scheduler's model_output.

        With classifier-free guidance the batch is [cond; uncond] and the result has half the rows.
        """
        if guidance_scale is None:
            return output
        cond, uncond = output.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    # ---- conveniences ----------------------------------------------------------------------
    def forward_split(self, latents: torch.Tensor, timestep: torch.Tensor, cond: Tensors) -> torch.Tensor:
        """tail(blocks(head(...))) in one call: the uncached split forward."""
        step = self.head(latents, timestep, self.prepare(latents, cond))
        return self.tail(self.blocks(step), step)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device if self.transformer is not None else self._device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype if self.transformer is not None else self._dtype

    @property
    def config(self):
        return self.transformer.config if self.transformer is not None else self._config
