"""An engine-backed, cached transformer that unmodified diffusers pipelines accept as theirs.

    pipe = FluxPipeline.from_pretrained(folder, transformer=None)
    EngineTransformer("engines/flux-fp8", cache="tcpade-fast").into(pipe)   # checked, steps from pipe.scheduler
    image = pipe(prompt, num_inference_steps=28).images[0]

    pipe.transformer = EngineTransformer("engines/flux-fp8", num_steps=28)  # or plain assignment: say the steps

It answers what pipelines ask of a transformer (``config``, ``dtype``, ``device``, ``cache_context``,
``_reset_stateful_cache``) and runs ``forward`` as head -> blocks-or-Padé -> tail on the engines, with
the same branch and step-count handling as ``apply_cache`` (cache/hooks.py).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from diffusers.configuration_utils import FrozenDict
from torch import nn

from ..cache import DEFAULT_CACHE
from ..cache.config import CacheConfig
from ..cache.spec import cache_config
from ..errors import ConfigError, TcpadeError
from .hooks import CachedForward, bind_scheduler
from .runtime import Runtime
from .streams import on_stream


class ConfigMismatchError(TcpadeError, AttributeError):
    """A pipeline asked the engine folder's config for a field its model family does not have.

    An AttributeError too, so that ``hasattr(config, name)`` in diffusers keeps meaning what it means."""


class EngineConfig(FrozenDict):
    """The folder's transformer config; a field that its family lacks is one sentence naming both."""

    def __getattr__(self, name):  # only reached for a field the config does not have
        if name.startswith("_"):
            raise AttributeError(name)
        holds = self.get("_family_description", "another family")
        raise ConfigMismatchError(f"the pipeline asked the engine transformer's config for {name!r}, which the "
                                  f"folder's model ({holds}) does not have: put this folder into a pipeline of "
                                  "its own family, or build a folder from this pipeline's transformer.")


class EngineTransformer(nn.Module):
    def __init__(self, folder: str | Path, cache: str | CacheConfig = DEFAULT_CACHE, num_steps: int | None = None,
                 device: str = "auto", scheduler=None):
        """num_steps: the pipeline's step count; leave it out when the pipeline's scheduler is given
        (``scheduler=pipe.scheduler``, or ``.into(pipe)``), which tells it for every call."""
        super().__init__()
        config = cache_config(cache)
        self.runtime = Runtime(folder, device=device)
        model = self.runtime.model
        self.family_class = model.family.diffusers_class  # e.g. FluxTransformer2DModel
        self.config = EngineConfig({**model.family.config,
                                    "_family_description": f"{model.family.name}, {self.family_class}"})
        import diffusers

        signature = inspect.signature(getattr(diffusers, self.family_class).forward)
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])  # drop self
        self.cached = CachedForward(model, config, num_steps, signature, scheduler=scheduler,
                                    new_policy=lambda: self.runtime.make_policy(config))
        if scheduler is not None:
            bind_scheduler(self.cached, scheduler)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # gives the module a device

    def into(self, pipe):
        """Become ``pipe``'s transformer, after checking that the pipeline is made for this folder's model
        family; the pipeline's scheduler then tells the step count of every call. Returns ``pipe``."""
        expected = inspect.signature(type(pipe).__init__).parameters.get("transformer")
        wanted = getattr(expected.annotation, "__name__", str(expected.annotation)) if expected else None
        if expected is None:
            raise ConfigError(f"{type(pipe).__name__} takes no transformer.")
        if wanted and self.family_class not in str(wanted):
            raise ConfigError(f"{type(pipe).__name__} expects a {wanted}, but this engine folder holds a "
                              f"{self.family_class}: use a pipeline of that family, or a folder built from "
                              "this pipeline's transformer.")
        if self.cached.scheduler is None:
            self.cached.scheduler = pipe.scheduler
            bind_scheduler(self.cached, pipe.scheduler)
        pipe.transformer = self
        return pipe

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # engine I/O is fp32; reduced precision lives inside the engines

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def cache_context(self, name: str, **info):
        """Pipelines mark cond / uncond calls with it: each name keeps its own cache history."""
        return self.cached.cache_context(name, **info)

    def _reset_stateful_cache(self, *args, **kwargs) -> None:
        """Called by every pipeline when it finishes: the trajectory is complete."""
        self.cached.end_of_call()

    def stats(self) -> dict:
        return self.cached.stats()

    def forward(self, *args, **kwargs):
        # on a GPU the engines run on the runtime's stream, ordered after the pipeline's work, and the
        # pipeline's next ops after them (streams.on_stream)
        with torch.no_grad(), on_stream(self.runtime.model.parts.stream) as keep:
            out = self.cached(*args, **kwargs)
            # a tensor, a tuple, or diffusers' output dataclass (an OrderedDict)
            for t in out if isinstance(out, tuple) else out.values() if isinstance(out, dict) else [out]:
                keep(t)
        return out
