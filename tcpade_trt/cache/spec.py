"""From a string to a cache config, the one way everywhere (CLI, Runtime, apply_cache, the drop-in):
a preset name, optionally with field overrides.

    tcpade-fast                         the preset
    tcpade-fast:variant=paper           the preset with one field changed
    tcpade-slow:threshold=1.3,budget=0.5  several fields
"""

from __future__ import annotations

from dataclasses import fields

from ..errors import ConfigError
from .config import CacheConfig
from .registry import presets


def _convert(value: str, current):
    if isinstance(current, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"expected true or false, got {value!r}.")
    if isinstance(current, int):
        return int(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, tuple):  # "0/1/2/6" (a comma separates fields)
        return tuple(int(v) if v.strip().lstrip("-").isdigit() else float(v) for v in value.split("/") if v)
    return value


def cache_config(spec: str | CacheConfig) -> CacheConfig:
    """A config from 'PRESET[:field=value,...]' (a config passes through); bad fields or values get a sentence."""
    if isinstance(spec, CacheConfig):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"a cache is a CacheConfig or a spec 'PRESET[:field=value,...]' (got {spec!r}).")
    name, _, overrides = spec.partition(":")
    name = name.strip()
    known = presets()
    if name not in known:
        raise ConfigError(f"unknown cache preset {name!r}; choose one of: {', '.join(known)}.")
    config = known[name]()
    if not overrides:
        return config
    changes = {}
    by_name = {f.name: getattr(config, f.name) for f in fields(config)}
    for item in overrides.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in by_name:
            raise ConfigError(f"cannot apply {item!r} to preset {name!r}: write field=value with a field among "
                              f"{', '.join(by_name) or '(none)'}.")
        if key in changes:  # which one was meant? the last silently won before
            raise ConfigError(f"{key} is given twice in {spec!r}; give each field once.")
        try:
            changes[key] = _convert(value.strip(), by_name[key])
        except ValueError:
            raise ConfigError(f"{key}={value!r} is not a valid {type(by_name[key]).__name__}.") from None
    return config.with_(**changes)
