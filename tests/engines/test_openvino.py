"""The OpenVINO backend (engines/openvino/): a folder built, checked and run from its own folder of the package,
next to onnxruntime on the same model and seed."""

import pytest
import torch

from tcpade_trt.builder import BuildOptions, TensorRTOptions, build_engines
from tcpade_trt.errors import ConfigError, TcpadeError
from tcpade_trt.runtime.runtime import Runtime

from ..conftest import SHAPES, make_inputs

openvino = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'tcpade-trt[openvino]')")


@pytest.fixture(scope="module")
def openvino_folders(tmp_path_factory):
    """tiny-flux and tiny-dit as OpenVINO fp32 folders."""
    root = tmp_path_factory.mktemp("openvino")
    for name in ("tiny-flux", "tiny-dit"):
        build_engines(name, root / name, BuildOptions(backend="openvino", shape=SHAPES[name]), progress=False)
    return {name: root / name for name in ("tiny-flux", "tiny-dit")}


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-dit"])
def test_an_openvino_folder_generates_what_the_onnxruntime_folder_does(openvino_folders, fp32_folders, models, name):
    latents, cond = make_inputs(models[name], 2, 8, 8)
    with Runtime(openvino_folders[name]) as ov_runtime, Runtime(fp32_folders[name]) as ort_runtime:
        assert ov_runtime.manifest.backend == "openvino" and ov_runtime.manifest.versions["openvino"]
        for cache in ("none", "tcpade-fast"):
            got = ov_runtime.generate(cond, latents, cache=cache, steps=8).latents
            expected = ort_runtime.generate(cond, latents, cache=cache, steps=8).latents
            assert torch.isfinite(got).all()
            assert ((got - expected).norm() / expected.norm()) < 1e-4, cache


def test_every_part_is_checked_against_torch_when_built(openvino_folders):
    from tcpade_trt.engines.manifest import read_manifest

    manifest = read_manifest(openvino_folders["tiny-flux"])
    assert all(entry.check_error is not None and entry.check_error < 1e-3 for entry in manifest.parts.values())
    assert not manifest.options.get("ort_fusions")  # standard ops only: OpenVINO cannot read onnxruntime's fused ones


def test_a_closed_openvino_runtime_says_so(openvino_folders, models):
    latents, cond = make_inputs(models["tiny-dit"], 1, 8, 8)
    runtime = Runtime(openvino_folders["tiny-dit"])
    runtime.close()
    with pytest.raises(TcpadeError, match="closed"):
        runtime.generate(cond, latents, steps=4)


def test_bf16_is_refused_where_the_cpu_has_no_bf16_kernels(tmp_path, monkeypatch):
    """OpenVINO compiles bf16 as f32 without a word on such a CPU; the build says so instead, before any export."""
    from tcpade_trt.engines.openvino import runner

    monkeypatch.setattr(runner, "cpu_capabilities", lambda: {"FP32", "INT8"})
    with pytest.raises(TcpadeError, match="no bf16 kernels"):
        build_engines("tiny-dit", tmp_path / "bf16", BuildOptions(backend="openvino", precision="bf16",
                                                                  shape=SHAPES["tiny-dit"]), progress=False)
    assert not (tmp_path / "bf16").exists()


@pytest.mark.skipif("BF16" not in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
                    reason="this CPU has no bf16 kernels (AVX512-BF16 or AMX)")
def test_a_bf16_folder_runs_its_blocks_in_bf16(tmp_path, models):
    from tcpade_trt.engines.manifest import read_manifest

    folder = tmp_path / "bf16"
    build_engines("tiny-dit", folder, BuildOptions(backend="openvino", precision="bf16", shape=SHAPES["tiny-dit"]),
                  progress=False)
    manifest = read_manifest(folder)
    assert manifest.parts["blocks"].precision == "bf16" and manifest.parts["head"].precision == "fp32"
    latents, cond = make_inputs(models["tiny-dit"], 1, 8, 8)
    with Runtime(folder) as runtime:
        assert torch.isfinite(runtime.generate(cond, latents, steps=4).latents).all()


@pytest.mark.parametrize("options, message", [
    (BuildOptions(backend="openvino", precision="int8"), "builds fp32, bf16"),
    (BuildOptions(backend="openvino", tensorrt=TensorRTOptions(refittable=True)), "--refittable"),
    (BuildOptions(backend="openvino", device="cuda"), "TensorRT builds"),
])
def test_what_openvino_does_not_do_is_refused_in_one_sentence(options, message):
    with pytest.raises(ConfigError, match=message):
        options.validate()


def test_tensorrt_options_on_an_openvino_folder_are_refused(openvino_folders):
    with pytest.raises(ConfigError, match="CUDA graphs"):
        Runtime(openvino_folders["tiny-dit"], cuda_graphs=True)
    with pytest.raises(ConfigError, match="runs on auto, cpu"):
        Runtime(openvino_folders["tiny-dit"], device="cuda")


def test_a_fused_onnxruntime_export_is_not_reused_for_openvino(fp32_folders, tmp_path):
    options = BuildOptions(backend="openvino", shape=SHAPES["tiny-flux"], reuse_onnx_from=fp32_folders["tiny-flux"])
    with pytest.raises(ConfigError, match="OpenVINO cannot parse"):
        options.validate()


def test_an_unfused_export_is_reused(unfused_flux_folder, tmp_path, models):
    folder = tmp_path / "reused"
    build_engines("tiny-flux", folder, BuildOptions(backend="openvino", shape=SHAPES["tiny-flux"],
                                                    reuse_onnx_from=unfused_flux_folder), progress=False)
    latents, cond = make_inputs(models["tiny-flux"], 1, 8, 8)
    with Runtime(folder) as runtime:
        assert torch.isfinite(runtime.generate(cond, latents, steps=4).latents).all()
