"""Step-cache methods, backend-agnostic math on tensors: configs and presets, spec parsing, the
policies (TC-Padé and the baselines it is compared with) and the Padé / TSI functions. It imports
neither the models nor the runtime; the step that uses a policy is runtime/step.py."""

from .config import CacheConfig, NoCacheConfig, ReuseConfig, TaylorSeerConfig, TCPadeConfig, TeaCacheConfig
from .factory import make_policy
from .policy import AlwaysCompute, CachePolicy, Prediction, ResidualHistory, StepContext
from .presets import PRESETS
from .spec import cache_config

__all__ = [
    "PRESETS", "AlwaysCompute", "CacheConfig", "CachePolicy", "NoCacheConfig", "Prediction", "ResidualHistory",
    "ReuseConfig", "StepContext", "TCPadeConfig", "TaylorSeerConfig", "TeaCacheConfig", "cache_config",
    "make_policy",
]
