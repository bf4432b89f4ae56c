"""Where cache methods are found: every module in cache/methods/ declares ``METHOD = Method(...)`` (its config,
its policy, its presets). Adding a method is adding a file there, as adding a model family is adding a file to
models/families/; nothing outside a method's file names it.

    presets()["tcpade-fast"]()          -> TCPadeConfig(budget=0.35)
    method_of(config).policy(config)    -> a fresh policy (cache/factory.make_policy adds the Padé engines)
    method_of(config).decides_per_batch(config)   whether requests with this cache may share a batch
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from ..errors import ConfigError
from .config import CacheConfig
from .policy import CachePolicy


def _never(config: CacheConfig) -> bool:
    return False


@dataclass(frozen=True)
class Method:
    """One cache method.

    config:    its CacheConfig subclass (``config.method`` is the method's name)
    policy:    (config, pade) -> a fresh policy for one trajectory owner; ``pade`` maps a Padé variant to the
               Padé math (an engine folder's Padé engines) or is None (torch); methods without Padé ignore it
    presets:   preset name -> a config factory, resolvable everywhere by name (--cache, cache_config)
    compared:  the presets that enter the demo, the bench and the method study by default
    decides_per_batch: whether the policy's decisions depend on the samples it sees (a gate on the batch's
               inputs): such requests are generated alone, so that each gets the image it would get alone
    rank:      listing order: 0 no cache, 1 TC-Padé, 2 the methods it is compared with
    default:   the preset every entry point uses when none is given (exactly one method names one)
    reference: the preset that runs every step, against which every other is measured (exactly one method
               names one)
    """

    config: type[CacheConfig]
    policy: Callable[[CacheConfig, object], CachePolicy]
    presets: dict[str, Callable[[], CacheConfig]]
    compared: tuple[str, ...] = ()
    decides_per_batch: Callable[[CacheConfig], bool] = field(default=_never)
    rank: int = 2
    default: str | None = None
    reference: str | None = None

    @property
    def name(self) -> str:
        return self.config.method


@cache
def methods() -> dict[str, Method]:
    """Method name -> Method, for every module in cache/methods/, in listing order."""
    package = importlib.import_module(f"{__package__}.methods")
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        method = getattr(module, "METHOD", None)
        if isinstance(method, Method):
            found.append(method)
    return {m.name: m for m in sorted(found, key=lambda m: (m.rank, m.name))}


def method_of(config: CacheConfig) -> Method:
    try:
        return methods()[config.method]
    except KeyError:
        raise ConfigError(f"{type(config).__name__} names no cache method in cache/methods/ "
                          f"(method {config.method!r}); methods: {', '.join(methods())}.") from None


@cache
def presets() -> dict[str, Callable[[], CacheConfig]]:
    """Every method's presets by name, in listing order."""
    out: dict[str, Callable[[], CacheConfig]] = {}
    for method in methods().values():
        for name, make in method.presets.items():
            if name in out:
                raise ConfigError(f"two cache methods define the preset {name!r}; rename one.")
            out[name] = make
    return out


def compared_presets(peers_only: bool = False) -> tuple[str, ...]:
    """The presets the demo, the bench and the method study compare by default, in listing order; ``peers_only``:
    those of the methods TC-Padé is compared with (rank 2)."""
    return tuple(p for m in methods().values() if m.rank >= (2 if peers_only else 0) for p in m.compared)


def reference_preset() -> str:
    """The uncached preset every measurement compares with (the one a method declares as ``reference``)."""
    named = [m.reference for m in methods().values() if m.reference]
    if len(named) != 1:
        raise ConfigError(f"exactly one cache method must name the reference preset (found {named or 'none'}).")
    return named[0]


def with_reference(specs) -> tuple[str, ...]:
    """``specs`` with the uncached reference first (once): what every measurement runs, so that each cached cell
    has the run it is compared with."""
    reference = reference_preset()
    return (reference, *[s for s in specs if s != reference])


def default_preset() -> str:
    """The preset used when a caller names none (the one a method declares as ``default``)."""
    named = [m.default for m in methods().values() if m.default]
    if len(named) != 1:
        raise ConfigError(f"exactly one cache method must name the default preset (found {named or 'none'}).")
    return named[0]
