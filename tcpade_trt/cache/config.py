"""One dataclass per cache method, validated on construction.

    cache_config("tcpade-fast")                      -> TCPadeConfig(...)   (cache/spec.py: presets, overrides)
    make_policy("tcpade-fast:threshold=1.0")         -> a fresh policy for one trajectory (cache/factory.py)

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


Calibrated = tuple[tuple[int, float, tuple[int, ...]], ...]  # ((num_steps, budget, full steps), ...)


@dataclass(frozen=True)
class ScheduleConfig(CacheConfig):
    """The fixed skeleton of full steps shared by the interval methods. The first way that is set decides:

    full_steps: an explicit list of full steps in the run's own steps, e.g. (0, 1, 3, 7, 12, 16, 19) for
              20 steps; a run with fewer steps than the list names is refused. The last step is always full.
    budget:   the share of full steps, in (0, 1]: round(budget * T) of a T-step run, placed by the
              model's calibrated table (``calibrated``) where it has an entry for (T, budget), else by
              cache/schedule.budget_schedule. The presets are budgets (tcpade-fast 0.35, tcpade-slow 0.45).
              0 (default) = not used.
    warmup, interval: the uniform skeleton: the first ``warmup`` steps are full (default 2; at least 1), then
              every ``interval``-th step (default 5), starting with step ``warmup``.
    calibrated: schedules measured for one model (``tcpade-trt calibrate``, stored in its engine folder
              and filled in by the runtime): ((T, budget, full steps), ...).
    calibration: whether a budget uses the model's calibrated schedules (default true); false = the formula.
    """

    warmup: int = 2
    interval: int = 5
    full_steps: tuple[int, ...] = ()
    budget: float = 0.0
    calibrated: Calibrated = ()
    calibration: bool = True

    def __post_init__(self):
        _require(isinstance(self.warmup, int) and self.warmup >= 1,
                 f"warmup must be an integer >= 1 (got {self.warmup!r}): the history needs a computed step.")
        _require(isinstance(self.interval, int) and self.interval >= 1,
                 f"interval must be an integer >= 1 (got {self.interval!r}); 1 means every step is full.")
        steps = self.full_steps
        _require(all(isinstance(s, int) and s >= 0 for s in steps) and list(steps) == sorted(set(steps))
                 and (not steps or steps[0] == 0),
                 f"full_steps must be increasing step indices of the run, starting with 0 (got {steps!r}).")
        _number_in("budget (the share of full steps; 0 = not used)", self.budget, 0.0, 1.0)
        for entry in self.calibrated:
            ok = (isinstance(entry, tuple) and len(entry) == 3 and isinstance(entry[0], int)
                  and isinstance(entry[2], tuple) and entry[2][:1] == (0,) and entry[2][-1:] == (entry[0] - 1,))
            _require(ok, f"each calibrated schedule is (num_steps, budget, full steps from 0 to num_steps - 1); "
                         f"got {entry!r}.")

    def full_steps_for(self, num_steps: int) -> frozenset[int]:
        """The full steps of a run of ``num_steps`` steps (the last one always included)."""
        if self.full_steps:
            _require(self.full_steps[-1] < num_steps,
                     f"full_steps {'/'.join(map(str, self.full_steps))} names step {self.full_steps[-1]}, but the "
                     f"run has {num_steps} steps (0-{num_steps - 1}); write the list for this step count, or use "
                     "budget=B to place round(B * T) full steps for any T.")
            return frozenset(self.full_steps) | {num_steps - 1}
        if self.budget:
            from .schedule import budget_schedule

            for steps, budget, full in self.calibrated:
                if steps == num_steps and math.isclose(budget, self.budget):
                    return frozenset(full)
            return frozenset(budget_schedule(num_steps, self.budget))
        uniform = {s for s in range(num_steps) if s < self.warmup or (s - self.warmup) % self.interval == 0}
        return frozenset(uniform) | {num_steps - 1}


@dataclass(frozen=True)
class TCPadeConfig(ScheduleConfig):
    """TC-Padé: predict the block-stack residual with a Padé extrapolation at stable steps.

    variant:   "rational" (default; [1/1] Padé fitted per element to the last three computed residuals
               at their real times, predictions kept out of the history), "paper" (the paper's
               equations) or "reference" (the released code's formula). See cache/pade.py; measured
               quality of each: the README's "Choosing the defaults".
    time:      the rational variant's time axis: "sampler" (default; the timestep the model is given,
               i.e. sigma for flow matching, whose steps grow several-fold late in a run) or "step" (the
               step index).
    threshold: theta of the Trajectory Stability Indicator gate, in [0, 2], as in the paper: a step off
               the schedule is predicted only if the TSI of every sample in the batch is >= theta
               (TSI = ||u1 + u2||, u = the unit directions of the last two residual changes: 2 = the
               residual keeps its direction, 0 = it reverses). A larger theta means more full steps;
               the paper's presets are 0.7, 1.0 and 1.3. 0 (default) turns the gate off.
    lam:       lambda of the stability factor sigma (paper / reference variants), default 10.
    phase_aware: use the three phases; early (step < early * T): alpha1 r1 + alpha2 r2;
               middle: Padé; late (step > late * T): Padé + beta (r1 - r2) / d, d = the steps between r1
               and r2 (the reference's one-step correction). Off by default (README, "Choosing the defaults").
    alpha1, alpha2, beta, early, late: the phase constants (0.9, 0.1, 0.3, 0.3, 0.8).
    c_max:     the rational variant's largest damping, as a share of the history's span: c <= c_max / span,
               so the fitted pole stays at least span / c_max before the newest residual, outside the
               history (default 0.5: at least two spans away).
    input_delta: reference variant only: x_out = x_in + R_hat + input_delta (x_in(s) - x_in(s-1)), 0.2.
    """

    method: ClassVar[str] = "tcpade"
    variant: str = "rational"
    time: str = "sampler"
    threshold: float = 0.0
    lam: float = 10.0
    phase_aware: bool = False
    alpha1: float = 0.9
    alpha2: float = 0.1
    beta: float = 0.3
    early: float = 0.3
    late: float = 0.8
    c_max: float = 0.5
    input_delta: float = 0.2

    def __post_init__(self):
        super().__post_init__()
        from .pade import VARIANTS

        _require(self.variant in VARIANTS, f"variant must be one of {', '.join(VARIANTS)} (got {self.variant!r}).")
        _require(self.time in TIME_AXES, f"time must be one of {', '.join(TIME_AXES)} (got {self.time!r}).")
        _number_in("threshold (the TSI gate's theta, the paper's scale: 0 turns the gate off, 2 predicts only "
                   "perfectly straight trajectories; the paper uses 0.7, 1.0, 1.3)", self.threshold, 0.0, 2.0)
        _number_in("lam", self.lam, 0.0, low_open=True)
        for name in ("alpha1", "alpha2", "beta", "input_delta", "early", "late"):
            _number_in(name, getattr(self, name), 0.0, 1.0)
        _require(self.early <= self.late, f"need early <= late (got early={self.early}, late={self.late}).")
        _number_in("c_max (0 makes the rational variant linear)", self.c_max, 0.0)
        _require(isinstance(self.phase_aware, bool), f"phase_aware must be true or false (got {self.phase_aware!r}).")


TIME_AXES = ("sampler", "step")


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
