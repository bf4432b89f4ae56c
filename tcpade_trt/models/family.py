"""A model family, without weights: everything the sampler, the runtime and the tools need to know
about FLUX, Wan, DiT... that is not a torch module.

A Family is built from a diffusers config (the transformer's, or the one an engine folder's manifest
records) and answers:

- geometry: the latent layout a generation holds (``geometry``, ``spatial_size``, ``spatial_latents``);
- sampling: the scheduler, the model's timestep, classifier-free guidance (``make_scheduler``,
  ``model_timestep``, ``guidance_scale``, ``uncond``, ``model_output_to_prediction``);
- conditioning: what a generation needs (``COND_INPUTS``, ``check_inputs``, ``example_cond``, class
  labels for class-conditional families), and how a diffusers ``forward`` call carries it
  (``unpack_forward``);
- the split: the named tensors of each part (``PREPARE_INPUTS`` ... ``MODULATED_INPUTS``), which are
  the engines' input and output names, and ``unpatchify`` (a reshape, done on the host);
- building: the latent size a build targets by default and the tiny random config tests use.

The torch modules that compute the parts are the family's ``Parts`` (models/parts.py); engines are
another implementation of the same Parts (runtime/engine_parts.py). A new family is one file in
models/families/ holding a Family and a Parts subclass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ..errors import ConfigError

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LatentGeometry:
    """What a generation's latents look like, in the units the sampler holds them."""

    shape: tuple[int, ...]  # latents as the sampler holds them, batch first
    tokens: int  # image tokens the block stack sees per sample


def tokenizer_max_length(pipeline: Path | None, tokenizer: str) -> int | None:
    """``model_max_length`` of a pipeline folder's tokenizer (``tokenizer``, ``tokenizer_2``, ...), if it says."""
    if pipeline is None:
        return None
    try:
        value = json.loads((Path(pipeline) / tokenizer / "tokenizer_config.json").read_text()).get("model_max_length")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, (int, float)) and 0 < value < 1e6 else None  # 1e30: "unlimited"


def vae_input(vae, latents: torch.Tensor) -> torch.Tensor:
    """Latents where the VAE's weights are, in their dtype: the generation's device (the engines' GPU) and the
    VAE's (the pipeline's, placed by runtime/text_conditioning.py) need not be the same, and diffusers' VAEs do
    not move their input."""
    parameter = next(vae.parameters())
    return latents.to(device=parameter.device, dtype=parameter.dtype)


def per_row(t: torch.Tensor, batch: int) -> torch.Tensor:
    """t [*S] -> [*S, batch], every value repeated for each row of the batch (a view)."""
    return t.unsqueeze(-1).expand(*t.shape, batch)


