"""Which steps of a T-step run compute the block stack: schedules from a compute budget, for any T.

A budget b is the share of full steps: n = round(b * T) of T (at least 2: the first and the last).
Without calibration the n full steps are placed by ``budget_schedule``: dense at the start (the image's
structure forms there and every later prediction extrapolates from it) and at the end (the residual
accelerates and the sampler's steps are largest), with gaps in the middle. The shape is the one the
calibration (cache/calibrate.py) finds on the demo model at 20, 28 and 50 steps, written as one
formula so that it exists for every T. A calibrated table for the model itself
(``tcpade-trt calibrate``) replaces it where it has an entry for (T, b).
"""

from __future__ import annotations

import math

# Budgets of the presets, shared by the interval methods so that comparisons are like for like (at equal T they
# run the same full steps). Chosen by measurement on the shipped demo model (16 seeds, PSNR of the final image
# against the uncached image of the same seed; docs, "Choosing the defaults").
FAST = 0.35  # 7 full steps of 20, 10 of 28, 18 of 50: about the paper's "fast" (2.88x at 20 steps)
SLOW = 0.45  # 9 of 20, 13 of 28, 23 of 50: about the paper's "slow" (2.20x at 20 steps)
# the warp u -> u - WARP sin(2 pi u) / (2 pi) has slope 1 - WARP at both ends and 1 + WARP in the middle: with
# 0.6, gaps at the ends are a quarter of those in the middle
WARP = 0.6


def full_step_count(num_steps: int, budget: float) -> int:
    """n = round(budget * T), at least 2 (the first and the last step) and at most T."""
    return min(num_steps, max(2, math.floor(budget * num_steps + 0.5)))


def budget_schedule(num_steps: int, budget: float) -> tuple[int, ...]:
    """The full steps of a T-step run at this budget, 0-based, strictly increasing, 0 and T - 1 included.

    budget_schedule(20, 0.35) == (0, 1, 3, 7, 12, 16, 19): 7 full steps of 20.
    """
    n = full_step_count(num_steps, budget)
    if n >= num_steps:
        return tuple(range(num_steps))
    last = num_steps - 1
    placed = [round(last * _warp(i / (n - 1))) for i in range(n)]
    # rounding may put two anchors on one step: push each to at least one after its predecessor, then pull the
    # tail back under the last step (n < T leaves room for every one)
    for i in range(1, n):
        placed[i] = max(placed[i], placed[i - 1] + 1)
    placed[-1] = last
    for i in range(n - 2, -1, -1):
        placed[i] = min(placed[i], placed[i + 1] - 1)
    return tuple(placed)


def _warp(u: float) -> float:
    return u - WARP * math.sin(2 * math.pi * u) / (2 * math.pi)
