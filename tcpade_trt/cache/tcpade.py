"""The TC-Padé policy: schedule skeleton + TSI gate + Padé prediction (math in pade.py)."""

from __future__ import annotations

import torch

from .config import TCPadeConfig
from .pade import PadeTSI
from .policy import CachePolicy, StepContext


class TCPadePolicy(CachePolicy):
    name = "tcpade"

    def __init__(self, config: TCPadeConfig):
        super().__init__(history_len=3)
        self.config = config
        self.predictor = PadeTSI(config.variant)  # the runtime swaps in the exported Padé engine
        # paper and reference extrapolate over consecutive steps, so predictions join the history
        self.keeps_predictions = config.variant != "rational"
        self.last_tsi: torch.Tensor | None = None
        self._prev_x_in: torch.Tensor | None = None

    def reset(self, num_steps: int) -> None:
        super().reset(num_steps)
        self.last_tsi, self._prev_x_in = None, None

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

    def params(self, step: int, num_steps: int) -> torch.Tensor:
        """The Padé engine's per-step parameter vector [8] (see pade.py)."""
        entries = self.history.entries
        s1, s2, s3 = entries[-1].step, entries[-2].step, entries[-3].step
        c = self.config
        return torch.tensor([step - s1, s2 - s1, s3 - s1, *self.phase_mix(step, num_steps), c.lam, c.c_max],
                            dtype=torch.float32)

    def decide(self, ctx: StepContext) -> torch.Tensor | None:
        c = self.config
        if c.is_anchor(ctx.step, ctx.num_steps) or len(self.history) < 3:
            return None
        r1, r2, r3 = (e.residual for e in reversed(self.history.entries))
        params = self.params(ctx.step, ctx.num_steps).to(r1.device)
        prediction, tsi = self.predictor(r1, r2, r3, params.to(r1.dtype))
        self.last_tsi = tsi
        # one scalar crosses to the host: the batch is predicted only if every sample is stable
        if c.threshold < 1.0 and bool(tsi.max() > c.threshold):
            return None
        if c.variant == "reference" and self._prev_x_in is not None:
            prediction = prediction + c.input_delta * (ctx.x_in - self._prev_x_in)
        return prediction

    def observe(self, ctx: StepContext, residual: torch.Tensor, computed: bool) -> None:
        super().observe(ctx, residual, computed)
        self._prev_x_in = ctx.x_in
