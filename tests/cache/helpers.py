"""Drive a policy over a residual sequence whose future is known (no model needed)."""

import torch

from tcpade_trt.cache.policy import StepContext


def run_policy(policy, residual_at, num_steps=20, modulated_at=None, x_in=None):
    """Run ``policy`` for ``num_steps`` steps where the true residual at step s is residual_at(s).

    Returns (full step list, {step: predicted residual}).
    """
    policy.reset(num_steps)
    predictions = {}
    x = x_in if x_in is not None else torch.zeros_like(residual_at(0))
    for s in range(num_steps):
        ctx = StepContext(step=s, num_steps=num_steps, x_in=x,
                          modulated_input=(lambda s=s: modulated_at(s)) if modulated_at else None)
        prediction = policy.predict(ctx)
        if prediction is None:
            policy.update(ctx, residual_at(s), computed=True)
        else:
            predictions[s] = prediction.x_out - ctx.x_in  # the predicted residual
            policy.update(ctx, prediction.residual, computed=False)
    return [s for s, full in enumerate(policy.decisions) if full], predictions


def linear_sequence(seed=0, shape=(2, 6, 8)):
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    return lambda s: a + s * b
