"""What a model takes in and gives out, decided in one place for the CLI, the server (Triton through it),
calibration and the benchmarks.

    io = ModelIO(model)                     # ModelIO(model, pipeline=DIR): a local pipeline's text encoders / VAE
    io.takes                                "classes" | "prompts" | "nothing" (a text model without its pipeline)
    io.class_names                          the shipped demo models' class names; None for DiT (indices)
    io.class_label("cat"), io.class_cond(labels [B])
    io.guidance(asked)                      a class model's guidance scale for the sampler (or None)
    io.takes_guidance                       whether a caller may set one
    io.seeded_inputs(batch, first_seed, ...) (conditioning, noise): classes in turn, or random conditioning
    io.to_pixels(latents)                   [B, 3, H, W] in [0, 1] (video [B, 3, F, H, W])
    io.save(latents, path, scale)           the file written

Latents become pixels through the model's own decoder (the demo models), a pipeline's VAE (DiT with --pipeline,
every text model with its pipeline), or, where there is none, the one latent preview (runtime/images.py), so
``generate``, ``serve`` and the benchmarks show the same latents the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from ..errors import ConfigError
from ..models.model import Model
from ..models.registry import trained_classes


class ModelIO:
    def __init__(self, model: Model, pipeline: str | Path | None = None):
        self.model, self.family = model, model.family
        # the shipped demo models: class-conditional FLUX / DiT with named classes and their own decoder
        self.trained = trained_classes(model.name)
        self.encoder = None  # text encoders and VAE of a text model's pipeline folder
        self.vae = None  # a class model's pipeline VAE (DiT)
        if pipeline is None:
            return
        if self.takes_classes:
            if self.trained is not None:
                raise ConfigError(f"--pipeline is for text-conditioned folders and DiT's VAE; this one "
                                  f"({model.name}) decodes its own images: leave it out.")
            from .text_conditioning import pipeline_vae

            self.vae = pipeline_vae(model, pipeline)
        else:
            from .text_conditioning import PromptEncoder

            self.encoder = PromptEncoder(model, pipeline)

    # conditioning in

    @property
    def takes_classes(self) -> bool:
        return self.trained is not None or self.family.num_classes is not None

    @property
    def takes(self) -> str:
        if self.takes_classes:
            return "classes"
        return "prompts" if self.encoder is not None else "nothing"

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return None if self.trained is None else self.trained.names

    @property
    def num_classes(self) -> int | None:
        return len(self.trained.names) if self.trained is not None else self.family.num_classes

    def class_label(self, name_or_index: str | int) -> int:
        """A class by one of the model's names or its index; one sentence naming the valid ones otherwise."""
        if self.trained is None:
            if self.family.num_classes is None:
                raise ConfigError(f"classes are for class-conditional models (the demo models, DiT); this one holds "
                                  f"{self.family.title}, conditioned by text.")
            return self.family.class_label(str(name_or_index))
        names = self.trained.names
        text = str(name_or_index)
        if text in names:
            return names.index(text)
        if text.isdigit() and int(text) < len(names):
            return int(text)
        raise ConfigError(f"unknown {self.model.name} class {text!r}; choose one of {', '.join(names)} "
                          f"(or 0-{len(names) - 1}).")

    def class_cond(self, labels: torch.Tensor) -> dict:
        """[B] class indices -> the transformer's conditioning."""
        return self.model.class_cond(labels)

    @property
    def takes_guidance(self) -> bool:
        """Whether a caller may set a guidance scale: classifier-free guidance (DiT, Wan, SD3) or FLUX's embedded
        guidance through its pipeline; the demo FLUX model was trained without guidance."""
        if self.trained is not None:
            return self.model.conditioner is None and self.family.default_guidance is not None
        return self.family.default_guidance is not None or (self.encoder is not None and self.family.embedded_guidance)

    def guidance(self, asked: float | None) -> float | None:
        """A class model's classifier-free guidance scale for the sampler: as asked, else its family's (DiT 4.0,
        demo-dit as trained); None for a model that takes none."""
        if not self.takes_guidance:
            return None
        return asked if asked is not None else self.family.default_guidance

    def seeded_inputs(self, batch: int, first_seed: int, height: int, width: int, frames: int = 1,
                      text_tokens: int = 8) -> tuple[dict, torch.Tensor]:
        """(conditioning, initial noise) for seeds first_seed .. first_seed + batch - 1: a class model's classes
        in turn (class = seed % classes), else random conditioning drawn from the seeds."""
        from .sampler import initial_noise

        geometry = self.family.geometry(batch, height, width, frames)
        seeds = list(range(first_seed, first_seed + batch))
        if self.trained is not None:
            with torch.no_grad():
                cond = self.class_cond(torch.tensor(seeds) % len(self.trained.names))
        else:
            cond = self.family.example_cond(geometry, height=height, width=width, text_tokens=text_tokens,
                                            generator=torch.Generator().manual_seed(1234 + batch + first_seed))
        return cond, initial_noise(self.model, geometry.shape, seeds)

    # latents out

    @property
    def decodes(self) -> bool:
        """Whether ``to_pixels`` gives images (a decoder or VAE is here), not a latent preview."""
        return self.trained is not None or self.encoder is not None or self.vae is not None

    def to_pixels(self, latents: torch.Tensor, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """Final latents -> [B, 3, H, W] in [0, 1] (video [B, 3, F, H, W]). height / width: the latent size, where
        the model (a torch model) does not know it from an engine folder."""
        from .images import latent_preview, to_unit

        if self.trained is not None:
            return to_unit(self.trained.decode(latents))
        if self.encoder is not None:
            return self.encoder.pixels(latents)
        if height is None:
            height, width, _ = self.model.latent_size
        if self.vae is not None:
            return self.family.decode(self.vae, latents, height, width)
        return latent_preview(self.family.spatial_latents(latents, height, width))

    def save(self, latents: torch.Tensor, path: Path, scale: int = 8) -> Path:
        """Write the samples side by side (PNG / WebP / JPEG by suffix); video: the first sample as an animated
        GIF (or a video file where the pipeline decodes). scale: nearest-neighbour upscale of small pictures (the
        demo models' 32-pixel images, latent previews); a VAE's images are written at their own size."""
        from .images import require_finite, save_images, save_latent_preview

        require_finite(latents)
        if not self.decodes:
            height, width, _ = self.model.latent_size
            return save_latent_preview(self.family.spatial_latents(latents, height, width), path)
        if self.encoder is not None:
            return self.encoder.write(latents, path)
        return save_images(self.to_pixels(latents), path, scale if self.trained is not None else 1)


@dataclass
class Sampling:
    """A model sampled at one latent size for measurements (calibration, benchmarks): the conditioning and noise of
    numbered seeds, and the space its quality is measured in."""

    model: Model
    height: int
    width: int
    frames: int = 1
    text_tokens: int = 8

    @cached_property
    def io(self) -> ModelIO:
        return ModelIO(self.model)

    @property
    def guidance_scale(self) -> float | None:
        return self.model.family.default_guidance

    def inputs(self, batch: int, first_seed: int = 0) -> tuple[dict, torch.Tensor]:
        """(conditioning, initial noise) for seeds first_seed .. first_seed + batch - 1, the same for every backend
        (the demo models: class = seed % 8)."""
        return self.io.seeded_inputs(batch, first_seed, self.height, self.width, self.frames, self.text_tokens)

    def quality_space(self, latents: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] in about [0, 1], where PSNR reads on one scale for every model: the decoded images (the demo
        models), else the latent image (``Family.spatial_latents``, video frames folded into channels) scaled by
        the reference's range (no VAE in the loop)."""
        if self.io.decodes:
            return self.io.to_pixels(latents, self.height, self.width)
        lo, hi = reference.min(), reference.max()
        image = self.model.family.spatial_latents(latents, self.height, self.width)
        image = image.flatten(1, 2) if image.ndim == 5 else image
        return (image - lo) / (hi - lo).clamp(min=1e-12)


def check_pipeline(manifest, pipeline: Path | None) -> None:
    """From a folder's manifest alone, before a server starts: a text-conditioned folder needs --pipeline, and a
    class-conditional one takes one only for DiT's VAE (its model would refuse the same, later and in a log)."""
    from ..models.registry import family_classes

    name, class_name = manifest.model["name"], manifest.model["class"]
    family = family_classes().get(class_name, (None,))[0]
    trained = trained_classes(name) is not None
    text = family is not None and family.pipeline_class is not None and not trained
    if text and pipeline is None:
        raise ConfigError(f"{name} is conditioned by text: add --pipeline DIR, a local diffusers pipeline folder "
                          "holding its text encoders and VAE (tcpade-trt never downloads).")
    vae_only = family is not None and family.pipeline_class is None and not trained  # DiT takes its pipeline's VAE
    if not text and pipeline is not None and not vae_only:
        raise ConfigError(f"{name} is class-conditional and decodes its own images: leave out --pipeline.")
    if pipeline is not None and not (pipeline / "model_index.json").is_file():
        raise ConfigError(f"{pipeline} is not a diffusers pipeline folder (no model_index.json).")
