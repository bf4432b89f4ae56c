"""Which onnxruntime execution providers a runtime asks for, and what it says when one is missing."""

import onnxruntime as ort
import pytest

from tcpade_trt.engines.ort_backend import default_providers, provider_chain, resolve_ort_device
from tcpade_trt.engines.trt_backend import profile_shapes
from tcpade_trt.errors import TcpadeError

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_cpu_needs_nothing_and_auto_follows_what_onnxruntime_offers():
    assert provider_chain("cpu") == ["CPUExecutionProvider"]
    assert resolve_ort_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    assert default_providers("cpu") == ["CPUExecutionProvider"]


def test_cuda_shares_the_runtime_stream():
    chain = provider_chain("cuda", stream=0x7F00)
    assert chain == [("CUDAExecutionProvider", {"device_id": "0", "has_user_compute_stream": "1",
                                                "user_compute_stream": str(0x7F00)}), "CPUExecutionProvider"]


def test_tensorrt_gets_the_folder_profile_and_caches_before_cuda_and_cpu(tmp_path):
    inputs = [{"name": "hidden_states", "shape": ["batch", 64, 16]}, {"name": "timestep", "shape": ["batch"]}]
    chain = provider_chain("tensorrt", stream=7, trt_cache=tmp_path, trt_profiles=profile_shapes(inputs, 1, 2, 8))
    (name, options), cuda, cpu = chain
    assert (name, cuda[0], cpu) == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    assert options["trt_profile_min_shapes"] == "hidden_states:1x64x16,timestep:1"
    assert options["trt_profile_opt_shapes"] == "hidden_states:2x64x16,timestep:2"
    assert options["trt_profile_max_shapes"] == "hidden_states:8x64x16,timestep:8"
    assert options["trt_engine_cache_path"] == str(tmp_path) and options["user_compute_stream"] == "7"


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA execution provider")
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_asking_for_a_gpu_provider_that_is_missing_is_one_sentence(device):
    with pytest.raises(TcpadeError, match=rf"device '{device}' needs onnxruntime-gpu .* this onnxruntime offers only"):
        resolve_ort_device(device)


def test_an_unknown_device_is_named():
    with pytest.raises(TcpadeError, match="unknown onnxruntime device 'tpu'; choose auto, cpu, cuda, tensorrt"):
        resolve_ort_device("tpu")


def test_the_tensorrt_provider_caches_in_the_folder_or_beside_a_read_only_one(fp32_folders, monkeypatch):
    import os

    from tcpade_trt.runtime.engine_model import EngineModel

    model = EngineModel(fp32_folders["tiny-dit"], device="cpu")
    assert model._ort_tensorrt_cache() == fp32_folders["tiny-dit"] / "ort-tensorrt-cache"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only deployment
    elsewhere = model._ort_tensorrt_cache()
    assert elsewhere.parent.name == "tcpade-trt-ort-tensorrt"
    assert elsewhere.name == model.manifest.parts["blocks"].sha256[:16]


def test_a_fused_folder_on_the_tensorrt_provider_gets_advice(tmp_path):
    from tcpade_trt.runtime.engine_model import fusion_advice

    assert "rebuild with --no-ort-fusions" in fusion_advice({"ort_fusions": True}, "tensorrt", tmp_path)
    assert fusion_advice({"ort_fusions": True}, "cuda", tmp_path) is None  # CUDA has the fused kernels
    assert fusion_advice({"ort_fusions": False}, "tensorrt", tmp_path) is None
