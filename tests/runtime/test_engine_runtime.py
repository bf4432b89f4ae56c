"""The engine runtime against the torch reference, and how it behaves when things go wrong."""

import threading

import pytest
import torch

from tcpade_trt.cache import cache_config
from tcpade_trt.errors import ShapeError, TcpadeError
from tcpade_trt.models import tiny_model
from tcpade_trt.runtime.engine_parts import EngineError
from tcpade_trt.runtime.hooks import apply_cache
from tcpade_trt.runtime.runtime import Runtime
from tcpade_trt.runtime.sampler import initial_noise, sample

from ..conftest import SHAPES, make_inputs

CASES = [("tiny-flux", None), ("tiny-wan", 5.0), ("tiny-dit", 4.0), ("tiny-sd3", 7.0)]


def inputs(name, batch=2, seed=0):
    model = tiny_model(name)
    s = SHAPES[name]
    _, cond = make_inputs(model, batch, s.height, s.width, s.frames, seed=seed)
    noise = initial_noise(model, model.family.geometry(batch, s.height, s.width, s.frames).shape,
                          [seed + i for i in range(batch)])
    return model, cond, noise


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name,guidance", CASES)
def test_onnxruntime_fp32_uncached_matches_the_torch_reference(fp32_folders, name, guidance):
    model, cond, noise = inputs(name)
    ref = sample(model, cond, noise, num_steps=20, guidance_scale=guidance, unsplit=True)
    got = Runtime(fp32_folders[name]).generate(cond, noise, cache="none", steps=20, guidance_scale=guidance)
    assert rel(got.latents, ref.latents) <= 1e-4


@pytest.mark.parametrize("name,guidance", CASES)
def test_tcpade_on_engines_takes_the_eager_paths_decisions(fp32_folders, name, guidance):
    model, cond, noise = inputs(name)
    handle = apply_cache(model.transformer, cache_config("tcpade-fast"), num_steps=20)
    try:
        eager = sample(model, cond, noise, num_steps=20, guidance_scale=guidance, unsplit=True)
    finally:
        handle.remove()
    got = Runtime(fp32_folders[name]).generate(cond, noise, cache="tcpade-fast", steps=20, guidance_scale=guidance)
    assert got.decisions == handle.stats()["decisions"]
    assert rel(got.latents, eager.latents) <= 1e-3


def test_outside_the_built_profile_is_one_sentence(fp32_folders):
    rt = Runtime(fp32_folders["tiny-dit"])
    model, cond, noise = inputs("tiny-dit", batch=3)
    with pytest.raises(ShapeError, match="batch of 6 rows is outside the engines' profile"):
        rt.generate(cond, noise, guidance_scale=4.0)  # CFG doubles 3 rows to 6 > 4
    model, cond, noise = inputs("tiny-dit", batch=1)
    with pytest.raises(ShapeError, match=r"built for latents of shape \[1, 4, 8, 8\]"):
        rt.generate(cond, torch.randn(1, 4, 16, 16))


def test_concurrent_use_is_refused_clearly(fp32_folders):
    rt = Runtime(fp32_folders["tiny-dit"])
    model, cond, noise = inputs("tiny-dit", batch=1)
    holding, done = threading.Event(), threading.Event()

    def another_generation():  # another thread mid-generation holds the runtime
        with rt._lock:
            holding.set()
            done.wait(60)

    thread = threading.Thread(target=another_generation, daemon=True)
    thread.start()
    assert holding.wait(60)
    try:
        with pytest.raises(TcpadeError, match="one request at a time"):
            rt.generate(cond, noise)
    finally:
        done.set()
        thread.join(60)


