"""MagCache (Ma et al., 2025, "MagCache: Fast Video Generation with Magnitude-Aware Cache"), on the full-block
residual: skip steps while the accumulated error of the residual's magnitude stays small, reusing the last
computed residual, as diffusers' hooks/mag_cache.py does.

Per step t after the retention phase (the first round(retention * T) steps are full):
    ratio   *= r_t                       r_t: how the residual's magnitude changes over one step
    skipped += 1;  error += |1 - ratio|
    reuse the last residual if error <= threshold and skipped <= max_skip, else compute and reset all three
r_t is the model's calibrated ratio (``mag_ratios``, nearest-interpolated to T as diffusers does) or, without
one, measured on the run itself: the mean over tokens of |R_s| / |R_p| between the last two computed steps p < s,
taken to the power 1 / (s - p). The last step always computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..config import CacheConfig, _as_tuple, _number_in, _numbers, _require
from ..policy import CachePolicy, Prediction, StepContext, predicted
from ..registry import Method


@dataclass(frozen=True)
class MagCacheConfig(CacheConfig):
    """MagCache.

    threshold:  accumulated magnitude error allowed before a full step (default 0.25: 8-9 full steps of 20 on
                demo-dit, about tcpade-slow's 9; MagCache's own default is 0.06 with calibrated ratios). With
                max_skip 3 and retention 0.2, at least 8 of 20 steps compute whatever the threshold.
    max_skip:   at most this many steps in a row are skipped (default 3, MagCache's K).
    retention:  the share of the first steps that always compute (default 0.2, as MagCache).
    mag_ratios: the model's per-step magnitude ratios from an uncached run, any length ("1.0/1.21/1.12/..."), or
                () (default): measured on the run itself, which makes the decisions depend on the batch.
    """

    method: ClassVar[str] = "magcache"
    threshold: float = 0.25
    max_skip: int = 3
    retention: float = 0.2
    mag_ratios: tuple[float, ...] = ()

    def __post_init__(self):
        _as_tuple(self, "mag_ratios")
        _number_in("threshold", self.threshold, 0.0)
        _require(isinstance(self.max_skip, int) and not isinstance(self.max_skip, bool) and self.max_skip >= 1,
                 f"max_skip must be a whole number >= 1 (got {self.max_skip!r}).")
        _number_in("retention (the share of the first steps that always compute)", self.retention, 0.0, 1.0)
        ratios = self.mag_ratios
        _require(isinstance(ratios, tuple) and _numbers(ratios) and all(r > 0 for r in ratios),
                 f"mag_ratios must be positive finite numbers, one per step (got {self.mag_ratios!r}).")

    def ratios_for(self, num_steps: int) -> list[float] | None:
        """The calibrated ratios at ``num_steps`` steps (nearest neighbour, as diffusers), or None (measured)."""
        ratios = self.mag_ratios
        if not ratios:
            return None
        if num_steps == 1:
            return [ratios[-1]]
        scale = (len(ratios) - 1) / (num_steps - 1)
        # as diffusers' nearest_interp computes it: a float32 grid, rounded half to even
        index = torch.round(torch.arange(num_steps, dtype=torch.float32) * scale).long().tolist()
        return [ratios[i] for i in index]


def magnitude_ratio(newer: torch.Tensor, older: torch.Tensor) -> float:
    """Mean over samples and tokens of |newer| / |older| (norms over the hidden axis of [B, tokens, hidden])."""
    return float((newer.float().norm(dim=-1) / (older.float().norm(dim=-1) + 1e-8)).mean())


class MagCachePolicy(CachePolicy):
    name = "magcache"

    def __init__(self, config: MagCacheConfig):
        super().__init__(history_len=2)
        self.config = config
        self.ratios: list[float] | None = None
        self.measured_ratio: float | None = None  # per step, between the last two computed residuals
        self.ratio, self.error, self.skipped = 1.0, 0.0, 0

    def reset(self, num_steps: int) -> None:
        super().reset(num_steps)
        self.ratios = self.config.ratios_for(num_steps)
        self.measured_ratio = None
        self.ratio, self.error, self.skipped = 1.0, 0.0, 0

    def _step_ratio(self, step: int) -> float | None:
        return self.ratios[step] if self.ratios is not None else self.measured_ratio

    def predict(self, ctx: StepContext) -> Prediction | None:
        retained = math.floor(self.config.retention * ctx.num_steps + 0.5)
        if ctx.step < retained or ctx.is_last or not len(self.history):
            return None
        step_ratio = self._step_ratio(ctx.step)
        if step_ratio is None:  # nothing measured yet: compute
            return None
        self.ratio *= step_ratio
        self.skipped += 1
        self.error += abs(1.0 - self.ratio)
        # NaN compares False: a non-finite ratio computes
        if not (self.error <= self.config.threshold and self.skipped <= self.config.max_skip):
            self.ratio, self.error, self.skipped = 1.0, 0.0, 0
            return None
        return predicted(ctx, self.history.entries[-1].residual)

    def update(self, ctx: StepContext, residual: torch.Tensor | None, computed: bool) -> None:
        super().update(ctx, residual, computed)
        computed_entries = self.history.computed()
        if computed and self.ratios is None and len(computed_entries) == 2:
            older, newer = computed_entries
            gap = newer.step - older.step
            self.measured_ratio = magnitude_ratio(newer.residual, older.residual) ** (1.0 / gap)


def magcache() -> MagCacheConfig:
    """MagCache with its ratios measured on the run, threshold 0.25: 8-9 full steps of 20 on demo-dit
    (`python -m research.method_study --model demo-dit` puts it beside the others)."""
    return MagCacheConfig()


METHOD = Method(MagCacheConfig, lambda config, pade: MagCachePolicy(config), {"magcache": magcache},
                compared=("magcache",),
                # ratios measured on the run are the batch's mean: a request batched with others could get
                # another schedule
                decides_per_batch=lambda config: not config.mag_ratios)
