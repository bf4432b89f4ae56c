"""FORA / ToCa-style reuse on the full-block residual: at a predicted step the residual is the last computed one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import ScheduleConfig
from ..policy import CachePolicy, Prediction, StepContext, predicted
from ..registry import Method
from ..schedule import FAST


@dataclass(frozen=True)
class ReuseConfig(ScheduleConfig):
    """FORA/ToCa-style reuse: at a predicted step the residual is the last computed one."""

    method: ClassVar[str] = "reuse"



class ReusePolicy(CachePolicy):
    """FORA / ToCa-style: R_hat = the last computed residual."""

    name = "reuse"

    def __init__(self, config: ReuseConfig):
        super().__init__(history_len=1)
        self.config = config
        self.anchors: frozenset[int] = frozenset()

    def reset(self, num_steps: int) -> None:
        super().reset(num_steps)
        self.anchors = self.config.full_steps_for(num_steps)

    def predict(self, ctx: StepContext) -> Prediction | None:
        if ctx.step in self.anchors or not len(self.history):
            return None
        return predicted(ctx, self.history.entries[-1].residual)


def reuse() -> ReuseConfig:
    """Reuse the last residual on tcpade-fast's full steps."""
    return ReuseConfig(budget=FAST)


METHOD = Method(ReuseConfig, lambda config, pade: ReusePolicy(config), {"reuse": reuse}, compared=("reuse",))
