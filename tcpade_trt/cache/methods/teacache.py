"""TeaCache-style gate on the first block's modulated input, reusing the last residual."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..config import CacheConfig, _as_tuple, _number_in, _numbers, _require
from ..policy import CachePolicy, Prediction, StepContext, predicted
from ..registry import Method


@dataclass(frozen=True)
class TeaCacheConfig(CacheConfig):
    """TeaCache-style: accumulate the rescaled relative L1 change of the first block's modulated
    input; reuse the last residual while the sum stays under ``threshold``, else compute and reset.

    threshold:    accumulated change allowed before a full step (default 0.25: 7 full steps of 20 on
                  the demo model).
    coefficients: polynomial (highest power first) rescaling the raw change; () = identity.
                  TeaCache's FLUX.1 fit is TEACACHE_FLUX_COEFFICIENTS.
    warmup:       the first ``warmup`` steps are full (default 1); the last step is always full.
    """

    method: ClassVar[str] = "teacache"
    threshold: float = 0.25
    coefficients: tuple[float, ...] = ()
    warmup: int = 1

    def __post_init__(self):
        _as_tuple(self, "coefficients")
        _number_in("threshold", self.threshold, 0.0)
        _require(isinstance(self.coefficients, tuple) and _numbers(self.coefficients),
                 f"coefficients must be finite numbers, highest power first (got {self.coefficients!r}).")
        _require(isinstance(self.warmup, int) and self.warmup >= 1, f"warmup must be a whole number >= 1 (got "
                 f"{self.warmup!r}).")


TEACACHE_FLUX_COEFFICIENTS = (4.98651651e02, -2.83781631e02, 5.58554382e01, -3.82021401e00, 2.64230861e-01)


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


def teacache() -> TeaCacheConfig:
    """TeaCache-style gate, threshold 0.25 with identity rescaling: 7 full steps of 20 on the demo
    model (the count depends on the model's trajectory)."""
    return TeaCacheConfig(threshold=0.25)


# the gate sums the change of the whole batch's input: a request batched with others could get another schedule
METHOD = Method(TeaCacheConfig, lambda config, pade: TeaCachePolicy(config), {"teacache": teacache},
                compared=("teacache",), decides_per_batch=lambda config: True)
