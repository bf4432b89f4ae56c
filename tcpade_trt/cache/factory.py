"""The one factory of cache policies: a spec or config (and, on engines, the Padé engines) -> a policy."""

from __future__ import annotations

from .baselines import ReusePolicy, TaylorSeerPolicy, TeaCachePolicy
from .config import CacheConfig
from .policy import AlwaysCompute, CachePolicy
from .spec import cache_config
from .tcpade import TCPadePolicy

POLICIES = {"none": AlwaysCompute, "tcpade": TCPadePolicy, "reuse": ReusePolicy, "teacache": TeaCachePolicy,
            "taylorseer": TaylorSeerPolicy}


def make_policy(cache: str | CacheConfig, pade=None) -> CachePolicy:
    """A fresh policy (one per trajectory owner) for a spec 'PRESET[:field=value,...]' or a config.

    pade: variant -> the Padé math TC-Padé runs (pade.PadePredictor's interface), e.g. an engine folder's
    Padé engines (runtime/engine_parts.EngineParts.pade); the torch modules when None. Other methods
    have no Padé math.
    """
    config = cache_config(cache)
    cls = POLICIES[config.method]
    if cls is TCPadePolicy:
        return cls(config, predictor=pade(config.variant) if pade is not None else None)
    return cls(config)
