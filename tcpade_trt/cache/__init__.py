"""Step-cache methods: backend-agnostic math on tensors."""

from .cached_step import cached_forward
from .policy import AlwaysCompute, CachePolicy, ResidualHistory, StepContext

__all__ = ["make_policy", "AlwaysCompute", "CachePolicy", "ResidualHistory", "StepContext", "cached_forward"]


def make_policy(name: str, model=None) -> CachePolicy:
    """A fresh policy for a preset name."""
    from ..errors import ConfigError

    if name == "none":
        return AlwaysCompute()
    raise ConfigError(f"unknown cache preset {name!r}; choose one of: none.")
