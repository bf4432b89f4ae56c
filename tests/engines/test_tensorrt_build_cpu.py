"""The tensorrt backend's build on a CPU machine without TensorRT, and ModelOpt's recipes themselves. The builds
through the TensorRT stand-in (every family and precision) are in test_build_matrix.py."""

import pytest

from tcpade_trt.builder import BuildOptions, build_engines
from tcpade_trt.engines.tensorrt.build import TensorRTError

from ..conftest import SHAPES


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


def test_the_cost_measurement_feeds_each_input_in_the_models_own_dtype():
    """A bf16 FLUX takes its RoPE tables in float32 (as its graph does): the measurement of what the recipe costs
    feeds them so, not cast to bf16 like the hidden states."""
    import numpy as np
    import torch

    from tcpade_trt.engines.modelopt_quant import _module_tensor, input_dtypes
    from tcpade_trt.export.parts import PartModule, example_tensors
    from tcpade_trt.models.registry import load_model

    model = load_model("tiny-flux", dtype=torch.bfloat16)
    module = PartModule(model, "blocks")
    dtypes = input_dtypes(module, example_tensors(model, SHAPES["tiny-flux"], batch=1))
    assert dtypes["hidden_states"] == torch.bfloat16 and dtypes["rope_cos"] == torch.float32
    table = np.ones((4, 2), np.float32)
    assert _module_tensor(module, table, dtypes["rope_cos"]).dtype == torch.float32
    assert _module_tensor(module, table).dtype == torch.bfloat16  # no example: the module's dtype


def test_a_costly_recipe_builds_with_a_warning_and_inspect_shows_its_cost(tmp_path, monkeypatch, capsys):
    from tcpade_trt.cli import build as build_cli
    from tcpade_trt.cli import main

    from ..fake_tensorrt import install

    install(monkeypatch)
    monkeypatch.setattr(build_cli, "COSTLY_QUANTIZATION", 0.0)  # any cost at all warns
    out = tmp_path / "trt"
    assert main(["build", "tiny-dit", "--out", str(out), "--backend", "tensorrt", "--precision", "int8",
                 "--height", "8", "--width", "8", "--batch-max", "2", "--calibration-steps", "3"]) == 0
    assert "warning: the int8 recipe changes the blocks' output by" in capsys.readouterr().err
    assert main(["inspect", str(out)]) == 0
    assert "its cost" in capsys.readouterr().out
