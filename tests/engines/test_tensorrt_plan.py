"""The TensorRT path up to the builder call: per-version choices, profiles, device checks.

The build itself needs TensorRT and an NVIDIA GPU; that test skips with the reason elsewhere.
"""

import sys
import types

import pytest

from tcpade_trt.engines.tensorrt.build import (
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
    from tcpade_trt.engines.tensorrt import plans as trt_plans

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    manifest = read_manifest(fp32_folders["tiny-dit"])
    manifest.versions.update(tensorrt="11.0.0", gpu="NVIDIA H200")
    with pytest.raises(TensorRTError, match="built with TensorRT 11.0.0, this machine has 10.3.0"):
        trt_plans.require_tensorrt_runtime(manifest)
    manifest.versions.update(tensorrt="10.3.0")
    monkeypatch.setattr(trt_plans, "gpu_identity", lambda: {"gpu": "NVIDIA L40S"})
    with pytest.raises(TensorRTError, match="built for NVIDIA H200, this machine has NVIDIA L40S"):
        trt_plans.require_tensorrt_runtime(manifest)


def test_tensorrt_build_on_a_gpu(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it needs NVIDIA's package index and a GPU)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: TensorRT builds plans on the GPU they run on")
    from tcpade_trt.builder import BuildOptions, build_engines
    from tcpade_trt.export.parts import BuildShape

    manifest = build_engines("tiny-dit", tmp_path / "trt", BuildOptions(backend="tensorrt",
                             shape=BuildShape(8, 8, batch_max=4)), progress=False)
    assert manifest.parts["blocks"].file == "blocks.plan"


# -- the builder, against the stand-in for TensorRT (tests/fake_tensorrt.py) --------------------------------
from ..conftest import SHAPES  # noqa: E402
from ..fake_tensorrt import install  # noqa: E402


def test_a_tensorrt_build_checks_every_plan_before_sealing_the_folder(tmp_path, monkeypatch, unfused_flux_folder):
    from tcpade_trt.builder import BuildOptions, build_engines
    from tcpade_trt.engines.manifest import read_manifest

    fake = install(monkeypatch)
    options = BuildOptions(backend="tensorrt", shape=SHAPES["tiny-flux"], reuse_onnx_from=unfused_flux_folder)
    manifest = build_engines("tiny-flux", tmp_path / "trt", options, progress=False)
    assert {p.file for p in manifest.parts.values()} == {f"{n}.plan" for n in manifest.parts}
    assert all(p.check_error is not None and p.check_error <= 1e-2 for p in manifest.parts.values())
    assert manifest.parts["blocks"].extra_files == ["blocks.onnx"]  # the plan's source, hashed with it
    assert read_manifest(tmp_path / "trt").versions["tensorrt"] == fake.__version__
    assert len(fake.built) == len(manifest.parts)


def test_a_plan_that_disagrees_with_torch_stops_the_build(tmp_path, monkeypatch, unfused_flux_folder):
    from tcpade_trt.builder import BuildOptions, build_engines
    from tcpade_trt.engines.tensorrt import plan_check
    from tcpade_trt.export.onnx_export import ExportError

    install(monkeypatch)
    monkeypatch.setitem(plan_check.PLAN_TOLERANCE, "fp32", 0.0)  # any difference at all is too much
    options = BuildOptions(backend="tensorrt", shape=SHAPES["tiny-flux"], reuse_onnx_from=unfused_flux_folder)
    with pytest.raises(ExportError, match="differs from torch by .* more than the 0e\\+00 allowed"):
        build_engines("tiny-flux", tmp_path / "trt", options, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_builder_refusals_are_one_sentence(tmp_path, monkeypatch, fp32_folders, unfused_flux_folder):
    from tcpade_trt.engines.tensorrt.build import BuilderPlan, build_plan_file

    install(monkeypatch)
    plan = BuilderPlan(strongly_typed=True)
    fused = fp32_folders["tiny-flux"] / "blocks.onnx"  # onnxruntime's FastGelu: TensorRT has no importer
    entry_inputs = [{"name": "hidden_states", "shape": ["batch", 16, 32]}]
    with pytest.raises(TensorRTError, match="cannot parse blocks.onnx: it has no importer for FastGelu.*Plugin not "
                                            "found.*rebuild with --no-ort-fusions"):
        build_plan_file(fused, tmp_path / "x.plan", entry_inputs, SHAPES["tiny-flux"].as_dict(), plan)
    head = unfused_flux_folder / "head.onnx"
    from tcpade_trt.engines.manifest import read_manifest

    inputs = read_manifest(unfused_flux_folder).parts["head"].inputs
    shape = {**SHAPES["tiny-flux"].as_dict(), "batch_min": 3, "batch_opt": 2}  # min > opt: no valid profile
    with pytest.raises(TensorRTError, match="refused the optimization profile"):
        build_plan_file(head, tmp_path / "x.plan", inputs, shape, plan)
    stale = tmp_path / "timing.cache"
    stale.write_bytes(b"made by another TensorRT")
    with pytest.raises(TensorRTError, match="refused the timing cache"):
        build_plan_file(head, tmp_path / "x.plan", inputs, SHAPES["tiny-flux"].as_dict(), plan, timing_cache=str(stale))


def test_the_parser_refuses_what_onnx_tensorrt_refuses_and_the_build_says_what_to_build(tmp_path, monkeypatch,
                                                                                         fp32_folders):
    """onnx-tensorrt imports by op type alone and has no importer for onnxruntime's dynamic INT8 form (its explicit
    checkers fail MatMulInteger / DynamicQuantizeLinear); the stand-in's parser holds the same table."""
    from tcpade_trt.builder import BuildOptions, build_engines
    from tcpade_trt.engines.manifest import read_manifest
    from tcpade_trt.engines.tensorrt.build import BuilderPlan, build_plan_file

    fake = install(monkeypatch)
    build_engines("tiny-dit", tmp_path / "int8", BuildOptions(precision="int8", shape=SHAPES["tiny-dit"],
                  reuse_onnx_from=fp32_folders["tiny-dit"]), progress=False)
    inputs = read_manifest(tmp_path / "int8").parts["blocks"].inputs
    with pytest.raises(TensorRTError, match=r"no importer for DynamicQuantizeLinear, FastGelu, MatMulInteger \(In node "
                                            r"\d+ .*UNSUPPORTED_NODE: false\).*--precision int8 \(ModelOpt"):
        build_plan_file(tmp_path / "int8" / "blocks.onnx", tmp_path / "x.plan", inputs, SHAPES["tiny-dit"].as_dict(),
                        BuilderPlan(strongly_typed=True))
    profile = fake.Builder(None).create_optimization_profile()
    with pytest.raises(RuntimeError, match="Shape provided for opt is inconsistent with other shapes"):
        profile.set_shape("x", (1, 4), (2,), (4, 4))  # ranks differ: the real binding raises, not returns
