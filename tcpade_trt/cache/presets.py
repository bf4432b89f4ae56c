"""Named presets, resolvable everywhere by name (Python: CacheConfig.preset, CLI: --cache).

Full-step counts are at 20 steps, measured on the demo model by `tcpade-trt demo` (README table).
"""

from __future__ import annotations

from collections.abc import Callable

from .config import CacheConfig, NoCacheConfig, ReuseConfig, TaylorSeerConfig, TCPadeConfig, TeaCacheConfig


def none() -> CacheConfig:
    """No caching: 20 of 20 steps full."""
    return NoCacheConfig()


def tcpade_slow() -> CacheConfig:
    """TC-Padé for quality (the paper's 'slow', 2.20x): the reference code's skeleton (warm-up 4,
    interval 4: full steps 0-4, 8, 12, 16, 19) with the TSI gate at 0.5. 9 full steps of 20."""
    return TCPadeConfig(warmup=4, interval=4, threshold=0.5)


def tcpade_fast() -> CacheConfig:
    """TC-Padé for speed (the paper's 'fast', 2.88x): warm-up 2, interval 5 (full steps 0, 1, 2,
    7, 12, 17, 19), gate off. 7 full steps of 20."""
    return TCPadeConfig(warmup=2, interval=5, threshold=1.0)


def reuse() -> CacheConfig:
    """Reuse the last residual, same skeleton as tcpade-fast: 7 full steps of 20."""
    return ReuseConfig(warmup=2, interval=5)


def taylorseer() -> CacheConfig:
    """TaylorSeer order 1, same skeleton as tcpade-fast: 7 full steps of 20."""
    return TaylorSeerConfig(warmup=2, interval=5, order=1)


def taylorseer_o2() -> CacheConfig:
    """TaylorSeer order 2, same skeleton as tcpade-fast: 7 full steps of 20."""
    return TaylorSeerConfig(warmup=2, interval=5, order=2)


def teacache() -> CacheConfig:
    """TeaCache-style gate with threshold 0.6 (identity rescaling): about 7 full steps of 20 on the
    demo model."""
    return TeaCacheConfig(threshold=0.6)


PRESETS: dict[str, Callable[[], CacheConfig]] = {
    "none": none,
    "tcpade-slow": tcpade_slow,
    "tcpade-fast": tcpade_fast,
    "reuse": reuse,
    "teacache": teacache,
    "taylorseer": taylorseer,
    "taylorseer-o2": taylorseer_o2,
}
