"""Timing that a deployment engineer can trust: warm-up excluded, medians, round-robin order."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def round_robin(runs: dict[str, Callable[[], object]], repeats: int, tick: Callable[[], None] = lambda: None):
    """Run every callable once untimed (warm-up; its result is returned for quality checks), then
    ``repeats`` timed rounds over all of them in turn, so that slow drifts of a shared machine
    affect every entry alike. Returns ({name: warm-up result}, {name: median seconds})."""
    results, times = {}, {name: [] for name in runs}
    for name, run in runs.items():
        results[name] = run()
        tick()
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            tick()
    return results, {name: statistics.median(t) for name, t in times.items()}
