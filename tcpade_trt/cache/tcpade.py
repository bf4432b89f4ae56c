"""The TC-Padé policy: schedule skeleton + TSI gate + Padé prediction (math in pade.py).

Per predicted step the policy evaluates a fit of the residual history; the fit (and the TSI, when
the gate is on) is recomputed only when the history or the phase mix changed, i.e. once per run
of predicted steps for the default rational variant.
"""

from __future__ import annotations

import torch

from .config import TCPadeConfig
from .pade import PadePredictor
from .policy import CachePolicy, StepContext


def prediction_bound(base: torch.Tensor, scale: torch.Tensor, damping: torch.Tensor, horizon: int) -> torch.Tensor:
    """A float32 scalar >= |base + scale * k / (1 + damping * k)| for every element and 0 < k <= horizon.

    The fit clamps damping to >= 0, so k / (1 + damping * k) <= k and max|base| + horizon max|scale|
    bounds every prediction; it is non-finite when any element is. Two reductions per fit replace a
    finiteness check of every predicted step, and the bound tells whether a prediction could
    overflow the history's dtype (float16 ends at 65504).
    """
    return _max_abs(base) + horizon * _max_abs(scale)


def _max_abs(t: torch.Tensor) -> torch.Tensor:
    """max |t| as a float32 scalar, NaN if any element is NaN: one pass (aminmax is several times
    faster than vector_norm(t, inf) on CPU)."""
    low, high = torch.aminmax(t)
    return torch.maximum(-low, high).float()


class TCPadePolicy(CachePolicy):
    name = "tcpade"

    def __init__(self, config: TCPadeConfig):
        super().__init__(history_len=3)
        self.config = config
        self.predictor = PadePredictor(config.variant)  # the runtime swaps in the exported Padé engines
        # paper and reference extrapolate over consecutive steps, so predictions join the history
        self.keeps_predictions = config.variant != "rational"
        self.last_tsi: torch.Tensor | None = None  # [B], of the current fit (None while the gate is off)
        self._prev_x_in: torch.Tensor | None = None
        self._fit_key, self._fit, self._stable = None, None, True

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
        bound = prediction_bound(*self._fit, ctx.num_steps)
        if self.config.threshold < 1.0:
            self.last_tsi = self.predictor.tsi(r1, r2, r3)
            tsi_max, bound = torch.stack([self.last_tsi.max().float(), bound]).tolist()
        else:
            tsi_max, bound = 0.0, bound.item()
        # the batch is predicted only if every sample is stable (a NaN TSI is not stable either)
        stable = tsi_max <= self.config.threshold or self.config.threshold >= 1.0
        self._stable = stable and bound < torch.finfo(r1.dtype).max / 2

    def decide(self, ctx: StepContext) -> torch.Tensor | None:
        c = self.config
        self.prediction_checked = False
        if c.is_anchor(ctx.step, ctx.num_steps) or len(self.history) < 3:
            return None
        self._refit(ctx)
        if not self._stable:  # this fit was refused: every step until the next fit computes
            return None
        base = self._fit[0]
        k = torch.tensor([ctx.step - self.history.entries[-1].step], dtype=base.dtype, device=base.device)
        prediction = self.predictor.eval(*self._fit, k)
        # the fit's bound covers base + scale * k / (1 + damping * k); the reference variant's input
        # term below is outside it, so that variant's predictions are still checked by the loop
        self.prediction_checked = c.variant != "reference"
        if c.variant == "reference" and self._prev_x_in is not None:
            prediction = prediction + c.input_delta * (ctx.x_in - self._prev_x_in)
        return prediction

    def observe(self, ctx: StepContext, residual: torch.Tensor, computed: bool) -> None:
        super().observe(ctx, residual, computed)
        self._prev_x_in = ctx.x_in
