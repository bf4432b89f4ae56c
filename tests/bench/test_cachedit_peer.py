"""cache-dit peers on the shipped demo model: they run, cache, stay close to the uncached image, measure
their full steps, and leave the transformer and the next run untouched."""

import importlib
import sys

import pytest
import torch

from research import cachedit_peer
from research.cachedit_peer import CACHEDIT_PEERS, cachedit_available, run_cachedit
from tcpade_trt.errors import ConfigError
from tcpade_trt.metrics import psnr
from tcpade_trt.models.demo import latents_to_images, load_demo_model
from tcpade_trt.runtime.images import to_unit
from tcpade_trt.runtime.sampler import initial_noise, sample

requires_cachedit = pytest.mark.skipif(not cachedit_available(), reason="cache-dit is not installed")

STEPS = 10
THRESHOLD = 0.3  # permissive: 6 of 10 full steps on these seeds
MIN_PSNR_DB = 20.0  # measured 27-44 dB per sample at THRESHOLD and at the default static schedule


@pytest.fixture(scope="module")
def demo():
    model = load_demo_model()
    cond = model.class_cond(torch.tensor([0, 1]))
    noise = initial_noise(model, model.geometry_for(2).shape, [0, 1])
    reference = sample(model, cond, noise, num_steps=STEPS, unsplit=True).latents
    return model, cond, noise, reference


@pytest.fixture(scope="module")
def first_runs(demo):
    """Peer name -> its first run, shared between the tests (each run takes about a second)."""
    model, cond, noise, _ = demo
    runs = {}

    def run(name):
        if name not in runs:
            runs[name] = run_cachedit(model, name, cond, noise, STEPS, threshold=THRESHOLD)
        return runs[name]

    return run


def transformer_state(transformer) -> dict:
    """What cache-dit could leave behind: attributes, hooks and the class of every submodule, in module order
    (diffusers' FirstBlockCache takes the first block in that order as its head block)."""
    return [(name, type(m), sorted(vars(m)), list(m._forward_hooks), list(m._forward_pre_hooks))
            for name, m in transformer.named_modules()]


def images(latents):
    return to_unit(latents_to_images(latents))


def test_peer_names():
    assert CACHEDIT_PEERS == tuple(f"cache-dit-dbcache{c}{m}" for m in ("", "-static")
                                   for c in ("", "-taylorseer", "-foca", "-dmd"))


@requires_cachedit
@pytest.mark.parametrize("name", CACHEDIT_PEERS)
def test_peer_caches_close_to_uncached_and_leaves_no_trace(demo, first_runs, name):
    model, cond, noise, reference = demo
    before = transformer_state(model.transformer)
    first = first_runs(name)
    second = run_cachedit(model, name, cond, noise, STEPS, threshold=THRESHOLD)

    assert len(first.decisions) == STEPS and sum(first.decisions) == first.full_steps
    assert first.decisions[0] and 2 <= first.full_steps < STEPS  # it cached, and step 0 filled the cache
    assert first.full_steps + first.predicted_steps == STEPS
    quality = psnr(images(first.latents), images(reference))
    assert (quality > MIN_PSNR_DB).all(), f"{name}: {quality.tolist()} dB"
    # a fresh cache context per run: the second run repeats the first exactly
    assert torch.equal(first.latents, second.latents) and first.decisions == second.decisions
    assert transformer_state(model.transformer) == before
    assert torch.equal(sample(model, cond, noise, num_steps=STEPS, unsplit=True).latents, reference)


@requires_cachedit
@pytest.mark.parametrize("name", [n for n in CACHEDIT_PEERS if n.removesuffix("-static") != "cache-dit-dbcache"])
def test_calibrator_changes_the_cached_steps(first_runs, name):
    """The calibrator is really in use: the cached residual is forecast, not reused, so the image differs from
    plain DBCache of the same mode (static: on exactly the same steps)."""
    static = name.endswith("-static")
    plain = first_runs("cache-dit-dbcache" + ("-static" if static else ""))
    calibrated = first_runs(name)
    assert not torch.equal(calibrated.latents, plain.latents)
    if static:
        assert calibrated.decisions == plain.decisions


@requires_cachedit
@pytest.mark.parametrize("name", ["cache-dit-dbcache", "cache-dit-dbcache-taylorseer"])
def test_threshold_zero_computes_every_step_exactly(demo, name):
    """Threshold 0 never caches: every step counts as full and the result is the uncached one bit for bit."""
    model, cond, noise, reference = demo
    result = run_cachedit(model, name, cond, noise, STEPS, threshold=0.0)
    assert result.full_steps == STEPS and all(result.decisions)
    assert torch.equal(result.latents, reference)


@requires_cachedit
def test_static_peer_computes_exactly_the_given_steps(demo):
    model, cond, noise, _ = demo
    full_steps = [0, 1, 4, 7, 9]
    result = run_cachedit(model, "cache-dit-dbcache-taylorseer-static", cond, noise, STEPS, full_steps=full_steps)
    assert [s for s, computed in enumerate(result.decisions) if computed] == full_steps
    assert result.full_steps == len(full_steps)


