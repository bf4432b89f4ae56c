"""apply_cache on unmodified diffusers transformers: hand-written loops and real pipelines."""

import pytest
import torch

from tcpade_trt.cache import cache_config, make_policy
from tcpade_trt.cache.schedule import FAST, budget_schedule
from tcpade_trt.errors import ConfigError
from tcpade_trt.models import tiny_model
from tcpade_trt.runtime.hooks import apply_cache
from tcpade_trt.runtime.sampler import initial_noise, sample

from ..conftest import make_inputs
from ..pipelines import PIPELINES

FAST_FULL = list(budget_schedule(20, FAST))


@pytest.mark.parametrize("name,res,guidance", [("tiny-flux", (8, 8, 1), None), ("tiny-dit", (8, 8, 1), 4.0)])
def test_hook_in_a_hand_written_loop_matches_the_split_sampler(name, res, guidance):
    """The unsplit loop calls transformer(...) each step; hooked, it must equal the cached split path."""
    model = tiny_model(name)
    _, cond = make_inputs(model, 2, *res)
    noise = initial_noise(model, model.family.geometry(2, *res[:2]).shape, seed=[5, 6])
    config = cache_config("tcpade-fast")
    split = sample(model, cond, noise, num_steps=20, guidance_scale=guidance, policy=make_policy(config))
    handle = apply_cache(model.transformer, config, num_steps=20)
    try:
        hooked = sample(model, cond, noise, num_steps=20, guidance_scale=guidance, unsplit=True)
    finally:
        handle.remove()
    assert handle.stats()["full"] == 7 and handle.stats()["predicted"] == 13
    assert handle.stats()["decisions"] == split.decisions
    torch.testing.assert_close(hooked.latents, split.latents, rtol=1e-5, atol=1e-6)


def test_remove_restores_bit_identical_outputs():
    model = tiny_model("tiny-wan")
    latents, cond = make_inputs(model, 1, 8, 8, 3)
    t = torch.tensor([500.0])
    before = model.parts.forward_unsplit(latents, t, cond)
    handle = apply_cache(model.transformer, "reuse", num_steps=20)
    assert "forward" in vars(model.transformer)
    handle.remove()
    assert "forward" not in vars(model.transformer)
    assert torch.equal(model.parts.forward_unsplit(latents, t, cond), before)


def test_a_hand_written_loop_of_another_length_than_announced_is_refused():
    model = tiny_model("tiny-dit")
    _, cond = make_inputs(model, 1, 8, 8)
    noise = initial_noise(model, (1, 4, 8, 8), seed=0)
    handle = apply_cache(model.transformer, "tcpade-fast", num_steps=20)
    try:
        sample(model, cond, noise, num_steps=10, unsplit=True)  # a shorter run than announced ...
        with pytest.raises(ConfigError, match="num_steps=20 but the trajectory ended after 10 steps"):
            sample(model, cond, noise, num_steps=10, unsplit=True)  # ... is refused when it shows
        handle.reset()
        with pytest.raises(ConfigError, match="set for 20 steps but the loop runs more"):
            sample(model, cond, noise, num_steps=30, unsplit=True)  # a longer one at its 21st call
    finally:
        handle.remove()


def test_bad_arguments_are_explained():
    model = tiny_model("tiny-dit")
    with pytest.raises(ConfigError, match="num_steps must be a positive integer"):
        apply_cache(model.transformer, "reuse", num_steps=0)
    with pytest.raises(ConfigError, match="pass the pipeline .* or num_steps=N"):
        apply_cache(model.transformer, "reuse")
    with pytest.raises(ConfigError, match="lam must be a finite number"):
        apply_cache(model.transformer, "tcpade-fast:lam=nan", num_steps=20)  # a spec, like the CLI's
    handle = apply_cache(model.transformer, "reuse", num_steps=20)
    with pytest.raises(ConfigError, match="already has a cache of ours"):
        apply_cache(model.transformer, "reuse", num_steps=20)
    handle.remove()


