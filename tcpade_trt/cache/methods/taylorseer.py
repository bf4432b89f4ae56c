"""TaylorSeer at full-block granularity, on the same residual as TC-Padé (like for like)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..config import ScheduleConfig, _require
from ..policy import CachePolicy, Prediction, StepContext, predicted
from ..registry import Method
from ..schedule import FAST


@dataclass(frozen=True)
class TaylorSeerConfig(ScheduleConfig):
    """TaylorSeer at full-block granularity: Taylor series in the step offset, derivatives by
    backward finite differences over the step distance between full steps.

    order: 1 (default) or 2.
    """

    method: ClassVar[str] = "taylorseer"
    order: int = 1

    def __post_init__(self):
        super().__post_init__()
        _require(self.order in (1, 2), f"order must be 1 or 2 (got {self.order!r}).")



class TaylorSeerPolicy(CachePolicy):
    """TaylorSeer: derivatives by backward differences between full steps, Taylor series in the offset.

    At each full step s with previous full step s', distance d = s - s':
        D0 = R(s);  D_{i+1} = (D_i(s) - D_i(s')) / d      (as TaylorSeer's derivative update)
    Predicted step s + k:  R_hat = sum_i D_i k^i / i!
    """

    name = "taylorseer"

    def __init__(self, config: TaylorSeerConfig):
        super().__init__(history_len=1)
        self.config = config
        self.derivatives: list[torch.Tensor] = []
        self.last_full_step: int | None = None
        self.anchors: frozenset[int] = frozenset()

    def reset(self, num_steps: int) -> None:
        super().reset(num_steps)
        self.derivatives, self.last_full_step = [], None
        self.anchors = self.config.full_steps_for(num_steps)

    def predict(self, ctx: StepContext) -> Prediction | None:
        if ctx.step in self.anchors or not self.derivatives:
            return None
        k = ctx.step - self.last_full_step
        return predicted(ctx, sum(d * (k**i / math.factorial(i)) for i, d in enumerate(self.derivatives)))

    def update(self, ctx: StepContext, residual: torch.Tensor, computed: bool) -> None:
        super().update(ctx, residual, computed)
        if not computed:
            return
        new = [residual]
        if self.last_full_step is not None:
            distance = ctx.step - self.last_full_step
            for i in range(min(self.config.order, len(self.derivatives))):
                new.append((new[i] - self.derivatives[i]) / distance)
        self.derivatives, self.last_full_step = new, ctx.step


def taylorseer() -> TaylorSeerConfig:
    """TaylorSeer order 1 on tcpade-fast's full steps."""
    return TaylorSeerConfig(budget=FAST, order=1)


def taylorseer_o2() -> TaylorSeerConfig:
    """TaylorSeer order 2 on tcpade-fast's full steps."""
    return TaylorSeerConfig(budget=FAST, order=2)


METHOD = Method(TaylorSeerConfig, lambda config, pade: TaylorSeerPolicy(config),
                {"taylorseer": taylorseer, "taylorseer-o2": taylorseer_o2}, compared=("taylorseer",))
