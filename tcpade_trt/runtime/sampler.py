"""The reference denoising loop (torch): diffusers' schedulers around the head / blocks / tail split.

    latents = noise
    for each scheduler timestep t (step s = 0 .. T-1):
        x = [latents; latents] with CFG, else latents
        out = tail(blocks-or-prediction(head(x, t)))        # or the unsplit model, for reference
        latents = scheduler.step(guided(out), t, latents)

Prompt-only conditioning is prepared once per generation, not once per step.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..cache.policy import AlwaysCompute, CachePolicy
from ..errors import ConfigError
from ..models.family import Tensors
from ..models.model import Model
from .scheduler_update import scheduler_update
from .step import cached_forward


@dataclass
class SampleResult:
    latents: torch.Tensor  # final latents, the sampler's layout (FLUX: packed)
    full_steps: int
    predicted_steps: int
    decisions: list[bool]  # per step, True = the block stack ran


def initial_noise(model: Model, shape: tuple[int, ...], seed: int | list[int]) -> torch.Tensor:
    """Gaussian noise, one generator per sample so that a sample is the same alone or in a batch."""
    seeds = [seed] * shape[0] if isinstance(seed, int) else list(seed)
    if len(seeds) != shape[0]:
        raise ConfigError(f"got {len(seeds)} seeds for a batch of {shape[0]}; pass one seed per sample.")
    noise = [torch.randn(shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds]
    return torch.stack(noise).to(model.device, model.dtype)


@torch.no_grad()
def sample(
    model: Model,
    cond: Tensors,
    latents: torch.Tensor,
    *,
    num_steps: int = 20,
    guidance_scale: float | None = None,
    negative_cond: Tensors | None = None,
    policy: CachePolicy | None = None,
    unsplit: bool = False,
    progress: bool = False,
    on_step=None,
    should_stop=None,
) -> SampleResult:
    """Denoise ``latents`` (initial noise, the sampler's layout) in ``num_steps`` steps.

    guidance_scale: classifier-free guidance for Wan and DiT (cond and uncond in one batch; the
        uncond half is ``negative_cond`` or the family's null conditioning). FLUX.1-dev embeds
        guidance instead: pass ``cond['guidance']``.
    policy: the step-cache policy; default computes every step.
    unsplit: call the model's own forward instead of head/blocks/tail (the reference).
    on_step: called after every step as on_step(step, timestep, computed, seconds) (for --verbose); on a
        GPU the device is synchronised around each step so that ``seconds`` is the step's real time.
    should_stop: called before every step (no device sync); True stops the generation with GenerationCancelled,
        e.g. a server's request that timed out, so that its remaining steps are not computed for nobody.
    """
    run = Trajectory(model, cond, latents, num_steps=num_steps, guidance_scale=guidance_scale,
                     negative_cond=negative_cond, policy=policy, unsplit=unsplit)
    clock = step_clock(model) if on_step else None
    for step in tqdm(range(run.total), desc="sampling", disable=not progress, leave=False):
        if should_stop is not None and should_stop():
            from ..errors import GenerationCancelled

            raise GenerationCancelled(f"the generation was cancelled by its caller after {step} of {run.total} "
                                      "steps.")
        if on_step:
            started = clock()
        t = run.timestep
        run.step()
        if on_step:
            computed = True if unsplit else run.policy.decisions[-1]
            on_step(step, float(t), computed, clock() - started)
    return run.result()


class Trajectory:
    """One generation's denoising state, advanced a step at a time: the body of ``sample``'s loop, and what
    step-level batching (runtime/step_batching.py) interleaves with other requests' trajectories.

        run = Trajectory(model, cond, noise, num_steps=20, policy=policy)
        while not run.done:
            run.step()                                  # alone: head, blocks-or-prediction, tail, update
        # or, batched with others: tensors = run.head(); ...the block stack for several runs...; run.finish(out)
        run.result()
    """

    def __init__(self, model: Model, cond: Tensors, latents: torch.Tensor, *, num_steps: int = 20,
                 guidance_scale: float | None = None, negative_cond: Tensors | None = None,
                 policy: CachePolicy | None = None, unsplit: bool = False):
        if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
            raise ConfigError(f"num_steps must be a whole number >= 1 (got {num_steps!r}).")
        check_generation_arguments(latents, guidance_scale)
        family, parts = model.family, model.parts
        family.check_cond_keys(cond)
        if negative_cond is not None:
            family.check_cond_keys(negative_cond, "negative_cond")
        check_inputs_finite(latents, cond, negative_cond)
        batch = latents.shape[0]
        if guidance_scale is not None:  # one batch of [cond; uncond] rows
            uncond = negative_cond if negative_cond is not None else family.uncond(cond)
            self.model_cond = {k: torch.cat([cond[k], uncond[k]]) for k in cond}
        else:
            self.model_cond = cond
        self.family, self.parts, self.num_steps, self.guidance_scale = family, parts, num_steps, guidance_scale
        self.unsplit = unsplit
        self.rows = batch * (2 if guidance_scale is not None else 1)
        geometry = family.geometry(batch, *family.spatial_size(latents))
        self.scheduler = family.make_scheduler(num_steps, geometry)
        self.latents = latents * getattr(self.scheduler, "init_noise_sigma", 1.0)  # flow matching has none
        self.policy = policy or AlwaysCompute()
        self.policy.reset(num_steps)
        self.prepared = None if unsplit else parts.prepare(_doubled(self.latents, self.rows), self.model_cond)
        # per-step work that needs no model output is done up front, away from the engine calls
        self._update = scheduler_update(self.scheduler)
        self.model_timesteps = family.model_timestep(self.scheduler.timesteps, self.rows)  # [T, rows]
        # the policy's time axis, increasing (one transfer per generation, not per step)
        self.times = family.sampler_times(self.scheduler, self.model_timesteps)
        self._scale_input = getattr(self.scheduler, "scale_model_input", None)  # DDIM has one; flow matching not
        self.total = len(self.scheduler.timesteps)  # model calls: num_steps for every family's scheduler
        self.step_index = 0

    @property
    def done(self) -> bool:
        return self.step_index >= self.total

    @property
    def timestep(self) -> torch.Tensor:
        """The scheduler's timestep of the current step."""
        return self.scheduler.timesteps[self.step_index]

    def _model_input(self) -> torch.Tensor:
        """The current latents as the model takes them: scaled (DDIM), doubled for guidance [rows, ...]."""
        t = self.timestep
        scaled = self._scale_input(self.latents, t) if self._scale_input is not None else self.latents
        return _doubled(scaled, self.rows)

    def head(self) -> Tensors:
        """The current step's tensors (x_in as ``hidden_states``, the per-step conditioning)."""
        return self.parts.head(self._model_input(), self.model_timesteps[self.step_index], self.prepared)

    def step(self) -> None:
        """The current step alone: the block stack or the policy's prediction, then the scheduler's update."""
        step = self.step_index
        if self.unsplit:
            out = self.parts.forward_unsplit(self._model_input(), self.model_timesteps[step], self.model_cond)
        else:
            out = cached_forward(self.parts, self.policy, self.head(), step, self.num_steps, self.times[step])
        self.finish(out)

    def finish(self, out: torch.Tensor) -> None:
        """The model's output for the current step (what ``transformer(...).sample`` returns) -> next latents."""
        prediction = self.family.model_output_to_prediction(out, self.guidance_scale)
        self.latents = self._update(self.step_index, prediction, self.timestep, self.latents)
        self.step_index += 1

    def result(self) -> SampleResult:
        if self.unsplit:
            return SampleResult(self.latents, self.num_steps, 0, [True] * self.num_steps)
        stats = self.policy.stats()
        return SampleResult(self.latents, stats["full"], stats["predicted"], stats["decisions"])


def step_clock(model: Model):
    """time.perf_counter, read after the device has finished the model's queued work (CUDA runs
    asynchronously: without the wait a step's time would be the time to queue it). Only for per-step
    reports, which pay a host sync per step that the runtime otherwise avoids."""
    def clock() -> float:
        model.synchronize()
        return time.perf_counter()

    return clock


def check_generation_arguments(latents, guidance_scale) -> None:
    """The noise is a real floating-point tensor and the guidance a finite number: one sentence each, instead of
    an AttributeError deep inside (numpy, lists), a silently truncated generation (int64 noise) or an all-NaN
    image (a NaN guidance scale)."""
    if not isinstance(latents, torch.Tensor):
        raise ConfigError(f"latents must be a torch.Tensor (got {type(latents).__name__}); e.g. "
                          "torch.from_numpy(array) or runtime/sampler.initial_noise.")
    if not latents.dtype.is_floating_point:
        raise ConfigError(f"latents must be floating-point noise (got {latents.dtype}); e.g. torch.randn(...).")
    if latents.is_meta:
        raise ConfigError("latents are on the meta device (shapes without data); pass a tensor with values.")
    if guidance_scale is not None and (isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real)
                                       or not math.isfinite(guidance_scale)):
        raise ConfigError(f"guidance_scale must be a finite number or None (got {guidance_scale!r}).")


def check_inputs_finite(latents: torch.Tensor, cond: Tensors, negative_cond: Tensors | None = None) -> None:
    """Refuse NaN / Inf in the noise or the conditioning: they would come out as an all-NaN image.
    One host sync per generation (a float32 sum is non-finite exactly when some element is)."""
    named = {"the initial noise (latents)": latents}
    for prefix, tensors in (("cond", cond), ("negative_cond", negative_cond or {})):
        if not isinstance(tensors, dict):
            raise ConfigError(f"{prefix} must be a dict of named tensors.")
        named.update({f"{prefix}[{k!r}]": v for k, v in tensors.items()
                      if isinstance(v, torch.Tensor) and v.dtype.is_floating_point})
    sums = torch.stack([t.detach().sum(dtype=torch.float32).to(latents.device) for t in named.values()])
    bad = [name for name, ok in zip(named, torch.isfinite(sums).tolist()) if not ok]
    if bad:
        raise ConfigError(f"{', '.join(bad)} hold NaN or Inf values; pass finite tensors.")


def _doubled(latents: torch.Tensor, rows: int) -> torch.Tensor:
    return latents if latents.shape[0] == rows else torch.cat([latents, latents])
