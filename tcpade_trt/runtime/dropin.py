"""An engine-backed, cached transformer that unmodified diffusers pipelines accept as theirs.

    pipe = FluxPipeline.from_pretrained(folder, transformer=None)
    pipe.transformer = EngineTransformer("engines/flux-fp8", cache="tcpade-fast", num_steps=28)
    image = pipe(prompt, num_inference_steps=28).images[0]

It answers what pipelines ask of a transformer (``config``, ``dtype``, ``device``,
``cache_context``) and runs ``forward`` as head -> blocks-or-Padé -> tail on the engines, with the
same branch handling as ``apply_cache`` (cond and uncond calls keep separate histories).
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path

import torch
from torch import nn

from ..cache.config import CacheConfig
from ..cache.hooks import CachedForward
from ..cache.spec import parse_cache_spec
from .runtime import Runtime


class EngineTransformer(nn.Module):
    def __init__(self, folder: str | Path, cache: str | CacheConfig = "tcpade-fast", num_steps: int = 20,
                 device: str = "auto"):
        super().__init__()
        self.runtime = Runtime(folder, device=device)
        model = self.runtime.model
        self.config = model.config  # FrozenDict: pipelines read e.g. config.in_channels
        config = parse_cache_spec(cache) if isinstance(cache, str) else cache
        import diffusers

        signature = inspect.signature(getattr(diffusers, model.manifest.model["class"]).forward)
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])  # drop self
        self.cached = CachedForward(model, config, num_steps, signature,
                                    make_policy=lambda: self.runtime.make_policy(config))
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # gives the module a device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # engine I/O is fp32; reduced precision lives inside the engines

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def cache_context(self, name: str, **step_info):
        """Pipelines mark cond / uncond calls with it; branches are told apart by their timestep here."""
        return contextlib.nullcontext()

    def stats(self) -> dict:
        return self.cached.stats()

    def forward(self, *args, **kwargs):
        stream = self.runtime.model.stream
        if stream is None:
            with torch.no_grad():
                return self.cached(*args, **kwargs)
        # on a GPU the engines run on the runtime's stream: order it after the pipeline's work, and
        # the pipeline's next ops after it (device-side waits, no host sync)
        caller = torch.cuda.current_stream()
        stream.wait_stream(caller)
        with torch.no_grad(), torch.cuda.stream(stream):
            out = self.cached(*args, **kwargs)
        caller.wait_stream(stream)
        # a tensor, a tuple, or diffusers' output dataclass (an OrderedDict)
        for t in out if isinstance(out, tuple) else out.values() if isinstance(out, dict) else [out]:
            if isinstance(t, torch.Tensor):
                t.record_stream(caller)  # made on the runtime's stream, used on the pipeline's
        return out
