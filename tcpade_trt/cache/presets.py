"""Named presets, resolvable everywhere by name (Python: cache_config, make_policy; CLI: --cache).

Chosen by measurement on the shipped demo model (16 seeds, PSNR of the final image against the
uncached image of the same seed; README, "Choosing the defaults"). Interval methods share one budget
per preset so that comparisons are like for like.
"""

from __future__ import annotations

from collections.abc import Callable

from .config import CacheConfig, NoCacheConfig, ReuseConfig, TaylorSeerConfig, TCPadeConfig, TeaCacheConfig

# Budgets: the share of full steps, resolved for any step count T (cache/schedule.py, or the model's calibrated
# table). Interval methods share one budget per preset, so that at equal T they run the same full steps.
FAST = 0.35  # 7 full steps of 20, 10 of 28, 18 of 50: about the paper's "fast" (2.88x at 20 steps)
SLOW = 0.45  # 9 of 20, 13 of 28, 23 of 50: about the paper's "slow" (2.20x at 20 steps)


def none() -> CacheConfig:
    """No caching: every step full."""
    return NoCacheConfig()


def tcpade_slow() -> CacheConfig:
    """TC-Padé for quality (the paper's 'slow'): 45% of the steps full (9 of 20), rational fit in the
    sampler's time, TSI gate off."""
    return TCPadeConfig(budget=SLOW)


def tcpade_fast() -> CacheConfig:
    """TC-Padé for speed (the paper's 'fast'): 35% of the steps full (7 of 20), rational fit in the
    sampler's time, TSI gate off."""
    return TCPadeConfig(budget=FAST)


def reuse() -> CacheConfig:
    """Reuse the last residual on tcpade-fast's full steps."""
    return ReuseConfig(budget=FAST)


def taylorseer() -> CacheConfig:
    """TaylorSeer order 1 on tcpade-fast's full steps."""
    return TaylorSeerConfig(budget=FAST, order=1)


def taylorseer_o2() -> CacheConfig:
    """TaylorSeer order 2 on tcpade-fast's full steps."""
    return TaylorSeerConfig(budget=FAST, order=2)


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
