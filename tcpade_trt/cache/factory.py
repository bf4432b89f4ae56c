"""The one factory of cache policies: a spec or config (and, on engines, the Padé engines) -> a policy."""

from __future__ import annotations

from .config import CacheConfig, ScheduleConfig
from .policy import CachePolicy
from .registry import method_of
from .spec import cache_config


def make_policy(cache: str | CacheConfig, pade=None, calibrated=()) -> CachePolicy:
    """A fresh policy (one per trajectory owner) for a spec 'PRESET[:field=value,...]' or a config.

    pade: variant -> the Padé math TC-Padé runs (pade.PadePredictor's interface), e.g. an engine folder's
    Padé engines (runtime/engine_parts.EngineParts.pade); the torch modules when None. Other methods
    have no Padé math.
    calibrated: the model's calibrated schedules ((T, budget, full steps), ...; an engine folder's
    manifest or ``load_calibration``), used by a budget config that carries none of its own.
    """
    config = cache_config(cache)
    if calibrated and isinstance(config, ScheduleConfig) and config.budget and config.calibration \
            and not config.calibrated:
        config = config.with_(calibrated=tuple(calibrated))
    return method_of(config).policy(config, pade)


def decides_per_batch(cache: str | CacheConfig) -> bool:
    """Whether this cache's decisions depend on the samples in the batch (a request must then run alone)."""
    config = cache_config(cache)
    return method_of(config).decides_per_batch(config)