@requires_cachedit
def test_failed_run_still_removes_cachedit(demo, monkeypatch):
    model, cond, noise, reference = demo
    before = transformer_state(model.transformer)

    def failing_sample(*args, **kwargs):
        sample(*args, **{**kwargs, "num_steps": 2})  # cache-dit really ran before the failure
        raise RuntimeError("interrupted")

    monkeypatch.setattr(cachedit_peer, "sample", failing_sample)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_cachedit(model, "cache-dit-dbcache-foca", cond, noise, STEPS)
    monkeypatch.undo()
    assert transformer_state(model.transformer) == before
    assert torch.equal(sample(model, cond, noise, num_steps=STEPS, unsplit=True).latents, reference)


@requires_cachedit
def test_bad_arguments(demo):
    model, cond, noise, _ = demo
    with pytest.raises(ConfigError, match="unknown cache-dit peer"):
        run_cachedit(model, "cache-dit-fbcache", cond, noise, STEPS)
    with pytest.raises(ConfigError, match="step 0"):
        run_cachedit(model, "cache-dit-dbcache-static", cond, noise, STEPS, full_steps=[2, 5, 9])


def test_without_cachedit_the_module_imports_and_running_says_so(monkeypatch, demo):
    monkeypatch.setitem(sys.modules, "cache_dit", None)  # makes `import cache_dit` raise ImportError
    module = importlib.reload(cachedit_peer)
    try:
        assert not module.cachedit_available()
        model, cond, noise, _ = demo
        with pytest.raises(ImportError, match="cache-dit is not installed"):
            module.run_cachedit(model, "cache-dit-dbcache", cond, noise, STEPS)
    finally:
        monkeypatch.undo()
        importlib.reload(cachedit_peer)


@requires_cachedit
def test_diffusers_first_block_cache_still_works_after_a_cachedit_run(demo):
    """The block lists keep their order: FirstBlockCache after cache-dit found a single-stream block first and
    failed on a missing head-block output."""
    from tcpade_trt.bench.peers import run_peer

    model, cond, noise, _ = demo
    run_cachedit(model, "cache-dit-dbcache", cond, noise, STEPS, threshold=THRESHOLD)
    assert run_peer(model, "diffusers-fbcache", cond, noise, STEPS).full_steps >= 1


@pytest.fixture(scope="module")
def tiny_dit():
    """A DiT (tiny-dit, seeded random weights) with classifier-free guidance, as the demo-dit model runs."""
    from tcpade_trt.models.registry import load_model

    model = load_model("tiny-dit")
    cond = model.class_cond(torch.tensor([3, 7]))
    noise = initial_noise(model, model.family.geometry(2, 8, 8).shape, [0, 1])
    reference = sample(model, cond, noise, num_steps=STEPS, guidance_scale=4.0, unsplit=True).latents
    return model, cond, noise, reference


@requires_cachedit
def test_dit_peer_runs_twice_and_leaves_no_trace(tiny_dit):
    """cache-dit's DiT patch functor marks the transformer (_is_patched): left behind, the second enable skipped
    patching and diffusers' own forward failed on the cached block list."""
    model, cond, noise, reference = tiny_dit
    before = transformer_state(model.transformer)
    static = [0, 1, 2, 5, 8, 9]
    for _ in range(2):
        result = run_cachedit(model, "cache-dit-dbcache-taylorseer-static", cond, noise, STEPS, 4.0, full_steps=static)
        assert result.full_steps == len(static) and torch.isfinite(result.latents).all()
    assert transformer_state(model.transformer) == before
    again = sample(model, cond, noise, num_steps=STEPS, guidance_scale=4.0, unsplit=True).latents
    assert torch.equal(again, reference)


def test_diffusers_hooks_cache_a_dit(tiny_dit):
    """DiT's transformer has no CacheMixin (no enable_cache), and diffusers' TaylorSeer default patterns miss its
    attn1 modules (it computed every step): every hook must really skip steps on it and be removed after."""
    from tcpade_trt.bench.peers import TAYLORSEER_MODES, run_peer

    model, cond, noise, reference = tiny_dit
    runs = [("diffusers-fbcache", {"threshold": 0.5}), ("diffusers-magcache", {"threshold": 0.5})]
    runs += [("diffusers-taylorseer", {"mode": mode}) for mode in TAYLORSEER_MODES]
    for name, knobs in runs:
        result = run_peer(model, name, cond, noise, STEPS, 4.0, **knobs)
        assert 1 <= result.full_steps < STEPS, (name, knobs)
        assert torch.isfinite(result.latents).all(), (name, knobs)
    # diffusers keeps an (empty) hook registry on every module it hooked, as CacheMixin.disable_cache does
    registries = [m._diffusers_hook for m in model.transformer.modules() if hasattr(m, "_diffusers_hook")]
    assert registries and not any(r.hooks for r in registries)
    assert torch.equal(sample(model, cond, noise, num_steps=STEPS, guidance_scale=4.0, unsplit=True).latents,
                       reference)
