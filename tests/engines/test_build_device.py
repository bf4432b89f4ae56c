"""Where a build computes (builder/device.py): on a machine with a GPU a TensorRT build loads the model on the GPU
in the dtype of its blocks (bf16 for FP8 / INT8, as NVIDIA's demo/Diffusion), calibrates and exports there, and
exports the cheap parts from an fp32 copy; a build the machine cannot do is refused before the weights load."""

import re

import onnx
import pytest

from tcpade_trt.cli import main
from tcpade_trt.engines.manifest import read_manifest

from ..fake_tensorrt import install
from ..released_models import FIXTURES


def test_a_tensorrt_fp8_build_loads_calibrates_and_exports_on_the_gpu_in_bf16(tmp_path, monkeypatch, capsys):
    install(monkeypatch)  # TensorRT (the stand-in) and an emulated Hopper GPU
    assert main(["build", "tiny-dit", "--backend", "tensorrt", "--precision", "fp8", "--out", str(tmp_path / "e"),
                 "--calibration-samples", "1"]) == 0, capsys.readouterr().err
    manifest = read_manifest(tmp_path / "e")
    assert manifest.options["device"] == "cuda"
    assert manifest.quantization["graph_dtype"] == "bfloat16"  # quantized in bf16, as loaded
    stages = [s["stage"] for s in manifest.build_log]
    assert "export blocks" not in stages  # no fp32 export of the blocks the recipe replaces
    head = onnx.load(str(tmp_path / "e" / "head.onnx"), load_external_data=False)
    assert head.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # cheap parts stay fp32
    assert all(p.check_error is not None for p in manifest.parts.values())  # every plan ran against torch


def released_flux_folder(root, weight_bytes):
    """FLUX.1-dev's released transformer config beside a (sparse) weights file of ``weight_bytes``."""
    folder = root / "FLUX.1-dev"
    folder.mkdir()
    (folder / "config.json").write_bytes((FIXTURES / "FLUX.1-dev" / "transformer" / "config.json").read_bytes())
    with open(folder / "diffusion_pytorch_model.safetensors", "wb") as f:
        f.truncate(weight_bytes)  # no disk used: only its size is read before the refusal
    return folder


@pytest.mark.parametrize("device,message", [
    ("cpu", r"on the CPU would calibrate and export an fp32 copy \(44 GB of host memory.*--device cuda"),
    ("cuda", r"needs about 53 GB of GPU memory; this GPU has 40 GB"),
])
def test_a_build_this_machine_cannot_do_is_refused_before_the_weights_load(device, message, tmp_path, monkeypatch,
                                                                          capsys):
    from tcpade_trt.engines import gpu

    install(monkeypatch)
    monkeypatch.setattr(gpu, "memory_bytes", lambda: 40 << 30)  # an A100-40GB-sized card
    folder = released_flux_folder(tmp_path, 23_800_000_000)  # FLUX.1-dev's transformer in bf16
    code = main(["build", str(folder), "--backend", "tensorrt", "--precision", "fp8", "--device", device,
                 "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "e").exists()
