"""The TC-Padé policy: schedule skeleton + TSI gate + Padé prediction (math in pade.py).

Per predicted step the policy evaluates a fit of the residual history; the fit (and the TSI, when
the gate is on) is recomputed only when the history or the phase mix changed, i.e. once per run
of predicted steps for the default rational variant. The evaluation returns the block stack's
predicted output (x_in + R_hat in one pass): in place of the blocks, a predicted step runs one small
engine and no arithmetic of the policy's own.
"""

from __future__ import annotations

import torch

from .config import TCPadeConfig
from .pade import PadePredictor
from .policy import CachePolicy, Prediction, StepContext, is_finite


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
