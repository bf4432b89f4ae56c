"""The eager path: attach a cache to an unmodified diffusers transformer, and take it off again.

    handle = apply_cache(pipe, "tcpade-fast")   # a spec or a CacheConfig; steps read from pipe.scheduler
    pipe(...)            # calls transformer(...) as usual; the block stack now runs only on full steps
    handle.stats()       # {"full": 7, "predicted": 13, ...} of the last finished trajectory
    handle.remove()      # the original forward again, bit for bit

    apply_cache(transformer, "tcpade-fast", num_steps=20)           # a bare transformer: say the steps

The cache is a hook in the transformer's diffusers HookRegistry, as diffusers' own caches are: it takes the
place of ``forward`` in the chain of hooks (the class is never edited), hears the branch name a pipeline gives
each call through ``cache_context`` ("cond", "uncond"; diffusers hands it to every stateful hook) and ends a
trajectory when the pipeline resets stateful hooks at the end of a call; ``remove()`` takes exactly it off.

How many steps a trajectory has, in order of authority: the step count a pipeline passes to
``cache_context`` (Wan), the bound scheduler's timesteps (``apply_cache(pipe, ...)``: a pipeline
call's ``set_timesteps`` also starts a new trajectory; img2img's begin index is honoured), else
``num_steps``. A ``num_steps`` that contradicts the pipeline is refused with one sentence before
the first step; with a bare transformer, a run of another length is refused when it shows (more
calls than announced, or a trajectory that ends early), never silently cached on the wrong schedule.

Branches: a call's ``cache_context`` name, else (a hand-written loop) a call whose timestep equals
the previous call's is the next branch of the same step, unless the bound scheduler is of Heun's type
(``order`` 2: it evaluates twice at a timestep itself; its hand-written CFG loops need ``cache_context``
names). Each branch keeps its own history.
"""

from __future__ import annotations

import contextlib
import functools
import inspect

import torch

from ..cache import DEFAULT_CACHE
from ..cache.config import CacheConfig
from ..cache.factory import make_policy
from ..cache.spec import cache_config
from ..errors import ConfigError
from ..models.model import Model
from ..models.registry import split_model
from .step import cached_forward

NO_STEP_COUNT = ("pass the pipeline (its scheduler tells the step count of every call) or num_steps=N, the number "
                 "of steps the pipeline runs.")


class _Branch:
    def __init__(self, policy, num_steps: int):
        self.policy = policy
        self.policy.reset(num_steps)
        self.num_steps = num_steps
        self.step = 0
        self.prepared, self.prepared_for = None, None  # prompt-only tensors, and the inputs they were made from

    def prepare(self, parts, latents, cond):
        """parts.prepare once per trajectory (the context embedder, RoPE tables), again only if the pipeline
        hands this branch other conditioning tensors or another latent shape."""
        key = (tuple(latents.shape), *((k, v.data_ptr(), tuple(v.shape)) for k, v in cond.items()
                                       if isinstance(v, torch.Tensor)))
        if key != self.prepared_for:
            self.prepared, self.prepared_for = parts.prepare(latents, cond), key
        return self.prepared


