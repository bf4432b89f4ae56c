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


class TritonStub:
    """The part of Triton's ``triton_python_backend_utils`` the model uses, in this process."""

    class TritonError(Exception):
        INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

        def __init__(self, message, code=None):
            super().__init__(message)
            self.code = code

    class Tensor:
        def __init__(self, name, tensor):
            self.name, self.tensor = name, tensor

        def to_dlpack(self):
            return torch.utils.dlpack.to_dlpack(self.tensor)

        @classmethod
        def from_dlpack(cls, name, capsule):
            return cls(name, torch.from_dlpack(capsule))

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.outputs = {t.name: t.tensor for t in output_tensors}
            self.error = error

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return request.get(name)


def test_the_triton_model_serves_plans(trt, trt_folders, fp32_folders, monkeypatch):
    """TritonPythonModel over a TensorRT folder: a batch of requests, each answered with the image its request
    gets from the onnxruntime folder of the same weights (within one level of 255)."""
    import io
    import json
    import sys

    import numpy as np
    from PIL import Image

    from tcpade_trt.serve.request import GenerateRequest
    from tcpade_trt.serve.triton_model import TritonPythonModel
    from tcpade_trt.serve.worker import Generator

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", TritonStub)
    model = TritonPythonModel()
    model.initialize({"model_config": json.dumps({"parameters": {
        "engines": {"string_value": str(trt_folders["tiny-dit"])}, "max_steps": {"string_value": "12"}}})})
    send = lambda name, value, dtype: TritonStub.Tensor(name, torch.tensor([[value]], dtype=dtype))
    requests = [{"class": send("class", label, torch.int64), "seed": send("seed", 40 + label, torch.int64),
                 "steps": send("steps", 6, torch.int32), "guidance_scale": send("guidance_scale", 4.0, torch.float32)}
                for label in (1, 2, 3)]
    answers = model.execute(requests)
    alone = Generator(fp32_folders["tiny-dit"], device="cpu").generate(
        [GenerateRequest(label, 40 + label, 6, "tcpade-fast", 4.0, "png") for label in (1, 2, 3)])
    for answer, own in zip(answers, alone):
        assert answer.error is None
        got = np.asarray(Image.open(io.BytesIO(bytes(answer.outputs["image"][0].tolist()))), dtype=np.int16)
        want = np.asarray(Image.open(io.BytesIO(own.image)), dtype=np.int16)
        assert np.abs(got - want).max() <= 1


def test_timings_wait_for_the_plans(trt, trt_folders, monkeypatch):
    """TensorRT launches return at once; a clock read before the device is done times the queueing. Each plan
    launch takes 20 ms of the emulated GPU's time (its clock stands in for time.perf_counter): gpu-bench's
    latencies and the sampler's per-step times must include them."""
    import time

    from tcpade_trt.bench.gpu_bench import _time_engines

    trt.launch_seconds = 0.02
    monkeypatch.setattr(time, "perf_counter", trt.gpu.clock)
    before = trt.plan_launches
    rows = _time_engines(trt_folders["tiny-flux"], ("none",), steps=4, repeats=1, progress=lambda _: None)
    per_generation = (trt.plan_launches - before) / 3  # a warm-up, the timed round, the run with per-step times
    assert rows[0]["latency_s"] >= 0.9 * per_generation * trt.launch_seconds
    # a full step launches head, blocks and tail: at least 3 launches' time each
    assert rows[0]["full_step_ms"] >= 0.9 * 3 * 1000 * trt.launch_seconds


def test_a_prompt_on_plans_is_encoded_and_decoded_on_the_gpu(trt, trt_folders, flux_pipeline_folder):
    """With the engines on a GPU the pipeline's text encoders and VAE go there too, in bf16; the latents reach the
    VAE on its device and dtype (they decoded on the host VAE before: "Input type (torch.cuda.FloatTensor) and
    weight type (torch.FloatTensor) should be the same" after the whole generation)."""
    from tcpade_trt.runtime.text_conditioning import PromptEncoder

    runtime = Runtime(trt_folders["tiny-flux"])
    encoder = PromptEncoder(runtime.model, flux_pipeline_folder)
    assert next(encoder.pipe.vae.parameters()).dtype == torch.bfloat16
    assert next(encoder.pipe.text_encoder_2.parameters()).dtype == torch.bfloat16
    cond, _, _ = encoder.encode("a fox")
    assert all(t.dtype == torch.float32 for t in cond.values() if t.is_floating_point())  # as the engines take it
    _, _, noise = inputs("tiny-flux", batch=1)
    pixels = encoder.pixels(runtime.generate(cond, noise, steps=4).latents)
    assert pixels.ndim == 4 and torch.isfinite(pixels.cpu()).all()


def test_latents_go_to_the_vae_wherever_it_is(models):
    """Family.decode moves the latents to the VAE's device and dtype (here a VAE on the meta device: no memory)."""
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        vae = AutoencoderKL(latent_channels=4, block_out_channels=(8,), norm_num_groups=4).to(torch.bfloat16)
    latents = torch.randn(1, 16, 16)  # tiny-flux: 4 packed tokens of 4 x 4 channels per 8x8 latent image
    assert models["tiny-flux"].family.decode(vae, latents, 8, 8).device.type == "meta"


def test_a_runtime_closes_after_its_queued_work_and_releases_its_plans(trt, trt_folders, fp32_folders):
    """``with Runtime(folder)`` releases the plans, their contexts and device memory when the block ends, not when
    the garbage collector runs; work still queued on the GPU finishes first; a closed runtime says so in one
    sentence. onnxruntime folders close the same way."""
    from tcpade_trt.errors import TcpadeError

    trt.launch_seconds = 0.02  # launches take device time: the queue is not empty when generate returns
    _, cond, noise = inputs("tiny-dit")
    with Runtime(trt_folders["tiny-dit"]) as rt:
        rt.generate(cond, noise, cache="tcpade-fast", steps=4, guidance_scale=4.0)
        stream, parts = rt.model.parts.stream, list(rt.model.parts.engines.values())
        assert not stream.query()  # still running on the device
    assert stream.query()  # closing waited for it
    assert rt.closed and all(part.closed and not hasattr(part, "engine") for part in parts)
    with pytest.raises(TcpadeError, match="this Runtime of .* was closed; open the folder again"):
        rt.generate(cond, noise, cache="tcpade-fast", steps=4, guidance_scale=4.0)
    rt.close()  # twice is fine

    with Runtime(fp32_folders["tiny-dit"]) as rt:
        sessions = list(rt.model.parts.engines.values())
    assert all(part.session is None for part in sessions)
