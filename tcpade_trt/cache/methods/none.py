"""No caching: every step runs the block stack (the 'none' preset, the reference every method is measured against)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import CacheConfig
from ..policy import AlwaysCompute
from ..registry import Method


@dataclass(frozen=True)
class NoCacheConfig(CacheConfig):
    """Every step runs the block stack."""

    method: ClassVar[str] = "none"


METHOD = Method(NoCacheConfig, lambda config, pade: AlwaysCompute(config), {"none": NoCacheConfig},
                compared=("none",), rank=0, reference="none")
