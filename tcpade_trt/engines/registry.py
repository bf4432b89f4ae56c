"""The backends, found the way model families and cache methods are: each folder under engines/ whose package
defines ``BACKEND`` (an engines.backend.Backend). Adding a backend is adding its folder; nothing here names one.

Importing a backend's package is cheap: its runtime (onnxruntime, tensorrt, openvino) is imported only when it
builds or opens engines.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path

from ..errors import ConfigError
from .backend import Backend

DEFAULT = "onnxruntime"  # the backend every machine has (the package's cpu extra)


@cache
def backends() -> dict[str, Backend]:
    """Every backend by name, in a stable order (the default first)."""
    found: dict[str, Backend] = {}
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        backend = getattr(module, "BACKEND", None)
        if isinstance(backend, Backend):
            found[backend.name] = backend
    return dict(sorted(found.items(), key=lambda kv: kv[0] != DEFAULT))


def names() -> tuple[str, ...]:
    return tuple(backends())


def backend(name: str) -> Backend:
    """The backend called ``name``, or one sentence listing the others."""
    try:
        return backends()[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(backends())}.") from None


def of(manifest) -> Backend:
    """The backend that built a folder (its manifest's ``backend``)."""
    known = backends()
    if manifest.backend not in known:
        from ..errors import ManifestError

        raise ManifestError(f"the folder's manifest names backend {manifest.backend!r}, which this tcpade-trt does "
                            f"not have ({', '.join(known)}); rebuild the folder.")
    return known[manifest.backend]
