"""The eager path: attach a cache to an unmodified diffusers transformer, and take it off again.

    handle = apply_cache(transformer, CacheConfig.preset("tcpade-fast"), num_steps=20)
    pipe(...)            # calls transformer(...) as usual; the block stack now runs only on full steps
    handle.stats()       # {"full": 7, "predicted": 13, ...} of the last finished trajectory
    handle.remove()      # the original forward again, bit for bit

The instance's ``forward`` is shadowed by an instance attribute (the class is never edited);
``remove()`` deletes that attribute. Branches: a call whose timestep equals the previous call's is
the next branch of the same step (how FluxPipeline's true CFG and WanPipeline call cond and
uncond separately); each branch keeps its own history. A trajectory restarts after ``num_steps``
steps or when the timestep goes back up.
"""

from __future__ import annotations

import inspect

import torch

from ..errors import ConfigError
from ..models.base import SplitModel
from ..models.registry import split_model
from .cached_step import cached_forward
from .config import CacheConfig


class _Branch:
    def __init__(self, policy, num_steps: int):
        self.policy = policy
        self.policy.reset(num_steps)
        self.step = 0


class CachedForward:
    """A diffusers-compatible ``forward`` that runs a SplitModel with a cache, branch by branch.

    Used by ``apply_cache`` (torch model) and by the engine-backed drop-in transformer.
    ``make_policy`` builds one fresh policy per branch (default: ``config.make_policy``).
    """

    def __init__(self, model: SplitModel, config: CacheConfig, num_steps: int, signature: inspect.Signature,
                 make_policy=None):
        self.model = model
        self.config = config
        self.num_steps = num_steps
        self._signature = signature
        self._make_policy = make_policy or config.make_policy
        self._branches: list[_Branch] = []
        self._last_timestep: float | None = None
        self._branch_index = 0
        self._finished: dict | None = None

    # -- public -------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Step counts of the last finished trajectory (or the current one if none finished yet).

        ``full`` / ``predicted`` count the first branch (cond); ``branches`` lists every branch.
        """
        if self._finished is not None:
            return self._finished
        return self._current_stats()

    def reset(self) -> None:
        """Start a new trajectory on the next call."""
        self._branches, self._last_timestep, self._branch_index = [], None, 0

    # -- the wrapped forward ------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        latents, timestep, cond, return_dict = self._unpack(bound.arguments)
        branch = self._branch_for(timestep)
        step = self.model.head(latents, timestep, self.model.prepare(latents, cond))
        out = cached_forward(self.model, branch.policy, step, branch.step, self.num_steps)
        branch.step += 1
        if all(b.step >= self.num_steps for b in self._branches):
            self._finished = self._current_stats()
            self.reset()
        if not return_dict:
            return (out,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=out)

    def _current_stats(self) -> dict:
        per_branch = [b.policy.stats() for b in self._branches]
        first = per_branch[0] if per_branch else {"full": 0, "predicted": 0, "decisions": []}
        return {"full": first["full"], "predicted": first["predicted"], "decisions": first["decisions"],
                "branches": per_branch}

    def _branch_for(self, timestep: torch.Tensor) -> _Branch:
        t = float(timestep.flatten()[0])
        if self._last_timestep is not None and t > self._last_timestep + 1e-9 and self._branches:
            self._finished = self._current_stats()  # timestep went back up: a new trajectory
            self.reset()
        if self._last_timestep is not None and t == self._last_timestep:
            self._branch_index += 1
        else:
            self._branch_index = 0
        self._last_timestep = t
        while len(self._branches) <= self._branch_index:
            self._branches.append(_Branch(self._make_policy(), self.num_steps))
        return self._branches[self._branch_index]

    def _unpack(self, a: dict):
        family = self.model.family
        if family == "flux":
            cond = {k: a[k] for k in ("encoder_hidden_states", "pooled_projections", "txt_ids", "img_ids")}
            if a.get("guidance") is not None:
                cond["guidance"] = a["guidance"]
            return a["hidden_states"], a["timestep"], cond, a["return_dict"]
        if family == "wan":
            cond = {"encoder_hidden_states": a["encoder_hidden_states"]}
            if a.get("encoder_hidden_states_image") is not None:
                cond["encoder_hidden_states_image"] = a["encoder_hidden_states_image"]
            return a["hidden_states"], a["timestep"], cond, a["return_dict"]
        timestep = a["timestep"]
        latents = a["hidden_states"]
        if timestep.ndim == 0:
            timestep = timestep[None].expand(latents.shape[0])
        return latents, timestep, {"class_labels": a["class_labels"]}, a["return_dict"]


class CacheHandle(CachedForward):
    """What ``apply_cache`` returns: statistics, reset and removal."""

    def __init__(self, transformer, config: CacheConfig, num_steps: int):
        super().__init__(split_model(transformer), config, num_steps, inspect.signature(transformer.forward))
        self.transformer = transformer
        self.removed = False

    def remove(self) -> None:
        """Restore the transformer's original forward."""
        if not self.removed:
            del self.transformer.forward
            self.removed = True


def apply_cache(transformer, config: CacheConfig | str, num_steps: int) -> CacheHandle:
    """Cache an unmodified diffusers FLUX, Wan or DiT transformer in place; returns the handle."""
    if isinstance(config, str):
        config = CacheConfig.preset(config)
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ConfigError(f"num_steps must be a positive integer (got {num_steps!r}): the sampler's step count.")
    if "forward" in vars(transformer):
        raise ConfigError("this transformer already has a cache (or another forward override) attached; "
                          "call handle.remove() first.")
    handle = CacheHandle(transformer, config, num_steps)
    transformer.forward = handle
    return handle
