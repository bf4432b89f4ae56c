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
