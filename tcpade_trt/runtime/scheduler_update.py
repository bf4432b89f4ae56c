"""The scheduler's update of the latents, with the flow-matching Euler step precomputed.

diffusers' ``FlowMatchEulerDiscreteScheduler.step`` spends most of its time on per-call bookkeeping
(two sigma lookups and their difference, index checks) around one multiply-add. In the engine
runtime that bookkeeping is a visible share of a predicted step (~1.5 ms of engines), so for the
plain (deterministic, global-sigma) Euler scheduler the differences sigma[i+1] - sigma[i] are taken
once per generation and each step runs the same multiply and add diffusers runs, in float32:
bit-identical latents (tests/runtime/test_sampler.py). Any other scheduler keeps its own ``step``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

# update(step index, model prediction, scheduler timestep, latents) -> next latents
Update = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def scheduler_update(scheduler) -> Update:
    """The per-step latent update of ``scheduler`` (timesteps already set)."""
    if type(scheduler) is FlowMatchEulerDiscreteScheduler and not scheduler.config.stochastic_sampling:
        sigmas = scheduler.sigmas
        steps_dt = list((sigmas[1:] - sigmas[:-1]).unbind())  # 0-dim float32 tensors, as diffusers computes dt

        def euler(step: int, prediction: torch.Tensor, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            # diffusers: (latents.float() + dt * prediction).to(prediction.dtype). The sum is formed in
            # the product's buffer (addition commutes exactly): one allocation and pass less per step
            return (steps_dt[step] * prediction).add_(latents.to(torch.float32)).to(prediction.dtype)

        return euler
    return lambda step, prediction, t, latents: scheduler.step(prediction, t, latents, return_dict=False)[0]
