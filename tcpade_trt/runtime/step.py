"""One denoising step with the block stack cached: the only place where a policy meets a model.

    x_in, per-step tensors = parts.head(...)           (by the caller: the sampler or the eager hook)
    prediction = policy.predict(ctx)                   cache/: None = compute
    x_out = prediction.x_out  or  parts.blocks(...)    the block stack only on full steps
    policy.update(ctx, residual, computed)
    return parts.tail(x_out, step)

Shared by the reference sampler, the engine runtime and the eager ``apply_cache`` hook, so all of
them take the same decisions for the same inputs. On engines the step's arithmetic lives in the
engines: the blocks engine returns the residual with its output, TC-Padé's evaluation engine returns
x_out itself.
"""

from __future__ import annotations

import torch

from ..cache.policy import CachePolicy, StepContext
from ..models.family import Tensors
from ..models.parts import Parts


def cached_forward(parts: Parts, policy: CachePolicy, step_tensors: Tensors, step: int,
                   num_steps: int, time: float | None = None) -> torch.Tensor:
    """tail(x_out), where x_out comes from the blocks or from the policy's prediction.

    time: the step's sampler time for the policy's fit, minus the timestep the model is given (a host float,
    so that no step pays a device sync for it); None = the step index."""
    ctx = step_context(parts, step_tensors, step, num_steps, time)
    prediction = policy.predict(ctx)
    if prediction is not None:
        x_out = prediction.x_out
        policy.update(ctx, prediction.residual, computed=False)
    elif policy.needs_residual:  # compute: asked for, or the prediction was not finite
        x_out, residual = parts.blocks_with_residual(step_tensors)
        policy.update(ctx, residual, computed=True)
    else:
        x_out = parts.blocks(step_tensors)
        policy.update(ctx, None, computed=True)
    return parts.tail(x_out, step_tensors)


def step_context(parts: Parts, step_tensors: Tensors, step: int, num_steps: int,
                 time: float | None = None) -> StepContext:
    """What a policy sees of one step: x_in, the step, its time, and TeaCache's signal on demand."""
    return StepContext(step=step, num_steps=num_steps, x_in=step_tensors["hidden_states"],
                       modulated_input=lambda: parts.modulated_input(step_tensors), time=time)
