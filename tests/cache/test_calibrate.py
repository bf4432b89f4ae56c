"""Calibrated schedules: the dynamic programme finds the cheapest full steps, as brute force would."""

import itertools

import torch

from tcpade_trt.cache.calibrate import GapCosts, dp_schedule


def total_cost(costs: GapCosts, full: tuple[int, ...]) -> float:
    """The cost of a schedule summed gap by gap, the way the search defines it."""
    total = 0.0
    for i in range(1, len(full)):
        state = (full[i - 3] if i >= 3 else None, full[i - 2] if i >= 2 else None, full[i - 1])
        total += costs.cumulative(state, full[i] - full[i - 1])[-1]
    return total


def curving_trajectory(steps=12, seed=0):
    """Residuals that curve late in the run (as real ones accelerate), with per-element variety."""
    gen = torch.Generator().manual_seed(seed)
    a, b, c = (torch.randn(64, generator=gen) for _ in range(3))
    times = [float(s) for s in range(steps)]
    return torch.stack([a + b * t + c * (t / steps) ** 4 * 20 for t in times]), times


def test_the_search_finds_the_brute_force_optimum():
    residuals, times = curving_trajectory()
    costs = GapCosts(residuals, times)
    for full in (4, 5, 6):
        found = dp_schedule(costs, 12, full, gap=11)
        best = min(((0, *middle, 11) for middle in itertools.combinations(range(1, 11), full - 2)),
                   key=lambda s: total_cost(costs, s))
        assert found[0] == 0 and found[-1] == 11 and len(found) == full
        assert abs(total_cost(costs, found) - total_cost(costs, best)) <= 1e-9 * max(1.0, total_cost(costs, best))


def test_a_line_costs_nothing_once_two_residuals_are_known():
    """On a straight line every gap after the second full step is predicted exactly (TC-Padé reduces to a
    line); only the gap after step 0 (one residual: reuse) costs anything."""
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(32, generator=gen), torch.randn(32, generator=gen)
    residuals = torch.stack([a + b * s for s in range(10)])
    costs = GapCosts(residuals, [float(s) for s in range(10)])
    assert total_cost(costs, (0, 1, 9)) < 1e-10 < total_cost(costs, (0, 5, 9))
    assert dp_schedule(costs, 10, 3) == (0, 1, 9)


def test_weights_follow_the_samplers_time_steps():
    """A gap where the sampler moves further costs more: dt_j weighs each predicted step's error."""
    residuals, _ = curving_trajectory(steps=6)
    even = GapCosts(residuals, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    late_big = GapCosts(residuals, [0.0, 1.0, 2.0, 3.0, 4.0, 9.0])
    assert late_big.weights[4] == 5.0 and even.weights[4] == 1.0 and late_big.weights[-1] == 0.0