class CachedForward:
    """A diffusers-compatible ``forward`` that runs a Model with a cache, branch by branch.

    Used by ``apply_cache`` (torch parts) and by the engine-backed drop-in transformer.
    ``new_policy`` builds one fresh policy per branch (default: ``make_policy(config)``);
    ``scheduler``: the pipeline's scheduler, read for each trajectory's step count.
    """

    def __init__(self, model: Model, config: CacheConfig, num_steps: int | None, signature: inspect.Signature,
                 new_policy=None, scheduler=None):
        if num_steps is not None and (not isinstance(num_steps, int) or num_steps < 1):
            raise ConfigError(f"num_steps must be a positive integer (got {num_steps!r}): the sampler's step count.")
        self.model = model
        self.config = config
        self.num_steps = num_steps
        self.scheduler = scheduler
        self._signature = signature
        self._new_policy = new_policy or (lambda: make_policy(config, calibrated=model.calibrated))
        self._branches: dict[str, _Branch] = {}
        self._context: tuple[str, dict] | None = None  # the pipeline's cache_context(name, **info) of this call
        self._last_timestep: float | None = None
        self._auto_branch = 0
        self._finished: dict | None = None

    # -- public -------------------------------------------------------------------------------
    def stats(self) -> dict:
        """Step counts of the last finished trajectory (or the current one if none finished yet).

        ``full`` / ``predicted`` count the first branch (cond); ``branches`` lists every branch
        (``branch_names`` their names).
        """
        if self._finished is not None:
            return self._finished
        return self._current_stats()

    def reset(self) -> None:
        """Start a new trajectory on the next call."""
        self._branches, self._last_timestep, self._auto_branch = {}, None, 0

    # -- what a pipeline tells us -------------------------------------------------------------
    @contextlib.contextmanager
    def cache_context(self, name: str, **info):
        """The branch name (and, from some pipelines, step_index / num_inference_steps) of the calls inside."""
        self._context = (name, info)
        try:
            yield
        finally:
            self._context = None

    def end_of_call(self) -> None:
        """The pipeline finished (diffusers calls ``_reset_stateful_cache`` at the end of every call)."""
        if self._branches:
            self._finish(complete=all(b.step >= b.num_steps for b in self._branches.values()))

    def new_schedule(self) -> None:
        """The bound scheduler's timesteps were set: a new trajectory starts at the next call."""
        if self._branches:
            self._finish(complete=all(b.step >= b.num_steps for b in self._branches.values()))

    # -- the wrapped forward ------------------------------------------------------------------
    # Never traced: a compiled transformer (``transformer.compile()``) would otherwise trace the policy's decisions
    # and its step counter and recompile at every step; compile the block stack with apply_cache(compile=True).
    @torch.compiler.disable
    def __call__(self, *args, **kwargs):
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"this cached {self.model.family.title} transformer was called with arguments its "
                              f"forward does not take ({exc}); is it in a pipeline of another model family?") from None
        bound.apply_defaults()
        latents, timestep, cond, return_dict = self.model.family.unpack_forward(bound.arguments)
        branch = self._branch_for(timestep)
        parts = self.model.parts
        step = parts.head(latents, timestep, branch.prepare(parts, latents, cond))
        # the policy's time axis: minus the timestep (read on the host by _branch_for already)
        out = cached_forward(parts, branch.policy, step, branch.step, branch.num_steps,
                             None if self._last_timestep is None else -self._last_timestep)
        branch.step += 1
        if all(b.step >= b.num_steps for b in self._branches.values()) and self._context is None:
            last = self._last_timestep
            self._finish(complete=True)  # a hand-written loop: nothing else marks the end ...
            self._ended_at = last  # ... and the next trajectory must start above where this one ended
        if not return_dict:
            return (out,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=out)

    def _current_stats(self) -> dict:
        per_branch = [b.policy.stats() for b in self._branches.values()]
        first = per_branch[0] if per_branch else {"full": 0, "predicted": 0, "decisions": []}
        return {"full": first["full"], "predicted": first["predicted"], "decisions": first["decisions"],
                "branches": per_branch, "branch_names": list(self._branches)}

    def _finish(self, complete: bool) -> None:
        stats = self._current_stats()
        ran = max(b.step for b in self._branches.values())
        expected = max(b.num_steps for b in self._branches.values())
        self.reset()
        self._finished = stats
        if not complete and self.scheduler is None and not self._pipeline_counts_steps:
            raise ConfigError(f"the cache was set for num_steps={expected} but the trajectory ended after {ran} "
                              "steps, so its schedule did not fit; pass num_steps equal to the pipeline's "
                              "num_inference_steps, or pass the pipeline itself to read it from its scheduler.")

    _pipeline_counts_steps = False  # True once a pipeline's cache_context has given the step count
    _ended_at: float | None = None  # the last timestep of a trajectory a hand-written loop completed

    def _finished_steps(self) -> int:
        return len(self._finished["decisions"]) if self._finished else self.num_steps

    def _steps_now(self) -> int:
        """The step count of the trajectory the next call belongs to (see the module docstring)."""
        info = self._context[1] if self._context else {}
        told = info.get("num_inference_steps")
        if told is None and self.scheduler is not None:
            timesteps = getattr(self.scheduler, "timesteps", None)
            if timesteps is None:
                raise ConfigError("the bound scheduler has no timesteps yet: call set_timesteps (every pipeline "
                                  "does) before the transformer.")
            told = len(timesteps) - int(getattr(self.scheduler, "begin_index", None) or 0)
        if told is not None:
            self._pipeline_counts_steps = self._pipeline_counts_steps or "num_inference_steps" in info
            if self.num_steps is not None and told != self.num_steps:
                raise ConfigError(f"num_steps={self.num_steps} was given but the pipeline runs {told} steps; leave "
                                  "num_steps out (it is read from the pipeline) or make it match.")
            return int(told)
        if self.num_steps is None:
            raise ConfigError(NO_STEP_COUNT)
        return self.num_steps

    def _branch_for(self, timestep: torch.Tensor) -> _Branch:
        t = float(timestep.flatten()[0])
        if self._context is not None:
            name = self._context[0]
        else:  # a hand-written loop: an equal timestep is the next branch of the same step
            if self._ended_at is not None and t < self._ended_at and not self._branches:
                raise ConfigError(f"the cache was set for {self._finished_steps()} steps but the loop runs more; "
                                  "pass num_steps equal to its number of steps, or pass the pipeline itself.")
            self._ended_at = None
            if self._last_timestep is not None and t > self._last_timestep + 1e-9 and self._branches:
                self._finish(complete=False)  # the timestep went back up: the last trajectory ended
            # a Heun-type scheduler (order 2) calls the model twice at one timestep itself (predictor, corrector):
            # with such a scheduler bound, a repeat is its next call, not another branch
            repeat_is_branch = getattr(self.scheduler, "order", 1) == 1
            self._auto_branch = self._auto_branch + 1 if t == self._last_timestep and repeat_is_branch else 0
            name = str(self._auto_branch)
        self._last_timestep = t
        if name not in self._branches:
            self._branches[name] = _Branch(self._new_policy(), self._steps_now())
        branch = self._branches[name]
        if branch.step >= branch.num_steps:
            raise ConfigError(f"the cache was set for {branch.num_steps} steps but the pipeline runs more; pass "
                              "num_steps equal to its num_inference_steps, or pass the pipeline itself.")
        return branch


