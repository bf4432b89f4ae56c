"""Timing that a deployment engineer can trust: warm-up excluded, the device synchronised before the
clock is read, medians, round-robin order. The one timing harness of demo, bench and gpu-bench."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Timings:
    """Seconds per timed round of each entry of a round-robin run."""

    rounds: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.rounds[name])

    def speedup(self, reference: str, name: str) -> float:
        """How many times faster ``name`` ran than ``reference``: the median over rounds of the
        ratio within each round. The two ran seconds apart in every round, so a slow stretch of a
        shared machine hits both sides of each ratio; a ratio of the two medians would take the
        numerator and the denominator from different rounds (on a shared 2-core VM that
        estimator swings by several percent more between runs)."""
        return statistics.median(self.round_ratios(reference, name))

    def round_ratios(self, reference: str, name: str) -> list[float]:
        """reference / name seconds in each round, in round order (the spread behind ``speedup``)."""
        return [r / t for r, t in zip(self.rounds[reference], self.rounds[name])]


def round_robin(runs: dict[str, Callable[[], object]], repeats: int, tick: Callable[[], None] = lambda: None,
                synchronize: Callable[[], None] | None = None) -> tuple[dict[str, object], Timings]:
    """Run every callable once untimed (warm-up; its result is returned for quality checks), then
    ``repeats`` timed rounds over all of them in turn, so that slow drifts of a shared machine
    affect every entry alike. ``synchronize`` (e.g. torch.cuda.synchronize) runs before each clock
    reading: work queued on a GPU is counted, not just its launch. Returns ({name: warm-up result}, Timings)."""
    sync = synchronize or (lambda: None)
    results, times = {}, {name: [] for name in runs}
    for name, run in runs.items():
        results[name] = run()
        tick()
    for _ in range(repeats):
        for name, run in runs.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - start)
            tick()
    return results, Timings(times)
