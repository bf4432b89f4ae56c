"""Step-cache methods, backend-agnostic math on tensors. One file per method in cache/methods/ (its config,
policy and presets; found by cache/registry.py), the policy interface (policy.py), spec parsing (spec.py), the
schedules (schedule.py, calibrate.py) and the Padé / TSI functions (pade.py). It imports neither the models nor
the runtime; the step that uses a policy is runtime/step.py."""

from . import registry
from .config import CacheConfig, ScheduleConfig
from .factory import decides_per_batch, make_policy
from .policy import AlwaysCompute, CachePolicy, Prediction, ResidualHistory, StepContext
from .registry import compared_presets, default_preset, presets, reference_preset, with_reference
from .spec import cache_config

DEFAULT_CACHE = default_preset()  # the preset every entry point uses when none is given
UNCACHED = reference_preset()  # the preset that runs every step: what every measurement compares with


def __getattr__(name: str):
    """PRESETS (every method's presets by name) and each method's config class by its name (TCPadeConfig, ...),
    found in cache/methods/ so that no method is named here."""
    if name == "PRESETS":
        return presets()
    if not name.endswith("Config"):  # (a submodule being imported, e.g. cache.methods, is looked up here first)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for method in registry.methods().values():  # (cache.methods is the package of method files)
        if method.config.__name__ == name:
            return method.config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CACHE", "PRESETS", "UNCACHED", "AlwaysCompute", "CacheConfig", "CachePolicy", "Prediction",
    "ResidualHistory", "ScheduleConfig", "StepContext", "cache_config", "compared_presets", "decides_per_batch",
    "make_policy", "presets", "with_reference",
]
