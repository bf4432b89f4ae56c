"""Step-level continuous batching: requests that join at different ticks, with different step counts and
caches, each get the latents they get alone, and full steps of several requests share one block call."""

import pytest
import torch

from tcpade_trt.cache import make_policy
from tcpade_trt.runtime.runtime import Runtime
from tcpade_trt.runtime.sampler import Trajectory, initial_noise, sample
from tcpade_trt.runtime.step_batching import StepBatcher

# (label, seed, steps, cache): mixed step counts and caches, including batch-dependent ones (TeaCache, TSI gate)
REQUESTS = [(1, 10, 6, "tcpade-fast"), (3, 11, 8, "tcpade-fast"), (5, 12, 6, "none"), (7, 13, 7, "teacache"),
            (2, 14, 6, "tcpade-slow:threshold=1.0")]


def inputs(model, label, seed):
    cond = model.class_cond(torch.tensor([label]))
    return cond, initial_noise(model, model.family.geometry(1, 8, 8).shape, [seed])


def alone(model, make, label, seed, steps, cache):
    cond, noise = inputs(model, label, seed)
    return sample(model, cond, noise, num_steps=steps, guidance_scale=4.0, policy=make(cache))


class CountingBlocks:
    """Records the rows of every block-stack call (``rows``), and of those that also formed the residual."""

    def __init__(self, parts, monkeypatch):
        self.rows, self.with_residual, inside = [], [], []
        blocks, blocks_with_residual = parts.blocks, parts.blocks_with_residual

        def spy_blocks(step):
            if not inside:  # torch parts form the residual by calling blocks: one call, counted once
                self.rows.append(step["hidden_states"].shape[0])
            return blocks(step)

        def spy_blocks_with_residual(step):
            self.rows.append(step["hidden_states"].shape[0])
            self.with_residual.append(step["hidden_states"].shape[0])
            inside.append(True)
            try:
                return blocks_with_residual(step)
            finally:
                inside.pop()

        monkeypatch.setattr(parts, "blocks", spy_blocks)
        monkeypatch.setattr(parts, "blocks_with_residual", spy_blocks_with_residual)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_every_request_gets_what_it_gets_alone(backend, models, fp32_folders, monkeypatch):
    if backend == "torch":
        model, make = models["tiny-dit"], make_policy
    else:
        runtime = Runtime(fp32_folders["tiny-dit"], device="cpu")
        model, make = runtime.model, runtime.make_policy
    expected = [alone(model, make, *r) for r in REQUESTS]
    calls = CountingBlocks(model.parts, monkeypatch)
    batcher = StepBatcher(model, make, rows_max=8)
    try:
        futures = []
        for label, seed, steps, cache in REQUESTS:  # submitted one after another: later ones join mid-run
            cond, noise = inputs(model, label, seed)
            futures.append(batcher.submit(cond, noise, steps=steps, cache=cache, guidance_scale=4.0))
        results = [f.result(timeout=120) for f in futures]
    finally:
        batcher.close()
    for (_, _, _, cache), got, want in zip(REQUESTS, results, expected):
        # batch-size rounding of the block matmuls only: 1e-5 of the latents' range (measured: up to 5e-7 of it)
        scale = float(want.latents.abs().max())
        torch.testing.assert_close(got.result.latents, want.latents, rtol=1e-4, atol=1e-5 * scale, msg=cache)
        assert got.result.decisions == want.decisions, cache
    # CFG: 2 rows a request; rows_max 8 admits 4 requests, the fifth joins when one leaves
    assert max(calls.rows) > 2 and max(calls.rows) <= 8
    assert sum(calls.rows) == 2 * sum(r.result.full_steps for r in results)  # every full step ran exactly once
    assert len(calls.rows) < sum(r.result.full_steps for r in results)  # ... and some of them together


