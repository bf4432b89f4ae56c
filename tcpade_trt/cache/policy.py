"""The interface between a denoising loop and a step-cache method.

Per step the loop builds a StepContext and asks the policy ``decide(ctx)``:
    None           -> run the block stack; the loop then calls ``observe(ctx, residual, computed=True)``
    a tensor R_hat -> use x_out = x_in + R_hat; the loop calls ``observe(ctx, R_hat, computed=False)``
A policy never sees a backend: it sees the step index, the step count, the image-token input of
the block stack and its own residual history (``R = x_out - x_in``, [B, tokens, hidden]).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class HistoryEntry:
    step: int
    residual: torch.Tensor  # [B, tokens, hidden]
    computed: bool  # True: the blocks ran; False: a prediction


class ResidualHistory:
    """The last ``maxlen`` residuals, oldest first. Bounded: a policy needs only a few."""

    def __init__(self, maxlen: int = 4):
        self.maxlen = maxlen
        self.entries: list[HistoryEntry] = []

    def append(self, step: int, residual: torch.Tensor, computed: bool) -> None:
        self.entries.append(HistoryEntry(step, residual, computed))
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

    @property
    def is_last(self) -> bool:
        return self.step == self.num_steps - 1


class CachePolicy(ABC):
    """Decides per step whether the block stack runs, and predicts its residual when it does not."""

    name: str = "policy"

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
    def decide(self, ctx: StepContext) -> torch.Tensor | None:
        """None to compute this step, else the predicted residual [B, tokens, hidden]."""

    def observe(self, ctx: StepContext, residual: torch.Tensor, computed: bool) -> None:
        """Record what this step used. Subclasses may keep predictions out of the history."""
        self.decisions.append(computed)
        if computed or self.keeps_predictions:
            self.history.append(ctx.step, residual, computed)

    keeps_predictions: bool = False  # whether predicted residuals enter the history
    # set by decide(): its prediction is already known to be finite, so the loop skips its own check
    # (TC-Padé bounds every prediction of a fit once, when it fits, in the gate's transfer)
    prediction_checked: bool = False

    def stats(self) -> dict:
        full = sum(self.decisions)
        return {"full": full, "predicted": len(self.decisions) - full, "decisions": list(self.decisions)}


class AlwaysCompute(CachePolicy):
    """No caching: every step runs the block stack (the 'none' preset)."""

    name = "none"

    def __init__(self):
        super().__init__(history_len=1)

    def decide(self, ctx: StepContext) -> None:
        return None
