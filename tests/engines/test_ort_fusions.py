"""onnxruntime folders carry onnxruntime's fused GELU / RMSNorm kernels; TensorRT never sees them."""

from collections import Counter

import onnx
import pytest
import torch

from tcpade_trt.builder import BuildOptions, build_engines
from tcpade_trt.engines.manifest import read_manifest
from tcpade_trt.errors import ConfigError
from tcpade_trt.runtime.runtime import Runtime
from tcpade_trt.runtime.sampler import initial_noise

from ..conftest import SHAPES, make_inputs


def op_counts(folder, part="blocks"):
    return Counter(n.op_type for n in onnx.load(str(folder / f"{part}.onnx")).graph.node)


def test_an_onnxruntime_build_fuses_gelu_and_rmsnorm_and_still_matches_torch(fp32_folders, unfused_flux_folder):
    fused, plain = op_counts(fp32_folders["tiny-flux"]), op_counts(unfused_flux_folder)
    assert fused["FastGelu"] > 0 and fused["SimplifiedLayerNormalization"] > 0
    assert plain["FastGelu"] == 0 and plain["Tanh"] == fused["FastGelu"]  # one FastGelu per tanh-GELU
    assert fused["Pow"] == 0 < plain["Pow"]  # x^3 of the GELUs and x^2 of the RMSNorms, gone
    manifest = read_manifest(fp32_folders["tiny-flux"])
    assert manifest.options["ort_fusions"] is True and manifest.parts["blocks"].check_error < 1e-5
    assert read_manifest(unfused_flux_folder).options["ort_fusions"] is False


def test_fused_and_unfused_folders_give_the_same_latents(fp32_folders, unfused_flux_folder, models):
    model = models["tiny-flux"]
    _, cond = make_inputs(model, 2, 8, 8)
    noise = initial_noise(model, model.family.geometry(2, 8, 8).shape, seed=[1, 2])
    fused = Runtime(fp32_folders["tiny-flux"]).generate(cond, noise, cache="tcpade-fast")
    plain = Runtime(unfused_flux_folder).generate(cond, noise, cache="tcpade-fast")
    assert fused.decisions == plain.decisions
    torch.testing.assert_close(fused.latents, plain.latents, rtol=1e-5, atol=1e-5)


def test_a_tensorrt_build_refuses_to_reuse_fused_graphs(fp32_folders, tmp_path):
    options = BuildOptions(backend="tensorrt", shape=SHAPES["tiny-flux"], reuse_onnx_from=fp32_folders["tiny-flux"])
    with pytest.raises(ConfigError, match="fused ops, which TensorRT cannot parse"):
        build_engines("tiny-flux", tmp_path / "trt", options, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_inspect_says_which_kernels_a_folder_uses(fp32_folders, unfused_flux_folder, capsys):
    from tcpade_trt.cli import main

    assert main(["inspect", str(fp32_folders["tiny-flux"])]) == 0
    assert "fused GELU and RMSNorm" in capsys.readouterr().out
    assert main(["inspect", str(unfused_flux_folder)]) == 0
    assert "fused GELU" not in capsys.readouterr().out