def bind_scheduler(cached: CachedForward, scheduler) -> None:
    """Start a new trajectory whenever ``scheduler.set_timesteps`` runs (each pipeline call does)."""
    original = scheduler.set_timesteps

    @functools.wraps(original)  # keeps the signature: retrieve_timesteps inspects it for sigmas=/timesteps=
    def set_timesteps(*args, **kwargs):
        cached.new_schedule()
        return original(*args, **kwargs)

    scheduler.set_timesteps = set_timesteps


def unbind_scheduler(scheduler) -> None:
    if "set_timesteps" in vars(scheduler):
        del scheduler.set_timesteps


HOOK_NAME = "tcpade_trt_cache"  # our hook's name in the transformer's diffusers HookRegistry


def _context_listener(cached: CachedForward):
    """A diffusers StateManager that hands the pipeline's cache context to ``cached``: diffusers gives every
    stateful hook's StateManager the context of each call (``transformer.cache_context("cond", ...)``), as a
    CacheContext (diffusers >= 0.41: name, step_index, num_inference_steps, ...) or a bare name (older)."""
    from diffusers.hooks.hooks import StateManager

    class ContextListener(StateManager):
        def __init__(self):
            super().__init__(dict)  # no per-context state of diffusers' kind: the branches live in ``cached``

        def set_context(self, context) -> None:
            if context is None or isinstance(context, str):
                cached._context = None if context is None else (context, {})
                return
            fields = ("step_index", "num_inference_steps", "timestep", "sigma")
            cached._context = (context.name, {f: getattr(context, f) for f in fields
                                              if getattr(context, f, None) is not None})

        def reset(self, *args, **kwargs) -> None:
            cached._context = None

    return ContextListener()


def _cache_hook(cached: CachedForward):
    """The cache as a diffusers ModelHook: it replaces the transformer's forward in the chain of hooks (others
    registered before or after keep theirs), hears each call's cache context, and ends a trajectory when the
    pipeline resets stateful hooks at the end of a call."""
    from diffusers.hooks import ModelHook

    class TCPadeCacheHook(ModelHook):
        _is_stateful = True

        def __init__(self):
            super().__init__()
            self.context = _context_listener(cached)

        def new_forward(self, module, *args, **kwargs):
            return cached(*args, **kwargs)

        def reset_state(self, module):
            cached.end_of_call()
            return module

    return TCPadeCacheHook()


