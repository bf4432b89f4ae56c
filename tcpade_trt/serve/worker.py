"""Requests -> images on one engine folder, batched without changing any sample's image.

A group of requests with the same steps, cache spec and guidance runs as one generation: the block-stack
engine then runs one batched call per full step. The cache math is per sample and a schedule cache's full
steps are shared, so every sample gets the image it would get alone (within the engines' batch-size
rounding; tested). Caches whose decisions depend on the batch (TeaCache's mean change, the TSI gate's
"every sample stable") run each request alone, for the same reason. A group larger than the folder's batch
range is split. Step-level batching (``submit_stepwise``) lets requests join and leave at step boundaries
instead, each with its own schedule and cache.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import GenerationCancelled, TcpadeError
from .request import Accepts, GenerateRequest, RequestError


@dataclass
class GenerateResult:
    image: bytes  # PNG, or an animated GIF for video models
    full_steps: int
    predicted_steps: int
    compute_s: float  # the generation this request was part of
    batch: int  # how many requests shared it
    media_type: str = "image/png"


class Generator:
    """One engine folder's Runtime behind a batched ``generate(requests)``; one instance per replica.
    ``pipeline``: a local diffusers pipeline folder whose text encoders and VAE serve a text-conditioned
    folder (FLUX, Wan, SD3); class-conditional folders need none."""

    def __init__(self, folder: str | Path, device: str = "auto", pipeline: str | Path | None = None):
        from ..errors import ConfigError
        from ..runtime.runtime import Runtime

        self.runtime = Runtime(folder, device=device)
        self.model = self.runtime.model
        self.family = self.model.family
        shape = self.runtime.manifest.shape
        self.rows_max = shape["batch_max"]
        self._stepper = None  # the step-level batcher, made on the first stepwise request
        from ..runtime.model_io import ModelIO

        if pipeline is None and not ModelIO(self.model).takes_classes:
            raise ConfigError(f"this folder holds {self.family.title}, which is conditioned by text: serve it with "
                              "--pipeline DIR, a local diffusers pipeline folder holding its text encoders and VAE.")
        self.io = ModelIO(self.model, pipeline)  # what the folder takes in, how its latents become pixels
        if self.io.class_names is not None:
            self.accepts = Accepts(classes=list(self.io.class_names))
        elif self.io.takes_classes:
            self.accepts = Accepts(num_classes=self.io.num_classes)
        else:
            self.accepts = Accepts(prompts=True, negative_prompts=self.family.default_guidance is not None)

    def steps_limit(self, asked: int) -> int:
        """The server's --max-steps within what the folder's scheduler can take (DiT's DDIM: 1000), so that a
        request beyond it is a 400 up front, not a failed generation."""
        limit = self.family.steps_limit()
        return asked if limit is None else min(asked, limit)

    def check(self, request: GenerateRequest) -> None:
        """What the request body cannot tell: whether this folder's model takes guidance."""
        if request.guidance_scale is not None and not self.io.takes_guidance:
            raise RequestError(422, f"this folder holds {self.family.title}, which takes no guidance_scale; "
                                    "leave it out.")

    def rows(self, request: GenerateRequest) -> int:
        """Block-stack rows of one request: classifier-free guidance runs a second (unconditional) row."""
        if self.io.encoder is not None:  # text: the family's guidance (Wan, SD3: CFG; FLUX: embedded in the input)
            return 2 if self.family.default_guidance is not None else 1
        return 2 if self.guidance(request) is not None else 1

    def guidance(self, request: GenerateRequest) -> float | None:
        """A class request's classifier-free guidance: as asked, else its family's (DiT: 4.0, as `generate`; the
        demo model takes none)."""
        return self.io.guidance(request.guidance_scale)

    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        """One result per request, in order; the first failure raises."""
        results = self.generate_each(requests)
        for result in results:
            if isinstance(result, TcpadeError):
                raise result
        return results  # type: ignore[return-value]

    def generate_each(self, requests: list[GenerateRequest]) -> list[GenerateResult | TcpadeError]:
        """One result per request, in order, or the error of that request alone: a group whose shared generation
        fails is generated again one request at a time, so that a request that fails answers only for itself and
        the others get the images they would get alone (a server's clients never see each other's errors)."""
        results: dict[int, GenerateResult | TcpadeError] = {}
        for group in self.groups(requests):
            members = [requests[i] for i in group]
            try:
                outs: list = self._run(members)
            except GenerationCancelled as exc:  # nobody waits for any of them
                outs = [exc] * len(members)
            except TcpadeError as exc:
                outs = [exc] if len(members) == 1 else [self._alone(r) for r in members]
            results.update(zip(group, outs))
        return [results[i] for i in range(len(requests))]

    def _alone(self, request: GenerateRequest) -> GenerateResult | TcpadeError:
        try:
            return self._run([request])[0]
        except TcpadeError as exc:
            return exc

    def groups(self, requests: list[GenerateRequest]) -> list[list[int]]:
        """Indices of requests that may share a generation, each group within the folder's batch range."""
        from ..cache import decides_per_batch

        by_key: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            alone = decides_per_batch(r.cache)
            by_key.setdefault((r.batch_key(), i if alone else None), []).append(i)
        out = []
        for indices in by_key.values():
            per_call = max(1, self.rows_max // self.rows(requests[indices[0]]))
            out += [indices[i:i + per_call] for i in range(0, len(indices), per_call)]
        return out

    def _inputs(self, group: list[GenerateRequest]) -> tuple[dict, dict | None, float | None, torch.Tensor]:
        """(conditioning, negative conditioning or None, the sampler's guidance scale, initial noise) of a group
        of requests with one batch key; a sample's noise depends on its seed alone."""
        from ..runtime.sampler import initial_noise

        noise = initial_noise(self.model, self.model.geometry_for(len(group)).shape, [r.seed for r in group])
        if self.io.encoder is None:
            return self.io.class_cond(torch.tensor([r.label for r in group])), None, self.guidance(group[0]), noise
        encoded = [self.io.encoder.encode(r.prompt, 1, r.negative_prompt, r.guidance_scale) for r in group]
        cond = self.family.cat_cond([c for c, _, _ in encoded])
        negative = self.family.cat_cond([n for _, n, _ in encoded]) if encoded[0][1] is not None else None
        return cond, negative, encoded[0][2], noise

    def close(self) -> None:
        """Stop the step batcher (its running requests finish first), then release the engines."""
        if self._stepper is not None:
            self._stepper.close()
        self.runtime.close()

    def submit_stepwise(self, request: GenerateRequest) -> Future:
        """Step-level batching (runtime/step_batching.py): a future of the request's StepBatchResult (turn it
        into a GenerateResult with ``stepwise_result``, off the batcher's thread); the request joins the
        running generations at the next step boundary. Encodes a prompt first: call it off the event loop."""
        if self._stepper is None:
            from ..runtime.step_batching import StepBatcher

            self._stepper = StepBatcher(self.model, self.runtime.make_policy, rows_max=self.rows_max)
        cond, negative, guidance, noise = self._inputs([request])
        return self._stepper.submit(cond, noise, steps=request.steps, cache=request.cache, guidance_scale=guidance,
                                    negative_cond=negative)

    def stepwise_result(self, request: GenerateRequest, r) -> GenerateResult:
        """A finished StepBatchResult -> the image and statistics (batch: mean requests per block call it shared)."""
        from ..runtime.images import require_finite

        r.wait_ready()  # this thread's stream after the request's last step (a GPU; nothing on a CPU)
        require_finite(r.result.latents)  # a non-finite generation is an error, never an image
        image, media_type = self.encode_images(r.result.latents)[0]
        return GenerateResult(image, r.result.full_steps, r.result.predicted_steps, r.compute_s,
                              max(1, round(r.mean_rows / self.rows(request))), media_type)

    def _run(self, group: list[GenerateRequest]) -> list[GenerateResult]:
        from ..runtime.images import require_finite

        first = group[0]
        started = time.perf_counter()
        cond, negative, guidance, noise = self._inputs(group)
        result = self.runtime.generate(cond, noise, cache=first.cache, steps=first.steps, guidance_scale=guidance,
                                       negative_cond=negative,
                                       should_stop=lambda: all(r.cancelled.is_set() for r in group))
        require_finite(result.latents)  # a non-finite generation is an error, never an image
        seconds = time.perf_counter() - started
        return [GenerateResult(image, result.full_steps, result.predicted_steps, seconds, len(group), media_type)
                for image, media_type in self.encode_images(result.latents)]

    def image_size(self) -> tuple[str, str]:
        """("WIDTHxHEIGHT", "png" | "gif") of this folder's images, from one decode of noise (once; the engines are
        built for one resolution): what OpenAI clients call "size" and "output_format"."""
        if not hasattr(self, "_image_size"):
            from ..runtime.sampler import initial_noise

            with torch.no_grad():
                pixels = self.to_images(initial_noise(self.model, self.model.geometry_for(1).shape, [0]))
            height, width = pixels.shape[-2:]
            self._image_size = (f"{width}x{height}", "gif" if pixels.ndim == 5 else "png")
        return self._image_size

    def encode_images(self, latents: torch.Tensor) -> list[tuple[bytes, str]]:
        """(file bytes, media type) per sample: PNG images, animated GIFs for video models."""
        from ..runtime.images import gif_bytes, png_bytes

        pixels = self.to_images(latents)
        if pixels.ndim == 5:  # [B, 3, F, H, W]
            return [(gif_bytes(video), "image/gif") for video in pixels]
        return [(png_bytes(image), "image/png") for image in pixels]

    def to_images(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] (video [B, 3, F, H, W]): the folder's images, or its latents' preview where no
        decoder is here (runtime/model_io.ModelIO.to_pixels)."""
        return self.io.to_pixels(latents)
