"""Named presets, resolvable everywhere by name (Python: cache_config, make_policy; CLI: --cache).

Defined by behaviour at 20 steps and chosen by measurement on the shipped demo model (16 seeds,
PSNR of the final image against the uncached image of the same seed; README, "Choosing the
defaults"). Interval methods share one schedule per budget so that comparisons are like for like.
Other step counts scale the schedule (cache/config.py, ScheduleConfig).
"""

from __future__ import annotations

from collections.abc import Callable

from .config import CacheConfig, NoCacheConfig, ReuseConfig, TaylorSeerConfig, TCPadeConfig, TeaCacheConfig

# Full steps of a 20-step run. Dense at the start (structure forms), then every 4-5 steps.
SCHEDULE_7 = (0, 1, 2, 6, 11, 16, 19)  # 7 full: the paper's "fast" budget (2.86x ideal)
SCHEDULE_9 = (0, 1, 2, 4, 7, 10, 13, 16, 19)  # 9 full: the paper's "slow" budget (2.22x ideal)


def none() -> CacheConfig:
    """No caching: 20 of 20 steps full."""
    return NoCacheConfig()


def tcpade_slow() -> CacheConfig:
    """TC-Padé for quality (the paper's 'slow', 2.20x): 9 full steps of 20 (SCHEDULE_9), rational
    variant, TSI gate off."""
    return TCPadeConfig(full_steps=SCHEDULE_9, threshold=1.0)


def tcpade_fast() -> CacheConfig:
    """TC-Padé for speed (the paper's 'fast', 2.88x): 7 full steps of 20 (SCHEDULE_7), rational
    variant, TSI gate off."""
    return TCPadeConfig(full_steps=SCHEDULE_7, threshold=1.0)


def reuse() -> CacheConfig:
    """Reuse the last residual on tcpade-fast's schedule: 7 full steps of 20."""
    return ReuseConfig(full_steps=SCHEDULE_7)


def taylorseer() -> CacheConfig:
    """TaylorSeer order 1 on tcpade-fast's schedule: 7 full steps of 20."""
    return TaylorSeerConfig(full_steps=SCHEDULE_7, order=1)


def taylorseer_o2() -> CacheConfig:
    """TaylorSeer order 2 on tcpade-fast's schedule: 7 full steps of 20."""
    return TaylorSeerConfig(full_steps=SCHEDULE_7, order=2)


def teacache() -> CacheConfig:
    """TeaCache-style gate, threshold 0.25 with identity rescaling: 7 full steps of 20 on the demo
    model (the count depends on the model's trajectory)."""
    return TeaCacheConfig(threshold=0.25)


PRESETS: dict[str, Callable[[], CacheConfig]] = {
    "none": none,
    "tcpade-slow": tcpade_slow,
    "tcpade-fast": tcpade_fast,
    "reuse": reuse,
    "teacache": teacache,
    "taylorseer": taylorseer,
    "taylorseer-o2": taylorseer_o2,
}
