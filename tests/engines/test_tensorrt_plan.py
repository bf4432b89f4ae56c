"""The TensorRT path up to the builder call: per-version choices, profiles, device checks.

The build itself needs TensorRT and an NVIDIA GPU; that test skips with the reason elsewhere.
"""

import sys
import types

import pytest

from tcpade_trt.engines.trt_backend import (
    TensorRTError,
    builder_plan,
    check_precision_supported,
    import_tensorrt,
    profile_shapes,
)


def test_tensorrt_11_is_strongly_typed_only():
    plan = builder_plan(11, "int8", graph_carries_precision=True)
    assert plan.strongly_typed and plan.flags == []
    with pytest.raises(TensorRTError, match="only strongly typed"):
        builder_plan(11, "fp16", graph_carries_precision=False)


def test_tensorrt_10_uses_flags_only_for_an_fp32_graph_asked_to_run_lower():
    assert builder_plan(10, "bf16", graph_carries_precision=False).flags == ["BF16"]
    assert not builder_plan(10, "bf16", graph_carries_precision=False).strongly_typed
    q = builder_plan(10, "fp8", graph_carries_precision=True, refittable=True)
    assert q.strongly_typed and q.flags == ["REFIT"]
    with pytest.raises(TensorRTError, match="weight streaming needs a strongly typed"):
        builder_plan(10, "fp16", graph_carries_precision=False, weight_streaming=True)


def test_profiles_put_the_batch_range_on_the_batch_axis():
    inputs = [{"name": "hidden_states", "shape": ["batch", 64, 128]}, {"name": "rope_cos", "shape": [68, 32]}]
    shapes = profile_shapes(inputs, 1, 2, 8)
    assert shapes["hidden_states"] == ((1, 64, 128), (2, 64, 128), (8, 64, 128))
    assert shapes["rope_cos"] == ((68, 32),) * 3


def test_fp8_before_ada_is_refused_with_the_reason():
    with pytest.raises(TensorRTError, match=r"fp8 needs a GPU of compute capability >= 8.9; this one is 8.0"):
        check_precision_supported("fp8", (8, 0))
    check_precision_supported("fp8", (9, 0))  # Hopper: fine
    with pytest.raises(TensorRTError, match="no CUDA GPU"):
        check_precision_supported("bf16", None)


def test_missing_tensorrt_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as if not installed
    with pytest.raises(TensorRTError, match=r"pip install 'tcpade-trt\[gpu\]'"):
        import_tensorrt()


def test_plans_from_another_tensorrt_or_gpu_are_refused(monkeypatch, fp32_folders):
    from tcpade_trt.engines.manifest import read_manifest
    from tcpade_trt.runtime import trt_runtime

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    manifest = read_manifest(fp32_folders["tiny-dit"])
    manifest.versions.update(tensorrt="11.0.0", gpu="NVIDIA H200")
    with pytest.raises(TensorRTError, match="built with TensorRT 11.0.0, this machine has 10.3.0"):
        trt_runtime.require_tensorrt_runtime(manifest)
    manifest.versions.update(tensorrt="10.3.0")
    monkeypatch.setattr(trt_runtime, "gpu_identity", lambda: {"gpu": "NVIDIA L40S"})
    with pytest.raises(TensorRTError, match="built for NVIDIA H200, this machine has NVIDIA L40S"):
        trt_runtime.require_tensorrt_runtime(manifest)


def test_tensorrt_build_on_a_gpu(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it needs NVIDIA's package index and a GPU)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: TensorRT builds plans on the GPU they run on")
    from tcpade_trt.engines.build import BuildOptions, build_engines
    from tcpade_trt.export.parts import BuildShape

    manifest = build_engines("tiny-dit", tmp_path / "trt", BuildOptions(backend="tensorrt",
                             shape=BuildShape(8, 8, batch_max=4)), progress=False)
    assert manifest.parts["blocks"].file == "blocks.plan"
