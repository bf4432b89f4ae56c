"""Round-robin timing: warm-up excluded, medians, speedups paired within a round."""

import pytest

from tcpade_trt.bench.timing import Timings, round_robin


def test_round_robin_returns_the_warm_up_results_and_one_time_per_round():
    calls = []
    results, timings = round_robin({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}, 3)
    assert results == {"a": 1, "b": 2}
    assert calls == ["a", "b"] * 4  # warm-up, then three rounds in turn
    assert all(len(t) == 3 for t in timings.rounds.values())


def test_the_speedup_pairs_the_two_sides_of_each_round():
    """"fast" is 2x faster; the shared machine turns 1.5x slower during round 2's "none" run and
    stays slow. Two of three paired ratios still read 2x (median 2x), while the medians of the two
    columns come from different machine states and their ratio reads 3x."""
    timings = Timings({"none": [1.0, 1.5, 1.5], "fast": [0.5, 0.5, 0.75]})
    assert timings.median("none") / timings.median("fast") == pytest.approx(3.0)
    assert timings.speedup("none", "fast") == pytest.approx(2.0)
