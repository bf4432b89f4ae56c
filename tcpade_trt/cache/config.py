"""The base of every cache method's config, validated on construction, and the schedule skeleton that the interval
methods share. Each method's own config lives in its file in cache/methods/.

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


def _as_tuple(config, name: str) -> None:
    """A list (or any sequence) given for a tuple field becomes a tuple: configs are frozen and hashable (the server
    batches requests by their config)."""
    value = getattr(config, name)
    if not isinstance(value, tuple) and isinstance(value, (list, range)):
        object.__setattr__(config, name, tuple(value))


def _numbers(values) -> bool:
    """Finite real numbers (booleans are not numbers here)."""
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


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
        _as_tuple(self, "full_steps")
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
