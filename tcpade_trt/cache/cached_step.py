"""One denoising step with the block stack cached: the only place where a policy meets a model.

Shared by the reference sampler and the eager ``apply_cache`` hook, so both take the same
decisions for the same inputs. On engines the step's arithmetic lives in the engines: the blocks
engine returns the residual with its output, TC-Padé's evaluation engine returns x_out itself.
"""

from __future__ import annotations

import torch

from ..models.base import SplitModel, Tensors
from .policy import CachePolicy, StepContext


def cached_forward(model: SplitModel, policy: CachePolicy, step_tensors: Tensors, step: int,
                   num_steps: int) -> torch.Tensor:
    """tail(x_out) where x_out comes from the blocks or from the policy's prediction."""
    ctx = StepContext(step=step, num_steps=num_steps, x_in=step_tensors["hidden_states"],
                      modulated_input=lambda: model.modulated_input(step_tensors))
    prediction = policy.predict(ctx)
    if prediction is not None:
        x_out = prediction.x_out
        policy.observe(ctx, prediction.residual, computed=False)
    elif policy.needs_residual:  # compute: asked for, or the prediction was not finite
        x_out, residual = model.blocks_with_residual(step_tensors)
        policy.observe(ctx, residual, computed=True)
    else:
        x_out = model.blocks(step_tensors)
        policy.observe(ctx, None, computed=True)
    return model.tail(x_out, step_tensors)
