"""Independent peers: cache-dit's DBCache (github.com/vipshop/cache-dit) on the same eager FLUX or DiT model.

    cache-dit-dbcache                 DBCache alone: a cached step reuses the last computed residual
    cache-dit-dbcache-taylorseer      DBCache + TaylorSeerCalibratorConfig (order 1): the residual is extrapolated
    cache-dit-dbcache-foca            DBCache + FoCaCalibratorConfig (BDF2 predictor, Heun corrector)
    cache-dit-dbcache-dmd             DBCache + DMDCalibratorConfig (dynamic mode decomposition, history 6)
    ...-static                        the same, but on a fixed schedule: DBCacheConfig(steps_computation_mask=...,
                                      steps_computation_policy="static") computes exactly ``full_steps``

Dynamic peers decide per step: DBCache always runs the first Fn blocks, compares their output residual with
the one of the last computed step (relative L1), and when it changed less than ``threshold`` it skips the
other blocks and adds the cached (or, with a calibrator, forecast) residual of those blocks instead.
The decision is made once per forward, i.e. for the whole batch (cache-dit averages the change over it).

The demo model has only 2 double-stream + 4 single-stream blocks, so cache-dit's default Fn=8 would leave
nothing to cache: here Fn=1, Bn=0 (the setting cache-dit's docs give for FLUX as well), i.e. the first
double-stream block runs every step and the other five are skipped on a cached step. The blocks form ONE
list (cache-dit's own FLUX adapter does the same with its "dummy blocks"): one cache decision per step, so
a step is either full or cached. cache-dit's FluxPatchFunctor is not used: it exists for diffusers < 0.35
(whose single-stream blocks took no encoder_hidden_states) and would leave the transformer's forward
patched after ``disable_cache``.

Full steps are MEASURED, not read from cache-dit's statistics: a forward hook counts executions of the
last single-stream block's query projection, which runs only when that block really computes.
Each run enables cache-dit, samples and disables it again, so every run starts from fresh cache contexts
(no state leaks between runs) and the transformer is left as it was.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from tcpade_trt.errors import ConfigError
from tcpade_trt.models.model import Model
from tcpade_trt.runtime.sampler import SampleResult, sample

CALIBRATORS = ("", "taylorseer", "foca", "dmd")  # "" = DBCache alone
CACHEDIT_PEERS = tuple(f"cache-dit-dbcache{'-' + c if c else ''}{mode}" for mode in ("", "-static")
                       for c in CALIBRATORS)
# about 7 full steps of 20 on the demo model (comparable with tcpade-fast and peers.py's thresholds)
DEFAULT_THRESHOLD = 0.3
FN_BLOCKS, BN_BLOCKS = 1, 0
WARMUP_STEPS = 2  # computed before any caching: the residual comparison and order-1 forecasts need two
STATIC_INTERVAL = 3  # default static schedule: warm-up, then every 3rd step, and the last (9 of 20 steps)


def cachedit_available() -> bool:
    try:
        import cache_dit  # noqa: F401
    except ImportError:
        return False
    return True


def default_full_steps(steps: int) -> list[int]:
    """The static peers' default schedule: the warm-up steps, then every STATIC_INTERVAL-th, and the last
    one (cache-dit's own predefined masks also always compute the last step)."""
    return sorted({*range(min(WARMUP_STEPS, steps)), *range(WARMUP_STEPS, steps, STATIC_INTERVAL), steps - 1})


def _parse(name: str) -> tuple[str, bool]:
    """Peer name -> (calibrator, static)."""
    if name not in CACHEDIT_PEERS:
        raise ConfigError(f"unknown cache-dit peer {name!r}; peers are {', '.join(CACHEDIT_PEERS)}")
    static = name.endswith("-static")
    calibrator = name.removesuffix("-static").removeprefix("cache-dit-dbcache").lstrip("-")
    return calibrator, static


def _steps_mask(steps: int, full_steps) -> list[int]:
    full = sorted(set(default_full_steps(steps) if full_steps is None else full_steps))
    if not full or full[0] != 0 or full[-1] >= steps:
        # step 0 fills the cache; without it cache-dit would have no residual to reuse
        raise ConfigError(f"full_steps must include step 0 and lie in 0..{steps - 1} (got {full_steps!r}).")
    return [int(s in full) for s in range(steps)]


def _cache_config(steps: int, static: bool, threshold: float | None, full_steps):
    from cache_dit import DBCacheConfig

    common = dict(Fn_compute_blocks=FN_BLOCKS, Bn_compute_blocks=BN_BLOCKS, max_warmup_steps=WARMUP_STEPS,
                  num_inference_steps=steps,  # cache-dit's per-run bookkeeping (context refresh, stats)
                  enable_separate_cfg=False)  # the sampler runs cond and uncond rows in one batch
    if static:  # cached steps are decided by the mask alone; the threshold is never consulted
        return DBCacheConfig(**common, steps_computation_mask=_steps_mask(steps, full_steps),
                             steps_computation_policy="static")
    return DBCacheConfig(**common, residual_diff_threshold=DEFAULT_THRESHOLD if threshold is None else threshold)


def _calibrator_config(calibrator: str):
    from cache_dit import DMDCalibratorConfig, FoCaCalibratorConfig, TaylorSeerCalibratorConfig

    configs = {"": lambda: None, "taylorseer": lambda: TaylorSeerCalibratorConfig(taylorseer_order=1),
               "foca": FoCaCalibratorConfig, "dmd": DMDCalibratorConfig}
    return configs[calibrator]()


def _adapter(transformer):
    """FLUX: all blocks as one cached list, the single-stream list replaced by an empty one while cached
    (diffusers >= 0.35: both block kinds take and return (encoder_hidden_states, hidden_states)).
    DiT: cache-dit's own DiT adapter (blocks take and return hidden_states only; its patch functor
    rewrites the transformer's forward, which ``_cached`` puts back)."""
    from cache_dit import BlockAdapter, ForwardPattern

    if not hasattr(transformer, "single_transformer_blocks"):
        from cache_dit.caching.patch_functors import DiTPatchFunctor

        return BlockAdapter(transformer=transformer, blocks=transformer.transformer_blocks,
                            forward_pattern=ForwardPattern.Pattern_3, patch_functor=DiTPatchFunctor(),
                            check_forward_pattern=True)

    blocks = torch.nn.ModuleList([*transformer.transformer_blocks, *transformer.single_transformer_blocks])
    return BlockAdapter(transformer=transformer, blocks=blocks, blocks_name="transformer_blocks",
                        dummy_blocks_names=["single_transformer_blocks"], forward_pattern=ForwardPattern.Pattern_1,
                        check_forward_pattern=True)


@contextlib.contextmanager
def _quiet_cachedit():
    """cache-dit logs several INFO / WARNING lines per enable and disable; keep the bench output readable."""
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("cache_dit")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def _cached(transformer, cache_config, calibrator_config):
    """cache-dit enabled on the transformer for the block; afterwards the transformer is as before."""
    import cache_dit
    from cache_dit import BlockAdapter

    # disable_cache rebinds the original forward as an instance attribute: remember whether there was one
    own_forward = transformer.__dict__.get("forward")
    # patch functors (DiT) mark the transformer (_is_patched, _norm1_emb); left behind, the next enable would
    # skip patching and run diffusers' own forward on the cached block list
    own_attributes = set(transformer.__dict__)
    # the dummy-blocks swap re-registers the block lists at the end of the module order; diffusers'
    # FirstBlockCache takes the first block in that order as its head, so the order is restored too
    order = list(transformer._modules)
    with _quiet_cachedit():
        adapter = _adapter(transformer)
    try:
        with _quiet_cachedit():
            cache_dit.enable_cache(adapter, cache_config=cache_config, calibrator_config=calibrator_config)
        yield
    finally:
        with _quiet_cachedit():
            if BlockAdapter.is_normalized(adapter):  # normalised in place once enable_cache got that far
                cache_dit.disable_cache(adapter)
        for name in set(transformer.__dict__) - own_attributes:
            del transformer.__dict__[name]
        if own_forward is None:
            transformer.__dict__.pop("forward", None)
        else:
            transformer.forward = own_forward
        modules = transformer._modules
        transformer._modules = type(modules)((name, modules[name]) for name in order if name in modules)


class _StepProbe:
    """Per sampler step: did the last block compute? A pre-hook on the transformer starts a step (one
    forward per step: cond and uncond share a batch), a hook on the last block's query projection marks it."""

    def __init__(self, transformer):
        from tcpade_trt.bench.peers import _compute_probe

        self.decisions: list[bool] = []
        leaf = _compute_probe(transformer)
        self.handles = [transformer.register_forward_pre_hook(lambda *a: self.decisions.append(False)),
                        leaf.register_forward_hook(lambda *a: self.decisions.__setitem__(-1, True))]

    def remove(self):
        for handle in self.handles:
            handle.remove()


def run_cachedit(model: Model, name: str, cond, noise, steps: int, guidance_scale=None,
                 threshold: float | None = None, full_steps: list[int] | None = None) -> SampleResult:
    """Sample with one cache-dit peer on the model's FLUX transformer (removed afterwards).

    threshold: DBCache's residual_diff_threshold for the dynamic peers (default DEFAULT_THRESHOLD; higher
        caches more). full_steps: the steps the static peers compute (default ``default_full_steps``;
        must include step 0). Each is ignored by the other kind of peer."""
    if not cachedit_available():
        raise ImportError("cache-dit is not installed; install it with `pip install cache-dit` to run its peers.")
    calibrator, static = _parse(name)
    transformer = model.transformer
    if type(transformer).__name__ not in ("FluxTransformer2DModel", "DiTTransformer2DModel"):
        raise ConfigError(f"cache-dit peers are set up for FLUX and DiT transformers; {model.name!r} is a "
                          f"{type(transformer).__name__}.")
    cache_config = _cache_config(steps, static, threshold, full_steps)
    probe = _StepProbe(transformer)
    try:
        with _cached(transformer, cache_config, _calibrator_config(calibrator)):
            result = sample(model, cond, noise, num_steps=steps, guidance_scale=guidance_scale, unsplit=True)
    finally:
        probe.remove()
    full = sum(probe.decisions)
    return SampleResult(result.latents, full, steps - full, probe.decisions)
