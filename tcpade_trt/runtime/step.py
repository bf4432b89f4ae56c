"""One denoising step with the block stack cached: the only place where a policy meets a model.

    x_in, per-step tensors = parts.head(...)           (by the caller: the sampler or the eager hook)
    prediction = policy.predict(ctx)                   cache/: None = compute
    x_out = prediction.x_out  or  parts.blocks(...)    the block stack only on full steps
    policy.update(ctx, residual, computed)
    return parts.tail(x_out, step)

The only step: the reference sampler, the engine runtime, the eager ``apply_cache`` hook and the step batcher
(several trajectories sharing one block-stack call) all run it, so all of them take the same decisions for the
same inputs. On engines the step's arithmetic lives in the
engines: the blocks engine returns the residual with its output, TC-Padé's evaluation engine returns
x_out itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from ..cache.policy import CachePolicy, StepContext
from ..models.family import Tensors
from ..models.parts import Parts


class StepInput(NamedTuple):
    """One trajectory's step: its policy, the head's tensors, where it is, and its rows in a shared block call."""

    policy: CachePolicy
    tensors: Tensors
    step: int
    num_steps: int
    time: float | None = None  # the sampler's time (minus the model's timestep, a host float); None = step index
    rows: int = 0  # the trajectory's rows (only read by ``concat``)


def cached_forward(parts: Parts, policy: CachePolicy, step_tensors: Tensors, step: int,
                   num_steps: int, time: float | None = None) -> torch.Tensor:
    """tail(x_out), where x_out comes from the blocks or from the policy's prediction.

    time: the step's sampler time for the policy's fit, minus the timestep the model is given (a host float,
    so that no step pays a device sync for it); None = the step index."""
    return cached_forward_many(parts, [StepInput(policy, step_tensors, step, num_steps, time)])[0]


def cached_forward_many(parts: Parts, steps: list[StepInput],
                        concat: Callable[[list[tuple[int, Tensors]]], Tensors] | None = None) -> list[torch.Tensor]:
    """One step of several trajectories (the step batcher's tick; one for the sampler and the hook): each policy
    decides, and those at a full step share one block-stack call on ``concat``'s rows ((rows, tensors) of each ->
    one input, their rows in order). Returns tail(x_out) of each, in order."""
    contexts = [step_context(parts, s.tensors, s.step, s.num_steps, s.time) for s in steps]
    x_outs: list[torch.Tensor | None] = []
    for s, ctx in zip(steps, contexts):
        prediction = s.policy.predict(ctx)
        if prediction is not None:
            s.policy.update(ctx, prediction.residual, computed=False)
        x_outs.append(None if prediction is None else prediction.x_out)
    full = [i for i, x in enumerate(x_outs) if x is None]  # asked for, or the prediction was not finite
    if full:
        shared = [(steps[i].rows, steps[i].tensors) for i in full]
        tensors = shared[0][1] if len(full) == 1 else concat(shared)
        if any(steps[i].policy.needs_residual for i in full):
            x_out, residual = parts.blocks_with_residual(tensors)
        else:  # no policy keeps a residual (no cache): the block stack alone
            x_out, residual = parts.blocks(tensors), None
        offset = 0
        for i in full:
            rows = slice(offset, offset + steps[i].rows) if len(full) > 1 else slice(None)
            offset += steps[i].rows
            x_outs[i] = x_out[rows]
            keeps = residual is not None and steps[i].policy.needs_residual
            steps[i].policy.update(contexts[i], residual[rows] if keeps else None, computed=True)
    return [parts.tail(x, s.tensors) for x, s in zip(x_outs, steps)]


def step_context(parts: Parts, step_tensors: Tensors, step: int, num_steps: int,
                 time: float | None = None) -> StepContext:
    """What a policy sees of one step: x_in, the step, its time, and TeaCache's signal on demand."""
    return StepContext(step=step, num_steps=num_steps, x_in=step_tensors["hidden_states"],
                       modulated_input=lambda: parts.modulated_input(step_tensors), time=time)