def test_a_bad_request_fails_alone_and_the_batcher_goes_on(models):
    model = models["tiny-dit"]
    batcher = StepBatcher(model, make_policy, rows_max=4)
    try:
        cond, noise = inputs(model, 1, 1)
        bad = batcher.submit(cond, noise, steps=6, cache="no-such-cache", guidance_scale=4.0)
        too_big = batcher.submit(model.class_cond(torch.arange(3)), torch.randn(3, 4, 8, 8), steps=6,
                                 guidance_scale=4.0)  # 6 rows > 4
        good = batcher.submit(cond, noise, steps=6, cache="tcpade-fast", guidance_scale=4.0)
        with pytest.raises(Exception, match="cache"):
            bad.result(timeout=60)
        with pytest.raises(ValueError, match="exceed"):
            too_big.result(timeout=60)
        assert good.result(timeout=60).result.full_steps >= 2
    finally:
        batcher.close()


def test_trajectory_steps_are_the_sampler(models):
    """sample() is a loop over Trajectory.step: the batcher's per-request state is the sampler's own."""
    model = models["tiny-flux"]
    noise = torch.randn(model.family.geometry(1, 8, 8).shape, generator=torch.Generator().manual_seed(0))
    cond = model.family.example_cond(model.family.geometry(1, 8, 8), height=8, width=8,
                                     generator=torch.Generator().manual_seed(1))
    run = Trajectory(model, cond, noise, num_steps=5, policy=make_policy("tcpade-fast"))
    with torch.no_grad():
        while not run.done:
            run.step()
    reference = sample(model, cond, noise, num_steps=5, policy=make_policy("tcpade-fast"))
    assert torch.equal(run.result().latents, reference.latents)


def test_a_request_leaving_while_others_run_with_many_element_conditioning(models):
    """FLUX's conditioning holds multi-element tensors: removing a finished request from the running list once
    compared requests field by field (tensors have no truth value) and killed the batcher's thread."""
    model = models["tiny-flux"]
    geometry = model.family.geometry(1, 8, 8)
    batcher = StepBatcher(model, make_policy, rows_max=4)
    try:
        futures = []
        for seed, steps in ((0, 4), (1, 8), (2, 6)):
            cond = model.family.example_cond(geometry, height=8, width=8, generator=torch.Generator().manual_seed(seed))
            futures.append(batcher.submit(cond, torch.randn(geometry.shape), steps=steps, cache="tcpade-fast"))
        done = [f.result(timeout=60).result for f in futures]
        assert [r.full_steps + r.predicted_steps for r in done] == [4, 8, 6]
        assert batcher._thread.is_alive()
    finally:
        batcher.close()


def test_a_cancelled_request_does_not_stop_the_others(models):
    model = models["tiny-dit"]
    batcher = StepBatcher(model, make_policy, rows_max=8)
    try:
        first = batcher.submit(*inputs(model, 1, 1), steps=8, guidance_scale=4.0)
        second = batcher.submit(*inputs(model, 2, 2), steps=8, guidance_scale=4.0)
        first.cancel()  # a caller that gave up (a client timeout): its outcome is dropped
        assert second.result(timeout=60).result.full_steps >= 2 and batcher._thread.is_alive()
    finally:
        batcher.close()


# The ordering of ticks with the engines' CUDA stream and the callers' streams is tested on the emulated GPU
# (tests/runtime/test_emulated_gpu.py), where a missing wait reads NaN.


def test_the_batcher_runs_the_one_step_and_its_shortcut(models, monkeypatch):
    """The batcher's tick is runtime/step.cached_forward_many, the step the sampler and the hook run: uncached
    requests (no policy keeps a residual) run the block stack alone, not blocks_with_residual (the tick once had
    its own copy of the step, which did not)."""
    model = models["tiny-dit"]
    calls = CountingBlocks(model.parts, monkeypatch)
    batcher = StepBatcher(model, make_policy, rows_max=4)
    try:
        cond, noise = inputs(model, 1, 1)
        futures = [batcher.submit(cond, noise, steps=4, cache="none", guidance_scale=4.0) for _ in range(2)]
        assert [f.result(timeout=60).result.full_steps for f in futures] == [4, 4]
    finally:
        batcher.close()
    assert calls.rows and calls.with_residual == []
