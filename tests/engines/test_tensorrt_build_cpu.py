"""The tensorrt backend's build on a CPU machine: everything up to TensorRT's builder call.

The quantization recipe (ModelOpt) and the bf16 export run here; ``build_plans`` is where TensorRT
takes over, so these tests stop there and look at what it would have been given.
"""

from collections import Counter

import onnx
import pytest

from tcpade_trt.builder import BuildOptions, build_engines
from tcpade_trt.engines import trt_backend
from tcpade_trt.engines.trt_backend import TensorRTError

from ..conftest import SHAPES


class HandedToTensorRT(Exception):
    pass


@pytest.fixture
def capture_plans(monkeypatch):
    """Replace the TensorRT builder call by one that records the ONNX files it was handed (and the
    check for TensorRT and a GPU, which this machine has not, by a pass)."""
    seen = {}
    monkeypatch.setattr(trt_backend, "check_build_machine", lambda precision: None)

    def fake_build_plans(folder, entries, options):
        seen["ops"] = Counter(n.op_type for n in onnx.load(str(folder / entries["blocks"].file)).graph.node)
        graph = onnx.load(str(folder / "blocks.onnx")).graph
        seen["inputs"] = {i.name: i.type.tensor_type.elem_type for i in graph.input}
        seen["entry"] = entries["blocks"]
        raise HandedToTensorRT

    monkeypatch.setattr(trt_backend, "build_plans", fake_build_plans)
    return seen


@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_modelopt_recipe_quantizes_the_blocks_for_tensorrt(tmp_path, unfused_flux_folder, capture_plans, precision):
    pytest.importorskip("modelopt.torch.quantization", reason="nvidia-modelopt is not installed")
    options = BuildOptions(backend="tensorrt", precision=precision, shape=SHAPES["tiny-flux"], calibration_samples=2,
                           calibration_steps=6, reuse_onnx_from=unfused_flux_folder)
    with pytest.raises(HandedToTensorRT):
        build_engines("tiny-flux", tmp_path / "trt", options, progress=False)
    assert capture_plans["ops"]["QuantizeLinear"] > 10  # every MatMul input quantized, standard Q/DQ ...
    assert not {"TRT_FP8QuantizeLinear", "FastGelu"} & set(capture_plans["ops"])  # ... no custom or onnxruntime ops
    assert capture_plans["entry"].precision == precision
    assert capture_plans["entry"].check_error < (0.1 if precision == "int8" else 0.2)  # onnxruntime ran it
    assert list(tmp_path.iterdir()) == []  # and the interrupted build left nothing


def test_bf16_blocks_are_exported_in_bf16_for_a_strongly_typed_build(tmp_path, capture_plans):
    with pytest.raises(HandedToTensorRT):
        build_engines("tiny-dit", tmp_path / "trt", BuildOptions(backend="tensorrt", precision="bf16",
                      shape=SHAPES["tiny-dit"]), progress=False)
    assert capture_plans["inputs"]["hidden_states"] == onnx.TensorProto.BFLOAT16
    assert capture_plans["entry"].precision == "bf16"


def test_without_tensorrt_the_build_stops_with_a_sentence(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(TensorRTError, match="needs TensorRT"):
        build_engines("tiny-dit", tmp_path / "trt", BuildOptions(backend="tensorrt", shape=SHAPES["tiny-dit"]),
                      progress=False)
    assert list(tmp_path.iterdir()) == []


def test_smoothquant_runs_with_alpha_0_8_not_modelopts_default():
    """ModelOpt names the algorithm by a string (alpha 1.0); only a dict carries alpha to the calibration."""
    mtq = pytest.importorskip("modelopt.torch.quantization", reason="nvidia-modelopt is not installed")
    import torch

    from tcpade_trt.engines.modelopt_quant import recipe_config

    config = recipe_config("int8")
    assert config["algorithm"] == {"method": "smoothquant", "alpha": 0.8}
    batches = [torch.randn(4, 16) * torch.linspace(0.1, 10, 16) for _ in range(4)]  # outlier channels

    def smoothing(alpha):
        torch.manual_seed(1)
        layer = torch.nn.Sequential(torch.nn.Linear(16, 16))
        cfg = recipe_config("int8")
        cfg["algorithm"]["alpha"] = alpha
        mtq.quantize(layer, cfg, forward_loop=lambda m: [m(b) for b in batches])
        return layer[0].input_quantizer.pre_quant_scale.clone()

    assert not torch.allclose(smoothing(0.8), smoothing(1.0))


def test_a_modelopt_without_the_list_form_config_is_refused_before_the_build(tmp_path, monkeypatch):
    """ModelOpt reads the recipes' list-form quant_cfg from 0.44 on; 0.43 and older fail inside mtq.quantize
    with a pydantic error after the export ("Input should be a valid dictionary")."""
    modelopt = pytest.importorskip("modelopt", reason="nvidia-modelopt is not installed")
    from tcpade_trt.errors import TcpadeError

    monkeypatch.setattr(modelopt, "__version__", "0.40.0")
    with pytest.raises(TcpadeError, match=r"nvidia-modelopt 0.40.0 is too old .*>= 0.44.*pip install -U"):
        build_engines("tiny-dit", tmp_path / "fp8", BuildOptions(precision="fp8", shape=SHAPES["tiny-dit"]),
                      progress=False)
    assert list(tmp_path.iterdir()) == []
