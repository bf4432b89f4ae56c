"""The interface between a denoising loop and a step-cache method.

Per step the loop (runtime/step.py) builds a StepContext and asks the policy ``predict(ctx)``:
    None                        -> run the block stack; then ``update(ctx, residual, computed=True)``
    Prediction(x_out, residual) -> use x_out; then ``update(ctx, residual, computed=False)``
Simple policies form their prediction with ``predicted(ctx, R_hat)`` (x_in + R_hat, checked to be
finite); TC-Padé's evaluation engine returns x_out itself, checked once per fit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch


def is_finite(t: torch.Tensor) -> bool:
    """One host sync: the price of never letting a NaN/Inf prediction reach an image.

    Checks the float32 sum instead of every element: any NaN or Inf makes the sum non-finite, and
    one reduction costs a fraction of an elementwise test plus its boolean tensor. A sum of finite
    values that overflows float32 reads as non-finite too, which only turns the step into a full
    one (safe, and residuals are many orders of magnitude below 3e38).
    """
    return bool(torch.isfinite(t.sum(dtype=torch.float32)))


class Prediction(NamedTuple):
    x_out: torch.Tensor  # the block stack's predicted output [B, tokens, hidden], known to be finite
    residual: torch.Tensor | None  # x_out - x_in, or None when the policy keeps no predictions


@dataclass
class HistoryEntry:
    step: int
    residual: torch.Tensor  # [B, tokens, hidden]
    computed: bool  # True: the blocks ran; False: a prediction
    time: float = 0.0  # the step's sampler time (StepContext.time)


class ResidualHistory:
    """The last ``maxlen`` residuals, oldest first. Bounded: a policy needs only a few."""

    def __init__(self, maxlen: int = 4):
        self.maxlen = maxlen
        self.entries: list[HistoryEntry] = []

    def append(self, step: int, residual: torch.Tensor, computed: bool, time: float | None = None) -> None:
        self.entries.append(HistoryEntry(step, residual, computed, float(step) if time is None else time))
        del self.entries[: -self.maxlen]

    def computed(self) -> list[HistoryEntry]:
        return [e for e in self.entries if e.computed]

    def clear(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)


@dataclass
class StepContext:
    step: int  # 0 .. num_steps - 1, counting up
    num_steps: int
    x_in: torch.Tensor  # [B, tokens, hidden] block-stack input of this step
    modulated_input: Callable[[], torch.Tensor] | None = None  # first block's modulated input, lazily
    # the sampler's time at this step, increasing through the run: minus the timestep the model is given
    # (flow matching: -1000 sigma). None: the step index. Only differences and ratios of times are used.
    time: float | None = None

    @property
    def is_last(self) -> bool:
        return self.step == self.num_steps - 1


class CachePolicy(ABC):
    """A step-cache method's math, wired into a loop by two verbs that never call each other:

        predict(ctx) -> Prediction | None   before the step: None = run the block stack; else its
                                            predicted output (finite: a policy checks its own)
        update(ctx, residual, computed)     after the step: the residual it used (computed, or the
                                            prediction's own; None when the policy keeps none)

    ``reset(num_steps)`` starts a trajectory. A policy sees no backend: the step index and count,
    the block stack's input and its own residual history (R = x_out - x_in, [B, tokens, hidden]).
    """

    name: str = "policy"
    keeps_predictions: bool = False  # whether predicted residuals enter the history
    # whether update() needs the residual of computed steps; the loop skips forming it for a policy that
    # never predicts
    needs_residual: bool = True

    def __init__(self, history_len: int = 4):
        self.history = ResidualHistory(history_len)
        self.decisions: list[bool] = []  # True = full step, per step of the current trajectory
        self.num_steps = 0

    def reset(self, num_steps: int) -> None:
        """Start a new trajectory of ``num_steps`` steps."""
        self.history.clear()
        self.decisions = []
        self.num_steps = num_steps

    @abstractmethod
    def predict(self, ctx: StepContext) -> Prediction | None:
        """None to compute this step, else the block stack's predicted output (known to be finite)."""

    def update(self, ctx: StepContext, residual: torch.Tensor | None, computed: bool) -> None:
        """Record what this step used. Predictions enter the history only if ``keeps_predictions``."""
        self.decisions.append(computed)
        if residual is not None and (computed or self.keeps_predictions):
            self.history.append(ctx.step, residual, computed, ctx.time)

    def stats(self) -> dict:
        full = sum(self.decisions)
        return {"full": full, "predicted": len(self.decisions) - full, "decisions": list(self.decisions)}


def predicted(ctx: StepContext, residual: torch.Tensor | None) -> Prediction | None:
    """A predicted residual as a Prediction (x_out = x_in + R_hat), or None to compute: no prediction, or
    one that is not finite (one host sync, the price of never letting NaN or Inf reach an image)."""
    if residual is None or not is_finite(residual):
        return None
    return Prediction(ctx.x_in + residual, residual)


class AlwaysCompute(CachePolicy):
    """No caching: every step runs the block stack (the 'none' preset)."""

    name = "none"
    needs_residual = False

    def __init__(self, config=None):
        super().__init__(history_len=1)

    def predict(self, ctx: StepContext) -> None:
        return None