class Family:
    """One model family (subclasses: models/families/*.py)."""

    name: ClassVar[str] = ""  # "flux", "wan", "dit", ...
    diffusers_class: ClassVar[str] = ""  # the diffusers transformer class it splits
    title: ClassVar[str] = ""  # for people: "FLUX.1"
    video: ClassVar[bool] = False  # latents hold frames: a generation is written as a GIF
    default_guidance: ClassVar[float | None] = None  # classifier-free guidance scale (None: not used)
    default_build_shape: ClassVar[tuple[int, int, int]] = (32, 32, 1)  # latent height, width, frames
    tiny_config: ClassVar[dict] = {}  # a tiny random model of the family, for tests and smoke runs
    # Named tensors of each part, in the order the exported engines take them (export/parts.py):
    PREPARE_INPUTS: ClassVar[tuple[str, ...]] = ()  # conditioning names (plus "latents" when only its shape matters)
    PREPARE_OUTPUTS: ClassVar[tuple[str, ...]] = ()  # per-generation tensors prepare() computes
    HEAD_OUTPUTS: ClassVar[tuple[str, ...]] = ()  # hidden_states (x_in) first, then per-step tensors
    BLOCK_INPUTS: ClassVar[tuple[str, ...]] = ()  # hidden_states first
    TAIL_INPUTS: ClassVar[tuple[str, ...]] = ()  # besides x_out
    MODULATED_INPUTS: ClassVar[tuple[str, ...]] = ()  # what modulated_input() reads (TeaCache's signal)
    SHARED_COND_INPUTS: ClassVar[tuple[str, ...]] = ()  # conditioning without a batch axis (FLUX's position ids)

    def __init__(self, config, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 scheduler_config: dict | None = None):
        self.config = config
        self.device, self.dtype = torch.device(device), dtype
        # the pipeline's own scheduler (scheduler/scheduler_config.json of the folder the model came from, kept in
        # the engine manifest); None: the family's reference scheduler (make_scheduler)
        self.scheduler_config = dict(scheduler_config) if scheduler_config else None

    # ---- the split's names ---------------------------------------------------------------------
    @property
    def HEAD_INPUTS(self) -> tuple[str, ...]:  # noqa: N802 (may depend on the config, e.g. FLUX's guidance)
        """Besides latents and timestep, what head() reads from the prepared dict."""
        return ()

    @property
    def COND_INPUTS(self) -> tuple[str, ...]:  # noqa: N802
        """The conditioning dict's required keys."""
        return ()

    # ---- conditioning --------------------------------------------------------------------------
    def check_cond_keys(self, cond: Tensors, what: str = "cond") -> None:
        """One sentence naming what a conditioning dict lacks (instead of a KeyError deep inside)."""
        if not isinstance(cond, dict):
            raise ConfigError(f"{what} must be a dict of tensors with keys {', '.join(self.COND_INPUTS)}.")
        missing = [k for k in self.COND_INPUTS if cond.get(k) is None]
        if missing:
            raise ConfigError(f"{what} lacks {', '.join(repr(k) for k in missing)}; a {self.name} model needs "
                              f"{', '.join(self.COND_INPUTS)}.")
        extra = [k for k in cond if k not in self.COND_INPUTS]
        if extra:  # a misspelt or another family's input would be dropped without a word
            raise ConfigError(f"{what} has {', '.join(repr(k) for k in extra)}, which a {self.name} model does not "
                              f"take; it takes {', '.join(self.COND_INPUTS)}.")

    def check_inputs(self, latents: torch.Tensor, cond: Tensors) -> None:
        """Shapes of the latents and the conditioning, with a sentence for anything off."""
        self.check_cond_keys(cond)

    def example_cond(self, geometry: LatentGeometry, *, height: int, width: int, text_tokens: int = 8,
                     generator: torch.Generator | None = None) -> Tensors:
        """Random but well-formed conditioning for a batch of ``geometry.shape[0]`` (tests, smoke runs, export)."""
        raise NotImplementedError

    def cat_cond(self, conds: list[Tensors]) -> Tensors:
        """The conditioning of several requests as one batch: per-sample tensors concatenated along the batch
        axis, shared ones (``SHARED_COND_INPUTS``, equal for every request of one engine folder) taken once."""
        return {k: conds[0][k] if k in self.SHARED_COND_INPUTS else torch.cat([c[k] for c in conds])
                for k in conds[0]}

    @property
    def embedded_guidance(self) -> bool:
        """Guidance is a model input (FLUX.1-dev) rather than classifier-free guidance's second batch."""
        return False

    def uncond(self, cond: Tensors) -> Tensors:
        """The unconditional half of a classifier-free-guidance batch for ``cond``."""
        raise ConfigError(f"{self.title} does not use classifier-free guidance here.")

    @property
    def num_classes(self) -> int | None:
        """Class-conditional families: how many classes (labels 0 .. n-1); None for text-conditioned ones."""
        return None

    def class_cond(self, labels: torch.Tensor) -> Tensors:
        raise ConfigError(f"{self.title} is conditioned by text, not class labels: use a prompt.")

    pipeline_class: ClassVar[str | None] = None  # the diffusers pipeline whose text encoders and VAE it uses

    def pipeline_text_tokens(self, pipeline: Path | None) -> int | None:
        """Text tokens the family's pipeline feeds the transformer (its default ``max_sequence_length``, within
        its tokenizer's ``model_max_length``), read from a pipeline folder, or the released pipeline's when
        there is none; None for families without text."""
        return None

    def prompt_tokens(self, pipe, prompt: str) -> tuple[int, int]:
        """(tokens of ``prompt`` in the tokenizer whose length ``text_tokens`` sets, tokens of the text input
        that are not that tokenizer's): how much of a prompt a folder of ``text_tokens`` keeps."""
        raise ConfigError(f"{self.title} is not conditioned by text.")

    def encode_prompt(self, pipe, prompt: str, batch: int, *, height: int, width: int, text_tokens: int,
                      negative_prompt: str = "", guidance_scale: float | None = None):
        """(cond, negative_cond or None, guidance scale or None) for ``prompt``, with the text encoders of
        ``pipe`` (a pipeline of ``pipeline_class`` loaded without its transformer)."""
        raise ConfigError(f"{self.title} is not conditioned by text: use --class.")

    def decode(self, vae, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Final latents -> images [B, 3, H, W] in [0, 1] (video: [B, 3, F, H, W]) through ``vae``."""
        raise NotImplementedError

    def unpack_forward(self, arguments: dict):
        """(latents, timestep, cond, return_dict) from the bound arguments of the diffusers ``forward``."""
        raise NotImplementedError

    # ---- geometry ------------------------------------------------------------------------------
    def geometry(self, batch: int, height: int, width: int, frames: int = 1) -> LatentGeometry:
        """Latent shape for a generation of ``batch`` samples at a latent resolution (refuses sizes the
        family cannot take, with the reason)."""
        raise NotImplementedError

    def spatial_size(self, latents: torch.Tensor) -> tuple[int, ...]:
        """(height, width[, frames]) of the latent image, from the sampler's latent layout."""
        return tuple(latents.shape[-2:])

    def spatial_latents(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The sampler's latents as a latent image [B, C, H, W] (video: [B, C, F, H, W]), for previews and
        image metrics (FLUX unpacks its 2x2 token packing)."""
        return latents

    def unpatchify(self, tokens: torch.Tensor, latent_shape: tuple[int, ...]) -> torch.Tensor:
        """Projected tokens -> the model output layout (a pure reshape; identity for packed FLUX)."""
        return tokens

    # ---- sampling ------------------------------------------------------------------------------
    def make_scheduler(self, num_steps: int, geometry: LatentGeometry):
        """A diffusers scheduler with its timesteps set for ``num_steps`` steps, on this family's device: the
        pipeline's (``scheduler_config``) when the model came with one, else the family's reference."""
        scheduler = self.configured_scheduler() or self.reference_scheduler()
        limit = self.steps_limit()
        if limit is not None and num_steps > limit:  # diffusers' ValueError, deep in a generation, otherwise
            from ..errors import ConfigError

            raise ConfigError(f"{self.title}'s scheduler ({type(scheduler).__name__}) takes at most {limit} steps "
                              f"(one per training timestep); ask for fewer than {num_steps}.")
        scheduler.set_timesteps(num_steps, device=self.device)
        return scheduler

    def steps_limit(self) -> int | None:
        """The most sampling steps the scheduler can take, or None: a discrete-time scheduler (DDIM, DPM-Solver)
        has one timestep per training step and refuses more; flow-matching ones have no such limit."""
        if not hasattr(self, "_steps_limit"):
            scheduler = self.configured_scheduler() or self.reference_scheduler()
            trained = scheduler.config.get("num_train_timesteps")
            self._steps_limit = None
            if isinstance(trained, int):
                try:  # the limit is where the training timesteps end: trained works, trained + 1 does not
                    scheduler.set_timesteps(trained)
                except Exception:
                    return None
                try:
                    scheduler.set_timesteps(trained + 1)
                except ValueError:
                    self._steps_limit = trained
        return self._steps_limit

    def reference_scheduler(self):
        """The scheduler of the family's reference checkpoint, for models that come without a pipeline."""
        raise NotImplementedError

    def configured_scheduler(self):
        """The scheduler ``scheduler_config`` names (its diffusers class, from_config), or None."""
        if not self.scheduler_config:
            return None
        import diffusers

        name = self.scheduler_config.get("_class_name", "")
        cls = getattr(diffusers, name, None)
        if cls is None or not hasattr(cls, "from_config"):
            raise ConfigError(f"the pipeline's scheduler {name!r} is not one this diffusers ({diffusers.__version__}) "
                              "has; upgrade diffusers, or rebuild from a folder with another scheduler.")
        return cls.from_config(self.scheduler_config)

    def model_timestep(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """Scheduler timestep(s) -> the ``timestep`` argument of the model's forward: [batch] for one
        timestep, [T, batch] for a vector of T (the sampler maps all steps at once, before its loop)."""
        return per_row(t, batch)

    def sampler_times(self, scheduler, model_timesteps: torch.Tensor) -> list[float]:
        """The cache policies' time axis per step, increasing: minus the timestep the model is given (flow
        matching: sigma, whose steps grow several-fold late in a run). model_timesteps: [T, rows]."""
        return (-model_timesteps[:, 0].double()).tolist()

    def model_output_to_prediction(self, output: torch.Tensor, guidance_scale: float | None) -> torch.Tensor:
        """Model output for the (possibly CFG-doubled) batch -> the scheduler's model_output."""
        if guidance_scale is None:
            return output
        cond, uncond = output.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.diffusers_class})"
