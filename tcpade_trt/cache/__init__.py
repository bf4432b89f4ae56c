"""Step-cache methods: backend-agnostic math on tensors."""

from .cached_step import cached_forward
from .policy import AlwaysCompute, CachePolicy, ResidualHistory, StepContext

__all__ = ["AlwaysCompute", "CachePolicy", "ResidualHistory", "StepContext", "cached_forward"]
