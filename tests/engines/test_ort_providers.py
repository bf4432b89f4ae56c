"""Which onnxruntime execution providers a runtime asks for, and what it says when one is missing."""

import onnxruntime as ort
import pytest

from tcpade_trt.engines.onnxruntime.sessions import default_providers, provider_chain, resolve_ort_device
from tcpade_trt.engines.tensorrt.build import profile_shapes
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

    from tcpade_trt.engines.manifest import read_manifest
    from tcpade_trt.engines.onnxruntime.open import ort_tensorrt_cache

    folder = fp32_folders["tiny-dit"]
    manifest = read_manifest(folder)
    assert ort_tensorrt_cache(folder, manifest) == folder / "ort-tensorrt-cache"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only deployment
    elsewhere = ort_tensorrt_cache(folder, manifest)
    assert elsewhere.parent.name == "tcpade-trt-ort-tensorrt"
    assert elsewhere.name == manifest.parts["blocks"].sha256[:16]


def test_a_fused_folder_on_the_tensorrt_provider_gets_advice(tmp_path):
    from tcpade_trt.engines.onnxruntime.open import fusion_advice

    assert "rebuild with --no-ort-fusions" in fusion_advice({"ort_fusions": True}, "tensorrt", tmp_path)
    assert fusion_advice({"ort_fusions": True}, "cuda", tmp_path) is None  # CUDA has the fused kernels
    assert fusion_advice({"ort_fusions": False}, "tensorrt", tmp_path) is None


def test_a_gpu_provider_that_fails_to_load_is_refused_not_run_on_the_cpu(fp32_folders, monkeypatch):
    """onnxruntime prints and falls back to the CPU when CUDA's libraries do not load; the runtime would
    then bind device pointers to a CPU session."""
    from tcpade_trt.engines.onnxruntime import sessions as ort_backend

    real = ort.InferenceSession

    def falls_back(path, sess_options=None, providers=None):
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", falls_back)
    chain = provider_chain("cuda", stream=7)
    with pytest.raises(TcpadeError, match="asked for CUDAExecutionProvider .* but loaded only CPUExecutionProvider"):
        ort_backend.create_session(fp32_folders["tiny-dit"] / "head.onnx", chain)
    ort_backend.create_session(fp32_folders["tiny-dit"] / "head.onnx", ["CPUExecutionProvider"])  # asked, got


def test_versions_older_than_the_floors_are_refused_with_the_reason(monkeypatch):
    import sys
    import types

    import torch

    from tcpade_trt.engines.tensorrt.build import TensorRTError, import_tensorrt
    from tcpade_trt.versions import require_onnxruntime_for_gpu, require_torch_for_export

    monkeypatch.setattr(torch, "__version__", "2.4.1+cu121")
    with pytest.raises(TcpadeError, match=r"torch 2.4.1\+cu121 is too old for the ONNX export.*>= 2.5"):
        require_torch_for_export()
    monkeypatch.setattr(ort, "__version__", "1.20.1")
    with pytest.raises(TcpadeError, match=r"onnxruntime-gpu 1.20.1 is too old for GPU I/O binding.*>= 1.21"):
        require_onnxruntime_for_gpu()
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.0.1.6"))
    with pytest.raises(TensorRTError, match=r"TensorRT 10.0.1.6 is too old.*>= 10.1"):
        import_tensorrt()


def test_a_dynamic_int8_folder_is_refused_on_a_gpu_and_auto_runs_it_on_the_cpu(fp32_folders, tmp_path, monkeypatch):
    """onnxruntime's CUDA provider has no DynamicQuantizeLinear and runs MatMulInteger only with scalar zero
    points; TensorRT runs neither: every quantized linear of the dynamic INT8 form would run on the CPU."""
    import warnings

    from tcpade_trt.builder import BuildOptions, build_engines
    from tcpade_trt.engines.onnxruntime import sessions as ort_backend
    from tcpade_trt.runtime.engine_parts import open_engines

    from ..conftest import SHAPES

    folder = tmp_path / "int8"
    build_engines("tiny-dit", folder, BuildOptions(precision="int8", shape=SHAPES["tiny-dit"],
                                                   reuse_onnx_from=fp32_folders["tiny-dit"]), progress=False)
    monkeypatch.setattr(ort_backend, "available_providers",  # onnxruntime-gpu on a GPU machine
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    for device in ("cuda", "tensorrt"):
        with pytest.raises(TcpadeError, match="dynamic INT8 .* --backend tensorrt --precision int8 .* --device cpu"):
            open_engines(folder, device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = open_engines(folder, device="auto")  # the GPU cannot run it: the CPU does, and says so
    assert model.device.type == "cpu" and any("GPUs do not run" in str(w.message) for w in caught)
