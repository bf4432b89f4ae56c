"""One denoising step with the block stack cached: the only place where a policy meets a model.

Shared by the reference sampler and the eager ``apply_cache`` hook, so both take the same
decisions for the same inputs.
"""

from __future__ import annotations

import torch

from ..models.base import SplitModel, Tensors
from .policy import CachePolicy, StepContext


def is_finite(t: torch.Tensor) -> bool:
    """One host sync: the price of never letting a NaN/Inf prediction reach an image.

    Checks the float32 sum instead of every element: any NaN or Inf makes the sum non-finite, and
    one reduction costs a fraction of an elementwise test plus its boolean tensor. A sum of finite
    values that overflows float32 reads as non-finite too, which only turns the step into a full
    one (safe, and residuals are many orders of magnitude below 3e38).
    """
    return bool(torch.isfinite(t.sum(dtype=torch.float32)))


def cached_forward(model: SplitModel, policy: CachePolicy, step_tensors: Tensors, step: int,
                   num_steps: int) -> torch.Tensor:
    """tail(x_out) where x_out comes from the blocks or from the policy's prediction."""
    x_in = step_tensors["hidden_states"]
    ctx = StepContext(step=step, num_steps=num_steps, x_in=x_in,
                      modulated_input=lambda: model.modulated_input(step_tensors))
    predicted = policy.decide(ctx)
    if predicted is not None and (policy.prediction_checked or is_finite(predicted)):
        policy.observe(ctx, predicted, computed=False)
        x_out = x_in + predicted
    else:  # compute: asked for, or the prediction was not finite
        x_out = model.blocks(step_tensors)
        policy.observe(ctx, x_out - x_in, computed=True)
    return model.tail(x_out, step_tensors)
