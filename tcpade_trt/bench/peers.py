"""Independent peers: diffusers' own cache hooks on the same eager model, in the same run.

    diffusers-taylorseer  TaylorSeerCacheConfig (attention and feed-forward outputs, order 1)
    diffusers-fbcache     FirstBlockCacheConfig (skip the rest when the first block barely changes)
    diffusers-magcache    MagCacheConfig, calibrated first on one uncached run of the same model

Code nobody here wrote, so TC-Padé's quality is compared with something independent. Full steps
are counted as real executions of the last block's query projection (a skipped or predicted step
never runs it).
"""

from __future__ import annotations

import contextlib

import torch

from ..models.model import Model
from ..runtime.sampler import SampleResult, sample

PEERS = ("diffusers-taylorseer", "diffusers-fbcache", "diffusers-magcache")
# thresholds that give about 7 full steps of 20 on the demo model (comparable with tcpade-fast)
FBCACHE_THRESHOLD = 0.25
MAGCACHE_THRESHOLD = 0.5


def _compute_probe(transformer) -> torch.nn.Module:
    """A leaf inside the last block's attention: it runs only when that attention really computes
    (TaylorSeer predicts attention outputs; FBCache and MagCache skip whole blocks)."""
    blocks = getattr(transformer, "single_transformer_blocks", None) or getattr(transformer, "blocks", None) \
        or transformer.transformer_blocks
    attention = getattr(blocks[-1], "attn", None) or blocks[-1].attn1
    return attention.to_q


# diffusers' TaylorSeer hooks attention modules whose name fullmatches "^transformer_blocks.*attn" and the
# like; DiT's are named transformer_blocks.N.attn1, so by default it would hook nothing and compute every step
_TAYLORSEER_ATTENTION = {"DiTTransformer2DModel": [r"transformer_blocks\.\d+\.attn1"]}


def _config(name: str, steps: int, mag_ratios=None, threshold: float | None = None, interval: int | None = None,
            transformer_class: str = ""):
    from diffusers import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    if name == "diffusers-taylorseer":  # default 7 of 20 full: warm-up 3, then every 5th step
        return TaylorSeerCacheConfig(cache_interval=interval or 5, disable_cache_before_step=3, max_order=1,
                                     taylor_factors_dtype=torch.float32,
                                     cache_identifiers=_TAYLORSEER_ATTENTION.get(transformer_class))
    if name == "diffusers-fbcache":
        return FirstBlockCacheConfig(threshold=threshold or FBCACHE_THRESHOLD)
    if name == "diffusers-magcache":
        if mag_ratios is None:
            return MagCacheConfig(calibrate=True, num_inference_steps=steps)
        return MagCacheConfig(threshold=threshold or MAGCACHE_THRESHOLD, max_skip_steps=3, mag_ratios=mag_ratios,
                              num_inference_steps=steps)
    raise ValueError(f"unknown peer {name!r}; peers are {', '.join(PEERS)}")


@contextlib.contextmanager
def diffusers_cache(transformer, config):
    """diffusers' cache hooks on ``transformer`` inside the block, removed afterwards: through its CacheMixin
    (FLUX, Wan, SD3), or for a transformer without one (DiT) through the same hook functions and hook names
    that CacheMixin.enable_cache / disable_cache use."""
    if hasattr(transformer, "enable_cache"):
        transformer.enable_cache(config)
        try:
            with transformer.cache_context("cond"):
                yield
        finally:
            transformer.disable_cache()
        return
    from diffusers.hooks import (
        FirstBlockCacheConfig,
        HookRegistry,
        MagCacheConfig,
        apply_first_block_cache,
        apply_mag_cache,
        apply_taylorseer_cache,
    )
    from diffusers.hooks.first_block_cache import _FBC_BLOCK_HOOK, _FBC_LEADER_BLOCK_HOOK
    from diffusers.hooks.hooks import CacheContext, _set_cache_context
    from diffusers.hooks.mag_cache import _MAG_CACHE_BLOCK_HOOK, _MAG_CACHE_LEADER_BLOCK_HOOK
    from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK

    if isinstance(config, FirstBlockCacheConfig):
        apply, hooks = apply_first_block_cache, (_FBC_LEADER_BLOCK_HOOK, _FBC_BLOCK_HOOK)
    elif isinstance(config, MagCacheConfig):
        apply, hooks = apply_mag_cache, (_MAG_CACHE_LEADER_BLOCK_HOOK, _MAG_CACHE_BLOCK_HOOK)
    else:
        apply, hooks = apply_taylorseer_cache, (_TAYLORSEER_CACHE_HOOK,)
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    apply(transformer, config)
    registry.invalidate_child_registries_cache()
    _set_cache_context(transformer, CacheContext("cond"))
    try:
        yield
    finally:
        _set_cache_context(transformer, None)
        for hook in hooks:
            registry.remove_hook(hook, recurse=True)
        registry.invalidate_child_registries_cache()


def run_peer(model: Model, name: str, cond, noise, steps: int, guidance_scale=None,
             threshold: float | None = None, mag_ratios: list[float] | None = None,
             interval: int | None = None) -> SampleResult:
    """Sample with one of diffusers' hooks attached to the model's transformer (removed afterwards).

    MagCache needs ``mag_ratios`` from ``calibrate_magcache``; without them it calibrates first
    (an extra uncached run: calibrate once outside timed loops)."""
    transformer = model.transformer
    if name == "diffusers-magcache" and mag_ratios is None:
        mag_ratios = calibrate_magcache(model, cond, noise, steps, guidance_scale)
    counter = {"full": 0}
    handle = _compute_probe(transformer).register_forward_hook(lambda *a: counter.__setitem__("full",
                                                                                               counter["full"] + 1))
    try:
        with diffusers_cache(transformer, _config(name, steps, mag_ratios, threshold, interval,
                                                  type(transformer).__name__)):
            result = sample(model, cond, noise, num_steps=steps, guidance_scale=guidance_scale, unsplit=True)
    finally:
        handle.remove()
    return SampleResult(result.latents, counter["full"], steps - counter["full"], [])


def calibrate_magcache(model, cond, noise, steps, guidance_scale=None) -> list[float]:
    """MagCache's own calibration: one uncached run that records the residual-magnitude ratios."""
    import logging

    from diffusers.hooks import mag_cache

    transformer = model.transformer
    ratios: list[float] = []
    original = mag_cache.MagCacheBlockHook._perform_calibration_step

    def record(self, state, residual):
        original(self, state, residual)
        ratios[:] = list(state.calibration_ratios)

    mag_cache.MagCacheBlockHook._perform_calibration_step = record
    level = logging.getLogger("diffusers").level
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    try:
        import io

        with diffusers_cache(transformer, _config("diffusers-magcache", steps)), \
                contextlib.redirect_stdout(io.StringIO()):
            sample(model, cond, noise, num_steps=steps, guidance_scale=guidance_scale, unsplit=True)
    finally:
        mag_cache.MagCacheBlockHook._perform_calibration_step = original
        logging.getLogger("diffusers").setLevel(level)
    return ratios
