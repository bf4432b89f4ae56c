"""TC-Padé: the schedule skeleton + the TSI gate + the Padé prediction of the block-stack residual (math in
cache/pade.py), with the presets tcpade-slow and tcpade-fast.

Per predicted step the policy evaluates a fit of the residual history; the fit (and the TSI, when
the gate is on) is recomputed only when the history or the phase mix changed, i.e. once per run
of predicted steps for the default rational variant. The evaluation returns the block stack's
predicted output (x_in + R_hat in one pass): in place of the blocks, a predicted step runs one small
engine and no arithmetic of the policy's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..config import ScheduleConfig, _number_in, _require
from ..pade import VARIANTS, PadePredictor
from ..policy import CachePolicy, Prediction, StepContext, is_finite
from ..registry import Method
from ..schedule import FAST, SLOW

TIME_AXES = ("sampler", "step")


@dataclass(frozen=True)
class TCPadeConfig(ScheduleConfig):
    """TC-Padé: predict the block-stack residual with a Padé extrapolation at stable steps.

    variant:   "rational" (default; [1/1] Padé fitted per element to the last three computed residuals
               at their real times, predictions kept out of the history), "paper" (the paper's
               equations) or "reference" (the released code's formula). See cache/pade.py; measured
               quality of each: docs/method.md and docs/measurements.md, "Presets".
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
               and r2 (the reference's one-step correction). Off by default (docs/measurements.md, "Presets").
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


def prediction_bound(magnitude: list[float], offset: float) -> float:
    """An upper bound of |base + scale * k / (1 + damping * k)| for every element at offset k, from the
    fit's magnitude [max |base|, max |scale|] (NaN when the fit holds a non-finite value).

    The fit clamps damping to >= 0, so k / (1 + damping * k) <= k. One transfer per fit replaces a
    finiteness check of every predicted step, and the bound also tells whether a prediction could
    overflow the history's dtype (float16 ends at 65504).
    """
    return magnitude[0] + offset * magnitude[1]


class TCPadePolicy(CachePolicy):
    name = "tcpade"

    def __init__(self, config: TCPadeConfig, predictor=None):
        """predictor: the Padé math (fit / eval / tsi, see pade.PadePredictor); an engine folder's Padé
        engines on the runtime, the torch modules by default."""
        super().__init__(history_len=3)
        self.config = config
        self.predictor = predictor or PadePredictor(config.variant)
        # paper and reference extrapolate over consecutive steps, so predictions join the history
        self.keeps_predictions = config.variant != "rational"
        self.anchors: frozenset[int] = frozenset()
        self.last_tsi: torch.Tensor | None = None  # [B], of the current fit (None while the gate is off)
        self._prev_x_in: torch.Tensor | None = None
        self._fit_key, self._fit, self._stable, self._magnitude = None, None, True, [0.0, 0.0]
        self._offsets: dict[tuple, torch.Tensor] = {}  # (k, dtype, device) -> k [1]

    def reset(self, num_steps: int) -> None:
        super().reset(num_steps)
        self.anchors = self.config.full_steps_for(num_steps)
        self.last_tsi, self._prev_x_in = None, None
        self._fit_key, self._fit, self._stable, self._magnitude = None, None, True, [0.0, 0.0]
        self._offsets.clear()

    def phase_mix(self, step: int, num_steps: int) -> tuple[float, float, float]:
        """(c_pade, c1, c2): how the Padé core and the last two residuals combine at this step."""
        c = self.config
        if not c.phase_aware:
            return 1.0, 0.0, 0.0
        if step < c.early * num_steps:
            return 0.0, c.alpha1, c.alpha2
        if step > c.late * num_steps:
            # the reference adds beta (r1 - r2) for consecutive steps: over d steps that is beta (r1 - r2) / d
            entries = self.history.entries
            d = entries[-1].step - entries[-2].step if len(entries) > 1 else 1
            return 1.0, c.beta / d, -c.beta / d
        return 1.0, 0.0, 0.0

    def _time(self, step: int, sampler_time: float | None) -> float:
        """A step's position on the fit's time axis: config.time, or the step index when the sampler's times
        cannot order the history (none given, or two residuals at one time: a Heun-type scheduler's
        predictor and corrector calls share a timestep)."""
        if self.config.time == "step" or sampler_time is None or self._times_tied():
            return float(step)
        return sampler_time

    def _times_tied(self) -> bool:
        times = [e.time for e in self.history.entries]
        return len(set(times)) < len(times)

    def _fit_history(self) -> tuple[list[torch.Tensor], list[float]]:
        """(r1, r2, r3) newest first and their times. With fewer than three residuals the oldest is repeated:
        two give a straight line through both (c = 0), one gives reuse (a = 0); see fit_params."""
        entries = list(reversed(self.history.entries))
        entries += [entries[-1]] * (3 - len(entries))
        return [e.residual for e in entries], [self._time(e.step, e.time) for e in entries]

    def fit_params(self, step: int, num_steps: int) -> torch.Tensor:
        """The fit engine's parameter vector [7] (see pade.py). Offsets are on the fit's time axis; the
        damping bound c_max is divided by the history's span, so the pole stays outside the history."""
        _, (t1, t2, t3) = self._fit_history()
        k2, k3 = t2 - t1, t3 - t1
        if len(self.history) == 1:  # a single residual: any offsets do, the differences are zero (reuse)
            k2 = k3 = -1.0
        span = -k3
        c = self.config
        return torch.tensor([k2, k3, *self.phase_mix(step, num_steps), c.lam, c.c_max / span], dtype=torch.float32)

    def _refit(self, ctx: StepContext) -> None:
        """Fit the history unless the current fit still holds, and accept or refuse the new fit.

        A fit is refused (every step until the next fit computes) when the TSI gate says the
        trajectory is unstable. The gate's score and the fit's magnitude (for the finiteness bound)
        cross to the host as one transfer, once per fit instead of once per predicted step.
        """
        key = (tuple(e.step for e in self.history.entries), self.phase_mix(ctx.step, ctx.num_steps))
        if key == self._fit_key:
            return
        (r1, r2, r3), _ = self._fit_history()
        self._fit = self.predictor.fit(r1, r2, r3, self.fit_params(ctx.step, ctx.num_steps).to(r1.device, r1.dtype))
        self._fit_key = key
        magnitude = self._fit[3]
        gated = self.config.threshold > 0
        if gated:  # (predict() asks for a fit with the gate on only once three residuals are there)
            self.last_tsi = self.predictor.tsi(r1, r2, r3)
            tsi_min, *self._magnitude = torch.cat([self.last_tsi.min().float().reshape(1), magnitude]).tolist()
        else:
            tsi_min, self._magnitude = 2.0, magnitude.tolist()
        # the paper's rule: predict while every sample's TSI >= theta (a NaN TSI is not stable)
        self._stable = tsi_min >= self.config.threshold

    def _offset(self, k: float, like: torch.Tensor) -> torch.Tensor:
        """k [1]: a step's offset from the newest residual, one small tensor per distinct offset."""
        key = (k, like.dtype, like.device)
        if key not in self._offsets:
            self._offsets[key] = torch.tensor([k], dtype=like.dtype, device=like.device)
        return self._offsets[key]

    def predict(self, ctx: StepContext) -> Prediction | None:
        c = self.config
        if ctx.step in self.anchors or not len(self.history):
            return None
        # paper / reference need three residuals, and so does the gate to judge stability
        if len(self.history) < 3 and (c.variant != "rational" or c.threshold > 0):
            return None
        self._refit(ctx)
        newest = self.history.entries[-1]
        k = self._time(ctx.step, ctx.time) - self._time(newest.step, newest.time)
        # refused by the gate, or a prediction that could be non-finite or overflow: compute (NaN compares False)
        if not (self._stable and prediction_bound(self._magnitude, k) < torch.finfo(ctx.x_in.dtype).max / 2):
            return None
        base, scale, damping, _ = self._fit
        x_out = self.predictor.eval(base, scale, damping, self._offset(k, base), ctx.x_in)
        # the fit's bound covers x_out - x_in; the reference variant's input term is outside it, so
        # that variant's outputs are checked here, one host sync per step
        if c.variant == "reference":
            if self._prev_x_in is not None:
                x_out = x_out + c.input_delta * (ctx.x_in - self._prev_x_in)
            if not is_finite(x_out):
                return None
        return Prediction(x_out, x_out - ctx.x_in if self.keeps_predictions else None)

    def update(self, ctx: StepContext, residual: torch.Tensor | None, computed: bool) -> None:
        super().update(ctx, residual, computed)
        self._prev_x_in = ctx.x_in


def tcpade_slow() -> TCPadeConfig:
    """TC-Padé for quality (the paper's 'slow'): 45% of the steps full (9 of 20), rational fit in the
    sampler's time, TSI gate off."""
    return TCPadeConfig(budget=SLOW)


def tcpade_fast() -> TCPadeConfig:
    """TC-Padé for speed (the paper's 'fast'): 35% of the steps full (7 of 20), rational fit in the
    sampler's time, TSI gate off."""
    return TCPadeConfig(budget=FAST)


def _policy(config: TCPadeConfig, pade) -> TCPadePolicy:
    return TCPadePolicy(config, predictor=pade(config.variant) if pade is not None else None)


METHOD = Method(TCPadeConfig, _policy, {"tcpade-slow": tcpade_slow, "tcpade-fast": tcpade_fast},
                compared=("tcpade-slow", "tcpade-fast"),
                # the TSI gate predicts only while every sample of the batch is stable
                decides_per_batch=lambda config: config.threshold > 0, rank=1, default="tcpade-fast")
