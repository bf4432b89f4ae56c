"""One dataclass per cache method, validated on construction.

    cache_config("tcpade-fast")                      -> TCPadeConfig(...)   (cache/spec.py: presets, overrides)
    make_policy("tcpade-fast:threshold=0.5")         -> a fresh policy for one trajectory (cache/factory.py)

Every field's default and meaning is in its class docstring; a bad value raises ConfigError with
a sentence that says which values are allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import ClassVar

from ..errors import ConfigError


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _number_in(name: str, value, low: float, high: float = math.inf, low_open: bool = False) -> None:
    """A finite number in [low, high] (or (low, high]); NaN, Inf, strings and booleans are refused."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        left = "(" if low_open else "["
        right = "]" if math.isfinite(high) else ")"
        raise ConfigError(f"{name} must be a finite number in {left}{low:g}, {high:g}{right} (got {value!r}).")


@dataclass(frozen=True)
class CacheConfig:
    """Base of all cache configs. ``method`` names the policy class."""

    method: ClassVar[str] = ""

    def with_(self, **changes) -> CacheConfig:
        """A copy with some fields changed (validated again)."""
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        _require(not unknown, f"{type(self).__name__} has no field(s) {sorted(unknown)}; fields: {sorted(names)}.")
        return replace(self, **changes)


@dataclass(frozen=True)
class NoCacheConfig(CacheConfig):
    """Every step runs the block stack."""

    method: ClassVar[str] = "none"


@dataclass(frozen=True)
class ScheduleConfig(CacheConfig):
    """The fixed skeleton of full steps shared by the interval methods.

    full_steps: an explicit list of full steps for a 20-step run, e.g. (0, 1, 2, 6, 11, 16, 19);
              other step counts T scale it (round(s * (T - 1) / 19)). When empty (default), the
              uniform skeleton below applies. The last step is always full.
    warmup:   uniform skeleton: the first ``warmup`` steps are full (default 2; at least 1).
    interval: uniform skeleton: after warm-up, every ``interval``-th step is full (an anchor),
              starting with step ``warmup`` (default 5).
    """

    warmup: int = 2
    interval: int = 5
    full_steps: tuple[int, ...] = ()

    def __post_init__(self):
        _require(isinstance(self.warmup, int) and self.warmup >= 1,
                 f"warmup must be an integer >= 1 (got {self.warmup!r}): the history needs a computed step.")
        _require(isinstance(self.interval, int) and self.interval >= 1,
                 f"interval must be an integer >= 1 (got {self.interval!r}); 1 means every step is full.")
        steps = self.full_steps
        _require(all(isinstance(s, int) and 0 <= s <= 19 for s in steps) and (not steps or steps[0] == 0),
                 f"full_steps must be step indices of a 20-step run, 0-19, starting with 0 (got {steps!r}).")

    def is_anchor(self, step: int, num_steps: int) -> bool:
        """Full by schedule: the listed (scaled) steps, or warm-up and every interval-th step; the last step."""
        if step == num_steps - 1:
            return True
        if self.full_steps:
            return step in {round(s * (num_steps - 1) / 19) for s in self.full_steps}
        return step < self.warmup or (step - self.warmup) % self.interval == 0


@dataclass(frozen=True)
class TCPadeConfig(ScheduleConfig):
    """TC-Padé: predict the block-stack residual with a Padé extrapolation at stable steps.

    variant:   "rational" (default; [1/1] Padé in the real step offset over the last three
               computed residuals, predictions kept out of the history), "paper" (the paper's
               equations) or "reference" (the released code's formula). See cache/pade.py; measured
               quality of each: the README's "Choosing the defaults".
    threshold: theta in [0, 1]. A non-anchor step is predicted only if the Trajectory Stability
               Indicator of every sample in the batch is <= theta (TSI 0 = the residual keeps moving
               in one direction, 1 = it reverses). Lower = stricter = never fewer full steps;
               1.0 turns the gate off (the schedule alone decides).
    lam:       lambda of the stability factor sigma (paper / reference variants), default 10.
    phase_aware: use the three phases; early (step < early * T): alpha1 r1 + alpha2 r2;
               middle: Padé; late (step > late * T): Padé + beta (r1 - r2). Off by default (it lowered
               PSNR on the demo model: README, "Choosing the defaults").
    alpha1, alpha2, beta, early, late: the phase constants (0.9, 0.1, 0.3, 0.3, 0.8).
    c_max:     largest damping of the rational variant's denominator, per step of offset (0.25).
    input_delta: reference variant only: x_out = x_in + R_hat + input_delta (x_in(s) - x_in(s-1)), 0.2.
    """

    method: ClassVar[str] = "tcpade"
    variant: str = "rational"
    threshold: float = 1.0
    lam: float = 10.0
    phase_aware: bool = False
    alpha1: float = 0.9
    alpha2: float = 0.1
    beta: float = 0.3
    early: float = 0.3
    late: float = 0.8
    c_max: float = 0.25
    input_delta: float = 0.2

    def __post_init__(self):
        super().__post_init__()
        from .pade import VARIANTS

        _require(self.variant in VARIANTS, f"variant must be one of {', '.join(VARIANTS)} (got {self.variant!r}).")
        _number_in("threshold (the TSI gate's theta: 0 predicts only perfectly straight trajectories, 1 never "
                   "blocks a prediction)", self.threshold, 0.0, 1.0)
        _number_in("lam", self.lam, 0.0, low_open=True)
        for name in ("alpha1", "alpha2", "beta", "input_delta", "early", "late"):
            _number_in(name, getattr(self, name), 0.0, 1.0)
        _require(self.early <= self.late, f"need early <= late (got early={self.early}, late={self.late}).")
        _number_in("c_max (0 makes the rational variant linear)", self.c_max, 0.0)
        _require(isinstance(self.phase_aware, bool), f"phase_aware must be true or false (got {self.phase_aware!r}).")


@dataclass(frozen=True)
class ReuseConfig(ScheduleConfig):
    """FORA/ToCa-style reuse: at a predicted step the residual is the last computed one."""

    method: ClassVar[str] = "reuse"


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
        _number_in("threshold", self.threshold, 0.0)
        _require(all(isinstance(c, (int, float)) and math.isfinite(c) for c in self.coefficients),
                 f"coefficients must be finite numbers, highest power first (got {self.coefficients!r}).")
        _require(isinstance(self.warmup, int) and self.warmup >= 1, f"warmup must be a whole number >= 1 (got "
                 f"{self.warmup!r}).")


TEACACHE_FLUX_COEFFICIENTS = (4.98651651e02, -2.83781631e02, 5.58554382e01, -3.82021401e00, 2.64230861e-01)
