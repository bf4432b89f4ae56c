"""`tcpade-trt calibrate`: full-step schedules measured for one model, stored where the runtime finds them.

    table = calibrate(Sampling(model, height, width), steps=(20, 28, 50), budgets=(0.35, 0.45))

1. Record: a few uncached runs per step count (calibration seeds; classes or random prompts), keeping the
   block stack's residual of every step on a fixed subsample of tokens, and the sampler's time.
2. Choose: per budget, the dynamic programme of cache/calibrate.py over the pooled residuals.
3. Validate: closed loop, on other seeds (200..), TC-Padé on the chosen schedule against the formula
   schedule of the same budget (cache/schedule.py), PSNR against the uncached run of each seed; the
   better of the two is kept (the open-loop cost does not always rank schedules as the closed loop does).
   Benchmarks measure on seeds 0.., which neither step has seen.

The result is a list of (T, budget, full steps) rows. An engine folder keeps it in its manifest (the
runtime then uses it for every budget preset at those T); for a torch model it is a JSON file that
``apply_cache(..., calibration=FILE)`` and ``cache.calibrate.load_calibration`` read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from ..cache import TCPadeConfig, make_policy
from ..cache.calibrate import GapCosts, dp_schedule
from ..cache.policy import AlwaysCompute, StepContext
from ..cache.schedule import budget_schedule, full_step_count
from ..errors import ConfigError
from ..metrics import psnr
from .model_io import Sampling

log = logging.getLogger(__name__)

CALIBRATION_SEEDS = 100  # seeds 100.. choose the schedule, 200.. validate it; bench and demo measure on 0..15
VALIDATION_SEEDS = 200
ELEMENTS_PER_STEP = 1 << 18  # residual elements kept per step and run: enough for the costs' ranking


class RecordingPolicy(AlwaysCompute):
    """Computes every step and keeps each step's residual on a fixed token subsample, and its time."""

    needs_residual = True

    def __init__(self, seed: int = 0):
        super().__init__()
        self.residuals: list[torch.Tensor] = []  # per step [rows * kept tokens * hidden] float32, on the CPU
        self.times: list[float] = []
        self._tokens: torch.Tensor | None = None
        self._seed = seed

    def update(self, ctx: StepContext, residual, computed: bool) -> None:
        self.decisions.append(computed)
        rows, tokens, hidden = residual.shape
        if self._tokens is None:
            keep = max(1, min(tokens, ELEMENTS_PER_STEP // (rows * hidden)))
            self._tokens = torch.randperm(tokens, generator=torch.Generator().manual_seed(self._seed))[:keep]
        self.residuals.append(residual[:, self._tokens.to(residual.device)].float().flatten().cpu())
        self.times.append(float(ctx.step) if ctx.time is None else ctx.time)


@dataclass
class Calibration:
    schedules: list[tuple[int, float, tuple[int, ...]]] = field(default_factory=list)
    validation: list[dict] = field(default_factory=list)  # per (T, budget): PSNR of both schedules
    seeds: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"schedules": [[t, b, list(s)] for t, b, s in self.schedules], "validation": self.validation,
                "seeds": self.seeds, "seconds": round(self.seconds, 1),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def calibrate(subject: Sampling, steps=(20, 28, 50), budgets=(0.35, 0.45), runs: int = 4, validation_seeds: int = 4,
              c_max: float = 0.5) -> Calibration:
    """Calibrated schedules for ``subject`` (model_io.Sampling: the model at one latent size, its seeded inputs and
    quality space). runs: uncached calibration runs per step count (one batch); validation_seeds: held out."""
    from .sampler import sample

    for b in budgets:
        if not 0 < b <= 1:
            raise ConfigError(f"a budget is the share of full steps, in (0, 1] (got {b}).")
    started = time.perf_counter()
    model, guidance = subject.model, subject.guidance_scale
    result = Calibration(seeds={"calibration": [CALIBRATION_SEEDS, CALIBRATION_SEEDS + runs - 1],
                                "validation": [VALIDATION_SEEDS, VALIDATION_SEEDS + validation_seeds - 1]})
    for num_steps in steps:
        recorder = RecordingPolicy()
        cond, noise = subject.inputs(runs, first_seed=CALIBRATION_SEEDS)
        log.info("calibrate: %d uncached runs of %d steps", runs, num_steps)
        sample(model, cond, noise, num_steps=num_steps, guidance_scale=guidance, policy=recorder)
        costs = GapCosts(torch.stack(recorder.residuals), recorder.times, c_max=c_max)
        held_cond, held_noise = subject.inputs(validation_seeds, first_seed=VALIDATION_SEEDS)
        reference = sample(model, held_cond, held_noise, num_steps=num_steps, guidance_scale=guidance).latents
        for budget in budgets:
            found = dp_schedule(costs, num_steps, full_step_count(num_steps, budget))
            formula = budget_schedule(num_steps, budget)
            row = {"steps": num_steps, "budget": budget, "full": len(found), "calibrated_steps": list(found),
                   "formula_steps": list(formula)}
            for name, full in (("calibrated", found), ("formula", formula)):
                latents = sample(model, held_cond, held_noise, num_steps=num_steps, guidance_scale=guidance,
                                 policy=make_policy(TCPadeConfig(full_steps=full, c_max=c_max))).latents
                image, ref = subject.quality_space(latents, reference), subject.quality_space(reference, reference)
                row[f"{name}_psnr_db"] = round(float(psnr(image, ref).mean()), 2)
            row["kept"] = "calibrated" if row["calibrated_psnr_db"] >= row["formula_psnr_db"] else "formula"
            result.schedules.append((num_steps, budget, found if row["kept"] == "calibrated" else formula))
            result.validation.append(row)
            log.info("calibrate: T=%d budget %.2f -> %s (validation PSNR %.2f dB; formula %s %.2f dB): kept the %s",
                     num_steps, budget, found, row["calibrated_psnr_db"], formula, row["formula_psnr_db"], row["kept"])
    result.seconds = time.perf_counter() - started
    return result
