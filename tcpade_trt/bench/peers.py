"""Independent peers: diffusers' own cache hooks on the same eager model, in the same run.

    diffusers-taylorseer  TaylorSeerCacheConfig, caching attention and feed-forward outputs (order 1, warm-up 3,
                          then every 5th step computed)
    diffusers-fbcache     FirstBlockCacheConfig (skip the rest when the first block barely changes)
    diffusers-magcache    MagCacheConfig, calibrated first on one uncached run of the same model

Code nobody here wrote, so TC-Padé's quality is compared with something independent. Each peer's knobs
(``PEER_KNOBS``) can be set per run, so a study can sweep them and keep each peer at its best rather than at
its defaults. Full steps are counted as real executions of the last block's query projection (a skipped or
predicted step never runs it).
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
# each peer's knobs and their defaults (run_peer(..., **knobs) overrides them)
PEER_KNOBS = {
    "diffusers-taylorseer": {"interval": 5, "warmup": 3, "order": 1, "mode": "attention+ff"},
    "diffusers-fbcache": {"threshold": FBCACHE_THRESHOLD},
    "diffusers-magcache": {"threshold": MAGCACHE_THRESHOLD, "max_skip": 3},
}
# What diffusers' TaylorSeer hook predicts (regexes fullmatched on module names; (predicted, skipped)):
#   "attention"     every block's attention modules: the feed-forwards still run on predicted steps. diffusers'
#                   defaults match "^transformer_blocks.*attn" and the like, which miss DiT's "attn1"
#   "attention+ff"  attention and feed-forward; FLUX's single-stream blocks predict their output projection and
#                   skip the MLP input projection that only feeds it (TaylorSeer's own configuration)
#   "output"        diffusers' "lite" idea: every block skipped (returns zeros), the final projection predicted,
#                   i.e. the model output extrapolated
_BLOCK = r"(transformer_blocks|blocks)\.\d+\."
TAYLORSEER_MODES = {
    "attention": ([_BLOCK + r"attn\d?", r"single_transformer_blocks\.\d+\.attn"], []),
    "attention+ff": ([_BLOCK + r"(attn\d?|ff|ff_context|ffn)", r"single_transformer_blocks\.\d+\.(attn|proj_out)"],
                     [r"single_transformer_blocks\.\d+\.proj_mlp"]),
    "output": ([r"proj_out", r"proj_out_2"], [r"[^.]*block[^.]*\.[^.]+"]),
}


def _compute_probe(transformer) -> torch.nn.Module:
    """A leaf inside the last block's attention: it runs only when that attention really computes
    (TaylorSeer predicts attention outputs; FBCache and MagCache skip whole blocks)."""
    blocks = getattr(transformer, "single_transformer_blocks", None) or getattr(transformer, "blocks", None) \
        or transformer.transformer_blocks
    attention = getattr(blocks[-1], "attn", None) or blocks[-1].attn1
    return attention.to_q


def peer_knobs(name: str, **knobs) -> dict:
    """The peer's knobs: its defaults, overridden by ``knobs`` (None leaves a default); an unknown peer or knob
    is one sentence."""
    if name not in PEER_KNOBS:
        raise ValueError(f"unknown peer {name!r}; peers are {', '.join(PEERS)}")
    unknown = set(knobs) - set(PEER_KNOBS[name])
    if unknown:
        raise ValueError(f"{name} has no knob {', '.join(sorted(unknown))}; its knobs are "
                         f"{', '.join(PEER_KNOBS[name])}")
    knobs = PEER_KNOBS[name] | {k: v for k, v in knobs.items() if v is not None}
    if knobs.get("mode", "attention") not in TAYLORSEER_MODES:
        raise ValueError(f"{name} mode {knobs['mode']!r} is not one of {', '.join(TAYLORSEER_MODES)}")
    return knobs


def _config(name: str, steps: int, mag_ratios=None, **knobs):
    from diffusers import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    knobs = peer_knobs(name, **knobs)
    if name == "diffusers-taylorseer":
        predicted, skipped = TAYLORSEER_MODES[knobs["mode"]]
        return TaylorSeerCacheConfig(cache_interval=knobs["interval"], disable_cache_before_step=knobs["warmup"],
                                     max_order=knobs["order"], taylor_factors_dtype=torch.float32,
                                     cache_identifiers=predicted, skip_predict_identifiers=skipped or None)
    if name == "diffusers-fbcache":
        return FirstBlockCacheConfig(threshold=knobs["threshold"])
    if mag_ratios is None:
        return MagCacheConfig(calibrate=True, num_inference_steps=steps)
    return MagCacheConfig(threshold=knobs["threshold"], max_skip_steps=knobs["max_skip"], mag_ratios=mag_ratios,
                          num_inference_steps=steps)


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
             mag_ratios: list[float] | None = None, **knobs) -> SampleResult:
    """Sample with one of diffusers' hooks attached to the model's transformer (removed afterwards), its
    ``knobs`` (PEER_KNOBS) set where given.

    MagCache needs ``mag_ratios`` from ``calibrate_magcache``; without them it calibrates first
    (an extra uncached run: calibrate once outside timed loops)."""
    transformer = model.transformer
    peer_knobs(name, **knobs)  # a bad knob is one sentence before any run
    if name == "diffusers-magcache" and mag_ratios is None:
        mag_ratios = calibrate_magcache(model, cond, noise, steps, guidance_scale)
    counter = {"full": 0}
    handle = _compute_probe(transformer).register_forward_hook(lambda *a: counter.__setitem__("full",
                                                                                               counter["full"] + 1))
    try:
        with diffusers_cache(transformer, _config(name, steps, mag_ratios, **knobs)):
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