def test_given_the_pipeline_each_call_gets_its_own_step_count_and_a_fresh_state():
    call = PIPELINES["tiny-flux"](tiny_model("tiny-flux").transformer)
    handle = apply_cache(call.pipe, "tcpade-fast")
    try:
        cached_10 = call(steps=10)
        stats_10 = handle.stats()
        call(steps=20)
        stats_20 = handle.stats()
        again_10 = call(steps=10)
    finally:
        handle.remove()
    assert len(stats_10["decisions"]) == 10 and stats_10["decisions"][-1]  # the last step of 10 is full
    assert stats_20["full"] == 7 and len(stats_20["decisions"]) == 20
    assert torch.equal(cached_10, again_10)  # nothing of the 20-step call leaked into the next one
    assert "set_timesteps" not in vars(call.pipe.scheduler)  # removed with the cache


def test_a_num_steps_that_contradicts_the_pipeline_is_refused_before_the_first_step():
    call = PIPELINES["tiny-flux"](tiny_model("tiny-flux").transformer)
    handle = apply_cache(call.pipe, "tcpade-fast", num_steps=20)
    try:
        with pytest.raises(ConfigError, match="num_steps=20 was given but the pipeline runs 10 steps"):
            call(steps=10)
        assert handle.stats()["decisions"] == []  # not one step ran on the wrong schedule
    finally:
        handle.remove()


def test_a_bare_transformer_in_a_pipeline_of_another_length_is_refused_when_the_call_ends():
    transformer = tiny_model("tiny-flux").transformer
    call = PIPELINES["tiny-flux"](transformer)
    handle = apply_cache(transformer, "tcpade-fast", num_steps=20)
    try:
        with pytest.raises(ConfigError, match="num_steps=20 but the trajectory ended after 10 steps"):
            call(steps=10)  # diffusers' end-of-call reset tells the hook; the result is not handed out
        call(steps=20)  # the next, matching call works
    finally:
        handle.remove()
    assert handle.stats()["full"] == 7


def run_twice(transformer, call, preset):
    """(uncached output, cached output, stats, output after remove())."""
    plain = call()
    handle = apply_cache(transformer, preset, num_steps=20)
    cached = call()
    stats = handle.stats()
    handle.remove()
    return plain, cached, stats, call()


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name,preset", [("tiny-flux", "tcpade-fast"), ("tiny-wan", "tcpade-fast"),
                                         ("tiny-dit", "taylorseer"), ("tiny-sd3", "tcpade-fast")])
def test_inside_an_unmodified_pipeline(name, preset):
    transformer = tiny_model(name).transformer
    call = PIPELINES[name](transformer)
    plain, cached, stats, after = run_twice(transformer, call, preset)
    branches = stats["branches"]
    assert len(branches) == (2 if name == "tiny-wan" else 1)  # Wan calls cond and uncond separately
    for branch in branches:
        assert [s for s, f in enumerate(branch["decisions"]) if f] == FAST_FULL
    assert rel(cached, plain) < 0.1
    assert torch.equal(after, plain)


def test_prompt_only_tensors_are_prepared_once_per_trajectory_in_a_pipeline():
    """FLUX's context embedder belongs to prepare(): inside a pipeline it runs once per branch and call,
    not once per step."""
    transformer = tiny_model("tiny-flux").transformer
    call = PIPELINES["tiny-flux"](transformer)
    calls = []
    hook = transformer.context_embedder.register_forward_hook(lambda *a: calls.append(1))
    handle = apply_cache(call.pipe, "tcpade-fast")
    try:
        call(steps=10)
    finally:
        handle.remove()
        hook.remove()
    assert len(calls) == 1


def test_a_hand_written_heun_loop_is_one_trajectory_of_every_model_call():
    """A Heun-type scheduler evaluates the model twice at most timesteps (predictor, then corrector: timesteps
    t0, t1, t1, t2, t2, ...). With its scheduler bound, an equal timestep is the scheduler's own second call,
    not another branch: the branch that a repeat used to open never reached the step count."""
    from types import SimpleNamespace

    from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

    model = tiny_model("tiny-flux")
    _, cond = make_inputs(model, 1, 8, 8)
    transformer = model.transformer
    scheduler = FlowMatchHeunDiscreteScheduler.from_config(FlowMatchEulerDiscreteScheduler().config)
    handle = apply_cache(SimpleNamespace(transformer=transformer, scheduler=scheduler), "tcpade-fast")
    try:
        scheduler.set_timesteps(6)
        calls = len(scheduler.timesteps)  # 11: every step but the last twice
        latents = initial_noise(model, model.family.geometry(1, 8, 8).shape, seed=0)
        with torch.no_grad():
            for t in scheduler.timesteps:
                out = model.parts.forward_unsplit(latents, (t / 1000).expand(1), cond)
                latents = scheduler.step(out, t, latents, return_dict=False)[0]
    finally:
        handle.remove()
    stats = handle.stats()
    assert calls == 11 and stats["full"] + stats["predicted"] == calls and stats["predicted"] > 0
    assert torch.isfinite(latents).all()


