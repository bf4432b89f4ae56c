"""The GPU path end to end on the emulated GPU (tests/emulated_cuda.py) and the TensorRT stand-in
(tests/fake_tensorrt.py): TensorRT plans launched on their stream, torch ops on the current stream, the host
reading results. A read of device memory that is not ordered after its write is NaN and a recorded race
(the autouse check in conftest fails the test), so these tests fail the way a real GPU fails."""

import pytest
import torch

from tcpade_trt.runtime.runtime import Runtime

from ..fake_tensorrt import install
from .test_engine_runtime import inputs, rel

# (model, guidance): tiny-flux takes embedded guidance, tiny-dit classifier-free guidance (two rows per sample)
CASES = [("tiny-flux", None), ("tiny-dit", 4.0)]


@pytest.fixture
def trt(monkeypatch):
    return install(monkeypatch)


def on_device(trt, x):
    """Host tensors (a dict of them) copied to the emulated GPU on the current stream, as a caller's would be."""
    if isinstance(x, dict):
        return {k: on_device(trt, v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(on_device(trt, v) for v in x)
    return trt.device.copy(x) if isinstance(x, torch.Tensor) else x


def onnxruntime_folder(name, fp32_folders, unfused_flux_folder):
    return unfused_flux_folder if name == "tiny-flux" else fp32_folders[name]


@pytest.mark.parametrize("cuda_graphs", [False, True], ids=["launches", "cuda-graphs"])
@pytest.mark.parametrize("name,guidance", CASES)
def test_generating_on_plans_gives_onnxruntimes_latents(trt, trt_folders, fp32_folders, unfused_flux_folder, name,
                                                       guidance, cuda_graphs):
    _, cond, noise = inputs(name)
    for cache in ("none", "tcpade-fast"):
        expected = Runtime(onnxruntime_folder(name, fp32_folders, unfused_flux_folder)).generate(
            cond, noise, cache=cache, steps=8, guidance_scale=guidance)
        # the caller's inputs in device memory, written on its (default) stream: the engines' stream must wait
        got = Runtime(trt_folders[name], cuda_graphs=cuda_graphs).generate(
            on_device(trt, cond), on_device(trt, noise), cache=cache, steps=8, guidance_scale=guidance)
        assert got.full_steps == expected.full_steps
        assert rel(got.latents.cpu(), expected.latents) <= 1e-4
    assert trt.gpu.launches > 0


def test_step_batching_on_plans_gives_every_request_its_solo_latents(trt, trt_folders):
    """Requests submitted from the callers' threads with their noise in device memory; the batcher's thread
    runs ticks on the plans' stream; the callers read the latents on their streams."""
    from tcpade_trt.runtime.step_batching import StepBatcher

    from .test_step_batching import REQUESTS
    from .test_step_batching import inputs as request_inputs

    runtime = Runtime(trt_folders["tiny-dit"])
    model = runtime.model
    expected = [runtime.generate(*request_inputs(model, label, seed), cache=cache, steps=steps, guidance_scale=4.0)
                for label, seed, steps, cache in REQUESTS]
    batcher = StepBatcher(model, runtime.make_policy, rows_max=4)
    try:
        futures = [batcher.submit(*on_device(trt, request_inputs(model, label, seed)), steps=steps, cache=cache,
                                  guidance_scale=4.0) for label, seed, steps, cache in REQUESTS]
        results = [f.result(timeout=120).result for f in futures]
    finally:
        batcher.close()
    for got, want in zip(results, expected):
        assert got.decisions == want.decisions
        assert rel(got.latents.cpu(), want.latents.cpu()) <= 1e-4


def test_step_batching_orders_callers_on_their_own_streams(trt, trt_folders):
    """A caller that queued its noise on a stream of its own: the batcher waits for it (an event recorded at
    submit), and the caller reads the result on its stream after waiting for the result's event."""
    from tcpade_trt.runtime.step_batching import StepBatcher

    from .test_step_batching import inputs as request_inputs

    runtime = Runtime(trt_folders["tiny-dit"])
    model = runtime.model
    expected = runtime.generate(*request_inputs(model, 3, 7), cache="tcpade-fast", steps=6, guidance_scale=4.0)
    batcher = StepBatcher(model, runtime.make_policy, rows_max=4)
    try:
        with torch.cuda.stream(torch.cuda.Stream()):
            future = batcher.submit(*on_device(trt, request_inputs(model, 3, 7)), steps=6, cache="tcpade-fast",
                                    guidance_scale=4.0)
            done = future.result(timeout=120)
            done.wait_ready()
            latents = done.result.latents.cpu()
    finally:
        batcher.close()
    assert rel(latents, expected.latents.cpu()) <= 1e-4