class CacheHandle(CachedForward):
    """What ``apply_cache`` returns: statistics, reset and removal. The cache is a hook in the transformer's
    diffusers HookRegistry (diffusers' own caches use the same registry), so it coexists with other hooks and
    ``remove()`` takes exactly it off."""

    def __init__(self, transformer, config: CacheConfig, num_steps: int | None, scheduler=None, calibrated=(),
                 compile: bool | dict = False):
        from diffusers.hooks import HookRegistry

        model = split_model(transformer)
        model.calibrated = calibrated
        if compile:  # the block stack compiled, the policy eager (runtime/compiled.py)
            from .compiled import compiled_blocks

            model = compiled_blocks(model, **(compile if isinstance(compile, dict) else {}))
        super().__init__(model, config, num_steps, inspect.signature(transformer.forward), scheduler=scheduler)
        self.transformer = transformer
        self.removed = False
        self._had_forward = "forward" in vars(transformer)  # another hook's chain, left as it was on removal
        registry = HookRegistry.check_if_exists_or_initialize(transformer)
        registry.register_hook(_cache_hook(self), HOOK_NAME)
        # models without diffusers' CacheMixin (DiT, SD3) have no _reset_stateful_cache for pipelines to call at the
        # end of a call: give this instance one that resets the registry's stateful hooks, ours included
        self._added_reset = not hasattr(transformer, "_reset_stateful_cache")
        if self._added_reset:
            transformer._reset_stateful_cache = lambda recurse=True: registry.reset_stateful_hooks(recurse=recurse)
        if scheduler is not None:
            bind_scheduler(self, scheduler)

    def remove(self) -> None:
        """Take the cache off the transformer (other hooks stay) and restore the scheduler's methods."""
        if not self.removed:
            registry = getattr(self.transformer, "_diffusers_hook", None)
            if registry is not None:
                registry.remove_hook(HOOK_NAME, recurse=False)
                if not registry.hooks and not self._had_forward and "forward" in vars(self.transformer):
                    del self.transformer.forward  # diffusers leaves the bound method as an instance attribute
            if self._added_reset and "_reset_stateful_cache" in vars(self.transformer):
                del self.transformer._reset_stateful_cache
            if self.scheduler is not None:
                unbind_scheduler(self.scheduler)
            self.removed = True


def apply_cache(target, config: CacheConfig | str = DEFAULT_CACHE, num_steps: int | None = None,
                calibration=None, compile: bool | dict = False) -> CacheHandle:
    """Cache an unmodified diffusers FLUX, Wan or DiT transformer in place; returns the handle.

    target: a diffusers pipeline (its transformer is cached and its scheduler tells each call's
        step count), or the transformer itself (then ``num_steps`` is required).
    config: a CacheConfig or a cache spec, 'PRESET[:field=value,...]'.
    calibration: the model's calibrated schedules, a file from `tcpade-trt calibrate MODEL --out FILE`
        (or its rows); budget presets then use them at the step counts they cover.
    compile: run the transformer's block stack under torch.compile (True, or torch.compile's keyword arguments,
        e.g. ``{"mode": "max-autotune"}``) while the cache's decisions stay eager: compiled once per input shape.
        Compiling the whole hooked transformer instead (``transformer.compile()``) also works, but the cache's
        bookkeeping is then left out of the graph (a graph break per call) and nothing of it is faster.
    """
    config = cache_config(config)
    if calibration is not None and not isinstance(calibration, tuple):
        from ..cache.calibrate import load_calibration

        calibration = load_calibration(calibration)
    scheduler = None
    transformer = target
    if hasattr(target, "transformer") and hasattr(target, "scheduler"):  # a pipeline
        transformer, scheduler = target.transformer, target.scheduler
        if transformer is None:
            raise ConfigError("this pipeline has no transformer to cache.")
    if not isinstance(transformer, torch.nn.Module):
        raise ConfigError(f"apply_cache takes a diffusers pipeline or its transformer (got {type(target).__name__}).")
    if scheduler is None and num_steps is None:
        raise ConfigError(NO_STEP_COUNT)
    registry = getattr(transformer, "_diffusers_hook", None)
    if registry is not None and registry.get_hook(HOOK_NAME) is not None:
        raise ConfigError("this transformer already has a cache of ours attached; call handle.remove() first.")
    return CacheHandle(transformer, config, num_steps, scheduler, calibration or (), compile=compile)