def _cfg_run(hook):
    """A DiT with guidance, 20 steps: the split sampler's result and the hooked unsplit loop's, after ``hook``."""
    model = tiny_model("tiny-dit")
    _, cond = make_inputs(model, 2, 8, 8)
    noise = initial_noise(model, model.family.geometry(2, 8, 8).shape, seed=[5, 6])
    config = cache_config("tcpade-fast")
    split = sample(model, cond, noise, num_steps=20, guidance_scale=4.0, policy=make_policy(config))
    handle = hook(model, config)
    try:
        hooked = sample(model, cond, noise, num_steps=20, guidance_scale=4.0, unsplit=True)
    finally:
        handle.remove()
    return split, hooked, handle


def test_compiling_a_cached_transformer_leaves_the_cache_eager():
    """transformer.compile() after apply_cache: the cache's bookkeeping is never traced (it recompiled at every
    step, one graph per step index, before), and its decisions are those of the uncompiled cache."""
    from torch._dynamo.utils import counters

    def hook_then_compile(model, config):
        handle = apply_cache(model.transformer, config, num_steps=20)
        model.transformer.compile()
        return handle

    torch._dynamo.reset()
    counters.clear()
    split, hooked, handle = _cfg_run(hook_then_compile)
    assert handle.stats()["decisions"] == split.decisions
    torch.testing.assert_close(hooked.latents, split.latents)
    assert counters["stats"]["unique_graphs"] <= 1


def test_apply_cache_compiles_the_block_stack_once_and_caches_as_before():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    split, hooked, handle = _cfg_run(lambda model, config: apply_cache(model.transformer, config, num_steps=20,
                                                                        compile=True))
    assert handle.stats()["full"] == 7 and handle.stats()["decisions"] == split.decisions
    torch.testing.assert_close(hooked.latents, split.latents, rtol=1e-3, atol=1e-3)  # inductor reorders sums
    assert counters["stats"]["unique_graphs"] == 1  # one input shape, one graph: never per step


def test_the_cache_is_one_hook_among_others_in_diffusers_registry():
    """The cache registers in the transformer's diffusers HookRegistry: a hook registered after it (outside it, in
    diffusers' order) sees every call, and removing the cache leaves that hook in place, now around the original
    forward."""
    from diffusers.hooks import HookRegistry, ModelHook

    class CountCalls(ModelHook):
        calls = 0

        def pre_forward(self, module, *args, **kwargs):
            CountCalls.calls += 1
            return args, kwargs

    model = tiny_model("tiny-dit")
    _, cond = make_inputs(model, 1, 8, 8)
    noise = initial_noise(model, (1, 4, 8, 8), seed=0)
    plain = sample(model, cond, noise, num_steps=20, unsplit=True)
    handle = apply_cache(model.transformer, "tcpade-fast", num_steps=20)
    registry = HookRegistry.check_if_exists_or_initialize(model.transformer)
    registry.register_hook(CountCalls(), "count")
    assert sorted(registry.hooks) == ["count", "tcpade_trt_cache"]
    sample(model, cond, noise, num_steps=20, unsplit=True)
    assert CountCalls.calls == 20 and handle.stats()["full"] == 7  # every call seen; the cache skipped blocks
    handle.remove()
    assert sorted(registry.hooks) == ["count"]
    CountCalls.calls = 0
    assert torch.equal(sample(model, cond, noise, num_steps=20, unsplit=True).latents, plain.latents)
    assert CountCalls.calls == 20
