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

import io
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import torch

from .request import GenerateRequest, RequestError


@dataclass
class GenerateResult:
    png: bytes
    full_steps: int
    predicted_steps: int
    compute_s: float  # the generation this request was part of
    batch: int  # how many requests shared it


class Generator:
    """One engine folder's Runtime behind a batched ``generate(requests)``; one instance per replica."""

    def __init__(self, folder: str | Path, device: str = "auto"):
        from ..runtime.runtime import Runtime

        self.runtime = Runtime(folder, device=device)
        self.model = self.runtime.model
        self.family = self.model.family
        shape = self.runtime.manifest.shape
        self.rows_max = shape["batch_max"]
        self._stepper = None  # the step-level batcher, made on the first stepwise request
        if self.model.conditioner is not None or self.model.name == "demo-dit":  # the demo models: named classes
            from ..models.demo import CLASSES

            self.classes, self.num_classes = list(CLASSES), None
        else:
            self.classes, self.num_classes = None, self.family.num_classes

    def check(self, request: GenerateRequest) -> None:
        """What the request body cannot tell: whether this folder's model takes guidance."""
        if request.guidance_scale is not None and self.family.default_guidance is None:
            raise RequestError(422, f"this folder holds {self.family.title}, which takes no guidance_scale; "
                                    "leave it out.")

    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        """One result per request, in order."""
        results: dict[int, GenerateResult] = {}
        for group in self.groups(requests):
            for index, result in zip(group, self._run([requests[i] for i in group])):
                results[index] = result
        return [results[i] for i in range(len(requests))]

    def groups(self, requests: list[GenerateRequest]) -> list[list[int]]:
        """Indices of requests that may share a generation, each group within the folder's batch range."""
        from ..cache import cache_config

        by_key: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            config = cache_config(r.cache)
            alone = config.method == "teacache" or (config.method == "tcpade" and getattr(config, "threshold", 0) > 0)
            by_key.setdefault((r.batch_key(), i if alone else None), []).append(i)
        out = []
        for (key, _), indices in by_key.items():
            guidance = key[2]
            per_call = max(1, self.rows_max // (2 if guidance is not None else 1))
            out += [indices[i:i + per_call] for i in range(0, len(indices), per_call)]
        return out

    def _inputs(self, group: list[GenerateRequest]) -> tuple[dict, torch.Tensor]:
        """(conditioning, initial noise) of requests; a sample's noise depends on its seed alone."""
        from ..runtime.sampler import initial_noise

        cond = self.model.class_cond(torch.tensor([r.label for r in group]))
        return cond, initial_noise(self.model, self.model.geometry_for(len(group)).shape, [r.seed for r in group])

    def submit_stepwise(self, request: GenerateRequest) -> Future:
        """Step-level batching (runtime/step_batching.py): a future of the request's StepBatchResult (turn it
        into a GenerateResult with ``stepwise_result``, off the batcher's thread); the request joins the
        running generations at the next step boundary."""
        if self._stepper is None:
            from ..runtime.step_batching import StepBatcher

            self._stepper = StepBatcher(self.model, self.runtime.make_policy, rows_max=self.rows_max)
        cond, noise = self._inputs([request])
        return self._stepper.submit(cond, noise, steps=request.steps, cache=request.cache,
                                    guidance_scale=request.guidance_scale)

    def stepwise_result(self, request: GenerateRequest, r) -> GenerateResult:
        """A finished StepBatchResult -> the PNG and statistics (batch: mean requests per block call it shared)."""
        from ..runtime.images import require_finite

        require_finite(r.result.latents)  # a non-finite generation is an error, never an image
        png = png_bytes(self.to_images(r.result.latents)[0])
        rows = 2 if request.guidance_scale is not None else 1
        return GenerateResult(png, r.result.full_steps, r.result.predicted_steps, r.compute_s,
                              max(1, round(r.mean_rows / rows)))

    def _run(self, group: list[GenerateRequest]) -> list[GenerateResult]:
        from ..runtime.images import require_finite

        first = group[0]
        cond, noise = self._inputs(group)
        started = time.perf_counter()
        result = self.runtime.generate(cond, noise, cache=first.cache, steps=first.steps,
                                       guidance_scale=first.guidance_scale)
        require_finite(result.latents)  # a non-finite generation is an error, never an image
        seconds = time.perf_counter() - started
        images = self.to_images(result.latents)
        return [GenerateResult(png_bytes(image), result.full_steps, result.predicted_steps, seconds, len(group))
                for image in images]

    def to_images(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1]: the demo models' decoded images; other folders (no VAE) preview their latents."""
        if self.classes is not None:
            from ..bench.metrics import to_unit
            from ..models import demo, demo_dit

            decode = demo.latents_to_images if self.model.conditioner is not None else demo_dit.latents_to_images
            return to_unit(decode(latents))
        height, width, _ = self.model.latent_size
        x = self.family.spatial_latents(latents, height, width).float()[:, :3]
        low, high = x.flatten(1).amin(1), x.flatten(1).amax(1)
        return (x - low[:, None, None, None]) / (high - low + 1e-8)[:, None, None, None]


def png_bytes(image: torch.Tensor) -> bytes:
    """[3, H, W] in [0, 1] -> PNG file bytes."""
    from PIL import Image

    array = (image.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
