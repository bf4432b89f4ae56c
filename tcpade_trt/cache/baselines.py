"""The baselines TC-Padé is compared with, on the same full-block residual (like for like)."""

from __future__ import annotations

import math

import torch

from .config import ReuseConfig, TaylorSeerConfig, TeaCacheConfig
from .policy import CachePolicy, Prediction, StepContext, predicted


class ReusePolicy(CachePolicy):
    """FORA / ToCa-style: R_hat = the last computed residual."""

    name = "reuse"

    def __init__(self, config: ReuseConfig):
        super().__init__(history_len=1)
        self.config = config
        self.anchors: frozenset[int] = frozenset()

    def reset(self, num_steps: int) -> None:
        super().reset(num_steps)
        self.anchors = self.config.full_steps_for(num_steps)

    def predict(self, ctx: StepContext) -> Prediction | None:
        if ctx.step in self.anchors or not len(self.history):
            return None
        return predicted(ctx, self.history.entries[-1].residual)


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


class TeaCachePolicy(CachePolicy):
    """TeaCache-style gate on the first block's modulated input, reusing the last residual."""

    name = "teacache"

    def __init__(self, config: TeaCacheConfig):
        super().__init__(history_len=1)
        self.config = config
        self.accumulated = 0.0
        self.previous: torch.Tensor | None = None

    def reset(self, num_steps: int) -> None:
        super().reset(num_steps)
        self.accumulated, self.previous = 0.0, None

    def rescale(self, x: float) -> float:
        coeffs = self.config.coefficients
        return sum(c * x ** (len(coeffs) - 1 - i) for i, c in enumerate(coeffs)) if coeffs else x

    def predict(self, ctx: StepContext) -> Prediction | None:
        modulated = ctx.modulated_input()
        previous, self.previous = self.previous, modulated
        if ctx.step < self.config.warmup or ctx.is_last or previous is None or not len(self.history):
            self.accumulated = 0.0
            return None
        change = ((modulated - previous).abs().mean() / (previous.abs().mean() + 1e-12)).item()
        self.accumulated += self.rescale(change)
        # a NaN change (non-finite inputs) compares False with everything: it must compute, not predict
        if not self.accumulated < self.config.threshold:
            self.accumulated = 0.0
            return None
        return predicted(ctx, self.history.entries[-1].residual)
