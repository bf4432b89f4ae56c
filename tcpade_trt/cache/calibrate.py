"""Calibrated schedules: which n of T steps to compute, chosen on recorded uncached trajectories.

Given the block-stack residuals of a few uncached runs (R [T, M]: per step, M elements pooled over samples
and a subsample of tokens) and the sampler's time at each step, every candidate set of full steps is
scored by the open-loop error TC-Padé's fit would make between them:

    cost(gap from anchor a to the next anchor b) = mean( (sum_{a<j<b} dt_j (R_hat_j - R_j))^2 )

where R_hat_j is the rational fit of the last three anchors' residuals (cache/pade.py, the policy's own
rules: sampler time, damping bound c_max / span, fewer than three anchors -> line or reuse), and dt_j =
t_{j+1} - t_j weighs a residual error by how far the sampler moves on it (a flow-matching step adds dt v,
and v follows the residual through the model's tail, linear up to its normalisation). The first-order
error of the final latents is the sum over gaps; dynamic programming over the last three anchors finds the
n-anchor set with the least total cost in O(T G^3) fits (G = the largest gap considered).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import ConfigError
from .pade import evaluate, rational_fit

State = tuple[int | None, int | None, int]  # the last three anchors, oldest first (None before step 0)


def max_gap(num_steps: int, full: int) -> int:
    """The longest gap the search considers: three times the mean gap, at least 4."""
    return min(num_steps - 1, max(4, math.ceil(3 * num_steps / full)))


class GapCosts:
    """Open-loop cost of every gap, memoised per fit (the three anchors before the gap).

    residuals [T, M] float32 (one recorded uncached trajectory per row group, pooled); times [T], increasing;
    c_max: the policy's damping share (TCPadeConfig.c_max).
    """

    def __init__(self, residuals: torch.Tensor, times: list[float], c_max: float = 0.5):
        self.residuals, self.times, self.c_max = residuals, times, c_max
        self.weights = [times[j + 1] - times[j] for j in range(len(times) - 1)] + [0.0]
        self._memo: dict[tuple[State, int], list[float]] = {}

    def cumulative(self, state: State, gap: int) -> list[float]:
        """[cost of the gap a -> a + g for g = 1 .. gap]: predicting steps a+1 .. a+g-1 from the state."""
        key = (state, gap)
        if key not in self._memo:
            self._memo[key] = self._compute(state, gap)
        return self._memo[key]

    def _compute(self, state: State, gap: int) -> list[float]:
        anchors = [a for a in state if a is not None]
        a = anchors[-1]
        r = [self.residuals[s] for s in reversed(anchors)]  # newest first, like the policy's history
        t = [self.times[s] for s in reversed(anchors)]
        r += [r[-1]] * (3 - len(r))
        t += [t[-1]] * (3 - len(t))
        k2, k3 = t[1] - t[0], t[2] - t[0]
        if k2 == 0:
            k2 = k3 = -1.0
        scale, damping = rational_fit(r[0], r[1], r[2], torch.tensor(k2), torch.tensor(k3),
                                      torch.tensor(self.c_max / -k3))
        costs, error = [0.0], torch.zeros_like(r[0])
        for j in range(a + 1, min(a + gap, len(self.times))):
            predicted = evaluate(r[0], scale, damping, torch.tensor(self.times[j] - t[0]))
            error += self.weights[j] * (predicted - self.residuals[j])
            costs.append(float(error.pow(2).mean()))
        return costs


def dp_schedule(costs: GapCosts, num_steps: int, full: int, gap: int | None = None) -> tuple[int, ...]:
    """The ``full`` steps (0 and T - 1 among them) whose gaps cost least in total, gaps at most ``gap``."""
    last = num_steps - 1
    if full >= num_steps:
        return tuple(range(num_steps))
    gap = gap or max_gap(num_steps, full)
    # by_newest[a][(state, count)] = (total cost, anchors so far), state = the last three anchors ending at a;
    # anchors only advance, so one sweep over a visits every state after all of its predecessors
    by_newest: list[dict] = [{} for _ in range(num_steps)]
    by_newest[0][((None, None, 0), 1)] = (0.0, (0,))
    for newest in range(last):
        for (state, count), (total, path) in by_newest[newest].items():
            cumulative = costs.cumulative(state, gap)
            for g in range(1, min(gap, last - newest) + 1):
                nxt = newest + g
                # the last step is full and must be the full-th anchor; no other anchor may use up the count
                if (nxt == last) != (count + 1 == full):
                    continue
                key = ((state[1], state[2], nxt), count + 1)
                candidate = (total + cumulative[g - 1], path + (nxt,))
                if key not in by_newest[nxt] or candidate[0] < by_newest[nxt][key][0]:
                    by_newest[nxt][key] = candidate
    finals = [v for (state, count), v in by_newest[last].items() if count == full]
    if not finals:  # the gap limit leaves no way to spread this few anchors: allow longer gaps
        return dp_schedule(costs, num_steps, full, gap=min(last, 2 * gap))
    return min(finals)[1]


def schedule_row_problem(rows) -> str | None:
    """None when ``rows`` are calibrated schedules, [[steps >= 2, budget in (0, 1], [full steps below steps]], ...];
    else which row is not (a file's or a manifest's: hand edits arrive as strings, NaN, short rows)."""
    if not isinstance(rows, list):
        return "schedules is not a list of [steps, budget, [full steps]] rows"
    whole = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    for i, row in enumerate(rows):
        ok = (isinstance(row, list) and len(row) == 3 and whole(row[0]) and row[0] >= 2
              and isinstance(row[1], (int, float)) and not isinstance(row[1], bool) and math.isfinite(row[1])
              and 0 < row[1] <= 1 and isinstance(row[2], list) and all(whole(s) and 0 <= s < row[0] for s in row[2]))
        if not ok:
            return f"row {i} ({row!r}) is not [steps >= 2, budget in (0, 1], [full steps below steps]]"
    return None


def load_calibration(path: str | Path) -> tuple:
    """The calibrated schedules of a JSON file written by `tcpade-trt calibrate --out FILE`, as
    ScheduleConfig.calibrated wants them (make_policy(..., calibrated=...) or config.with_(calibrated=...))."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        problem = schedule_row_problem(data["schedules"])
        if problem is not None:
            raise ValueError(problem)
        return tuple((int(t), float(b), tuple(int(s) for s in steps)) for t, b, steps in data["schedules"])
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; make it with `tcpade-trt calibrate MODEL --out {path}`.") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a calibration file written by `tcpade-trt calibrate` ({exc}).") from None
