"""Step-cache methods: backend-agnostic math on tensors, configs and presets, the eager hook."""

from .cached_step import cached_forward
from .config import (
    CacheConfig,
    NoCacheConfig,
    ReuseConfig,
    TaylorSeerConfig,
    TCPadeConfig,
    TeaCacheConfig,
)
from .hooks import CacheHandle, apply_cache
from .policy import AlwaysCompute, CachePolicy, ResidualHistory, StepContext
from .presets import PRESETS
from .spec import parse_cache_spec


def make_policy(name_or_config) -> CachePolicy:
    """A fresh policy from a cache spec ('PRESET[:field=value,...]') or a config."""
    config = parse_cache_spec(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return config.make_policy()


__all__ = [
    "PRESETS", "AlwaysCompute", "CacheConfig", "CacheHandle", "CachePolicy", "NoCacheConfig", "ResidualHistory",
    "ReuseConfig", "StepContext", "TCPadeConfig", "TaylorSeerConfig", "TeaCacheConfig", "apply_cache",
    "cached_forward", "make_policy", "parse_cache_spec",
]