class FailsOnce:
    """A session that raises on its ``fail_at``-th call, then behaves."""

    def __init__(self, session, fail_at):
        self.session, self.calls, self.fail_at = session, 0, fail_at

    def run(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.session.run(*args, **kwargs)


def test_an_engine_failing_mid_run_raises_one_error_and_the_runtime_serves_the_next(fp32_folders):
    rt = Runtime(fp32_folders["tiny-flux"])
    model, cond, noise = inputs("tiny-flux", batch=1)
    expected = rt.generate(cond, noise, cache="tcpade-fast")
    blocks = rt.model.parts.engines["blocks"]
    blocks.session = FailsOnce(blocks.session, fail_at=3)
    with pytest.raises(EngineError, match="the blocks engine failed"):
        rt.generate(cond, noise, cache="tcpade-fast")
    again = rt.generate(cond, noise, cache="tcpade-fast")
    assert torch.equal(again.latents, expected.latents)


def test_a_non_finite_padé_prediction_becomes_a_full_step(fp32_folders):
    rt = Runtime(fp32_folders["tiny-dit"])
    model, cond, noise = inputs("tiny-dit", batch=1)
    nan_pade = rt.model.parts.pade("rational")  # the real fit engine fed one NaN (not first: ReduceMax's blind spot)
    fit = nan_pade.fit

    def poisoned_fit(r1, *rest):
        r1 = r1.clone()
        r1[0, 1, 2] = float("nan")
        return fit(r1, *rest)
    nan_pade.fit = poisoned_fit
    rt.model.parts.pade = lambda variant: nan_pade
    got = rt.generate(cond, noise, cache="tcpade-fast")
    assert got.decisions == [True] * 20 and torch.isfinite(got.latents).all()
    ref = rt.generate(cond, noise, cache="none")
    assert torch.equal(got.latents, ref.latents)


def test_the_runtime_accounts_for_time_inside_and_outside_the_engines(fp32_folders):
    rt = Runtime(fp32_folders["tiny-dit"])
    model, cond, noise = inputs("tiny-dit", batch=1)
    rt.generate(cond, noise, cache="tcpade-fast")
    t = rt.last_timing
    assert 0 < t["engines_s"] < t["total_s"]


@pytest.mark.parametrize("name,guidance", [("tiny-flux", None), ("tiny-wan", 5.0)])
def test_io_binding_gives_the_same_latents_as_numpy_feeds(fp32_folders, name, guidance):
    """The GPU path's I/O binding (device pointers in, DLPack out), exercised on CPU."""
    _, cond, noise = inputs(name)
    bound = Runtime(fp32_folders[name], device="cpu", io_binding=True)
    assert all(part.io_binding for part in bound.model.parts.engines.values())
    got = bound.generate(cond, noise, cache="tcpade-fast", guidance_scale=guidance)
    expected = Runtime(fp32_folders[name], device="cpu").generate(cond, noise, cache="tcpade-fast",
                                                                  guidance_scale=guidance)
    assert got.decisions == expected.decisions
    assert torch.equal(got.latents, expected.latents)


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-wan", "tiny-dit"])
def test_the_blocks_engine_returns_the_residual_the_cache_needs(fp32_folders, name):
    """Full steps do no arithmetic of their own: the engine's residual is its x_out minus x_in, and
    a policy that never predicts (cache 'none') asks the engine for x_out alone."""
    rt = Runtime(fp32_folders[name])
    model, cond, noise = inputs(name, batch=2)
    m = rt.model
    prepared = m.parts.prepare(noise, cond)
    timesteps = m.family.make_scheduler(20, m.geometry_for(2)).timesteps
    step = m.parts.head(noise, m.family.model_timestep(timesteps, 2)[5], prepared)
    x_out, residual = m.parts.blocks_with_residual(step)
    torch.testing.assert_close(residual, x_out - step["hidden_states"], rtol=1e-6, atol=1e-6)
    calls = []
    blocks = m.parts.engines["blocks"]
    m.parts.engines["blocks"] = lambda named, outputs=None: calls.append(outputs) or blocks(named, outputs)
    rt.generate(cond, noise, cache="none", steps=3)
    assert calls == [("x_out",)] * 3


def test_a_folder_built_with_other_versions_loads_with_a_warning(fp32_folders, tmp_path):
    import json
    import shutil

    folder = tmp_path / "older"
    shutil.copytree(fp32_folders["tiny-dit"], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["versions"].update(onnxruntime="1.20.0", tcpade_trt="0.0.9")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="tcpade-trt .* here, 0.0.9 at build; onnxruntime .* here, 1.20.0 at build"):
        Runtime(folder)


def test_the_scheduler_lives_where_the_engines_tensors_do(fp32_folders, monkeypatch):
    """On a GPU the timestep of every step must already be on the device: a host tensor would be copied to
    it per engine call (onnxruntime) or bound as a host pointer (TensorRT). The 'meta' device stands in
    for a GPU here."""
    from tcpade_trt.engines import onnxruntime as ort_backend
    from tcpade_trt.engines.backend import Opened
    from tcpade_trt.runtime import engine_parts

    def open_on_a_gpu(folder, manifest, request):  # what opening a folder on a GPU decides
        return Opened({}, torch.device("meta"))

    monkeypatch.setattr(ort_backend.BACKEND, "open", open_on_a_gpu)
    model = engine_parts.open_engines(fp32_folders["tiny-flux"], device="cpu")
    scheduler = model.family.make_scheduler(20, model.geometry_for(1))
    assert scheduler.timesteps.device.type == "meta"
    assert model.family.model_timestep(scheduler.timesteps, 2).device.type == "meta"


def test_closing_from_a_step_callback_stops_the_generation_with_a_sentence(fp32_folders):
    """close() called inside generate (from on_step, same thread) must not wait for itself; the generation then
    stops at its next engine call, saying the engines were closed."""
    _, cond, noise = inputs("tiny-dit")
    rt = Runtime(fp32_folders["tiny-dit"])
    outcome = {}

    def generate():
        try:
            rt.generate(cond, noise, cache="none", steps=4, guidance_scale=4.0,
                        on_step=lambda step, *_: rt.close() if step == 0 else None)
        except (EngineError, TcpadeError) as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=generate, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "close() from on_step deadlocked"
    assert "was closed" in outcome["error"] and rt.closed


def test_tensorrt_only_options_on_an_onnxruntime_folder_are_refused(fp32_folders):
    """CUDA graphs and a weight-streaming budget replay / stream TensorRT plans; asked of an onnxruntime folder they
    are one sentence, not silently ignored."""
    from tcpade_trt.errors import ConfigError

    with pytest.raises(ConfigError, match="CUDA graphs replay TensorRT plans"):
        Runtime(fp32_folders["tiny-dit"], cuda_graphs=True)
    with pytest.raises(ConfigError, match="weight-streaming budget is for TensorRT plans"):
        Runtime(fp32_folders["tiny-dit"], weight_streaming_budget="50%")


def test_a_manifest_naming_an_unknown_backend_is_refused(fp32_folders, tmp_path):
    import json
    import shutil

    from tcpade_trt.errors import TcpadeError

    folder = tmp_path / "edited"
    shutil.copytree(fp32_folders["tiny-dit"], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["backend"] = "bogus"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TcpadeError, match="names backend 'bogus'"):
        Runtime(folder)
