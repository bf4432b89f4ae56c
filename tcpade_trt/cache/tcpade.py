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


def prediction_bound(magnitude: list[float], horizon: int) -> float:
    """An upper bound of |base + scale * k / (1 + damping * k)| for every element and 0 < k <= horizon,
    from the fit's magnitude [max |base|, max |scale|] (NaN when the fit holds a non-finite value).

    The fit clamps damping to >= 0, so k / (1 + damping * k) <= k. One transfer per fit replaces a
    finiteness check of every predicted step, and the bound also tells whether a prediction could
    overflow the history's dtype (float16 ends at 65504).
    """
    return magnitude[0] + horizon * magnitude[1]


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
        self.last_tsi: torch.Tensor | None = None  # [B], of the current fit (None while the gate is off)
        self._prev_x_in: torch.Tensor | None = None
        self._fit_key, self._fit, self._stable = None, None, True
        self._offsets: dict[tuple, torch.Tensor] = {}  # (k, dtype, device) -> k [1]

    def reset(self, num_steps: int) -> None:
        super().reset(num_steps)
        self.last_tsi, self._prev_x_in = None, None
        self._fit_key, self._fit, self._stable = None, None, True

    def phase_mix(self, step: int, num_steps: int) -> tuple[float, float, float]:
        """(c_pade, c1, c2): how the Padé core and the last two residuals combine at this step."""
        c = self.config
        if not c.phase_aware:
            return 1.0, 0.0, 0.0
        if step < c.early * num_steps:
            return 0.0, c.alpha1, c.alpha2
        if step > c.late * num_steps:
            return 1.0, c.beta, -c.beta
        return 1.0, 0.0, 0.0

    def fit_params(self, step: int, num_steps: int) -> torch.Tensor:
        """The fit engine's parameter vector [7] (see pade.py)."""
        entries = self.history.entries
        s1, s2, s3 = entries[-1].step, entries[-2].step, entries[-3].step
        c = self.config
        return torch.tensor([s2 - s1, s3 - s1, *self.phase_mix(step, num_steps), c.lam, c.c_max], dtype=torch.float32)

    def _refit(self, ctx: StepContext) -> None:
        """Fit the history unless the current fit still holds, and accept or refuse the new fit.

        A fit is refused (every step until the next fit computes) when the TSI gate says the
        trajectory is unstable or when the fit could produce a non-finite prediction. Both checks
        cross to the host as one transfer, once per fit instead of once per predicted step.
        """
        key = (tuple(e.step for e in self.history.entries), self.phase_mix(ctx.step, ctx.num_steps))
        if key == self._fit_key:
            return
        r1, r2, r3 = (e.residual for e in reversed(self.history.entries))
        self._fit = self.predictor.fit(r1, r2, r3, self.fit_params(ctx.step, ctx.num_steps).to(r1.device, r1.dtype))
        self._fit_key = key
        magnitude = self._fit[3]
        if self.config.threshold < 1.0:
            self.last_tsi = self.predictor.tsi(r1, r2, r3)
            tsi_max, *magnitude = torch.cat([self.last_tsi.max().float().reshape(1), magnitude]).tolist()
        else:
            tsi_max, magnitude = 0.0, magnitude.tolist()
        bound = prediction_bound(magnitude, ctx.num_steps)
        # the batch is predicted only if every sample is stable (a NaN TSI is not stable either)
        stable = tsi_max <= self.config.threshold or self.config.threshold >= 1.0
        self._stable = stable and bound < torch.finfo(r1.dtype).max / 2  # False for a NaN bound too

    def _offset(self, ctx: StepContext, like: torch.Tensor) -> torch.Tensor:
        """k [1]: this step's offset from the newest residual, one small tensor per distinct offset."""
        k = ctx.step - self.history.entries[-1].step
        key = (k, like.dtype, like.device)
        if key not in self._offsets:
            self._offsets[key] = torch.tensor([k], dtype=like.dtype, device=like.device)
        return self._offsets[key]

    def predict(self, ctx: StepContext) -> Prediction | None:
        c = self.config
        if c.is_anchor(ctx.step, ctx.num_steps) or len(self.history) < 3:
            return None
        self._refit(ctx)
        if not self._stable:  # this fit was refused: every step until the next fit computes
            return None
        base, scale, damping, _ = self._fit
        x_out = self.predictor.eval(base, scale, damping, self._offset(ctx, base), ctx.x_in)
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
