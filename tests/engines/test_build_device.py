"""Where a build computes (builder/device.py): on a machine with a GPU a TensorRT build loads the model on the GPU
in the dtype of its blocks (bf16 for FP8 / INT8, as NVIDIA's demo/Diffusion), calibrates and exports there, and
exports the cheap parts from an fp32 copy; a build the machine cannot do is refused before the weights load."""

import re

import onnx
import pytest
import torch

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


def test_a_build_without_the_disk_space_it_needs_is_refused_before_the_weights_load(tmp_path, monkeypatch, capsys):
    import shutil

    from tcpade_trt.builder import device

    install(monkeypatch)
    folder = released_flux_folder(tmp_path, 23_800_000_000)
    real = shutil.disk_usage
    monkeypatch.setattr(device.shutil, "disk_usage", lambda path: real(path)._replace(free=20 << 30))
    code = main(["build", str(folder), "--backend", "tensorrt", "--precision", "fp8", "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2 and re.search(r"writes about 49 GB under .*; 20 GB are free there", err), err


def test_the_model_leaves_the_gpu_while_tensorrt_builds(tmp_path, monkeypatch):
    """TensorRT's builder allocates outside torch: the model waits in host memory and torch's cache is released
    (a 12B model in bf16 and its freed quantized copy would leave the builder a third of an H100)."""
    from tcpade_trt.builder import BuildOptions, build_engines
    from tcpade_trt.engines import gpu
    from tcpade_trt.engines.tensorrt import build as trt_backend

    from ..conftest import SHAPES

    install(monkeypatch)
    events = []
    monkeypatch.setattr(gpu, "release_cached_memory", lambda: events.append("released"))
    real_build, real_to = trt_backend.build_plans, torch.nn.Module.to

    def to(module, *args, **kwargs):
        events.append(("to", str(args[0]) if args else str(kwargs.get("device"))))
        return real_to(module, *args, **kwargs)

    def build_plans(*args):
        events.append("build")
        return real_build(*args)

    monkeypatch.setattr(trt_backend, "build_plans", build_plans)
    monkeypatch.setattr(torch.nn.Module, "to", to)
    build_engines("tiny-dit", tmp_path / "e", BuildOptions(backend="tensorrt", precision="bf16",
                                                           shape=SHAPES["tiny-dit"]), progress=False)
    around = events[events.index("build") - 2: events.index("build") + 2]
    assert around == [("to", "cpu"), "released", "build", ("to", "cpu:0")]  # off the GPU, then back for the check


def test_a_text_model_from_its_pipeline_folder_builds_for_tensorrt_and_generates_from_a_prompt(
        tmp_path, monkeypatch, flux_pipeline_folder, capsys):
    """The model in bf16 "on the GPU" is calibrated on prompts through the pipeline's text encoders (float32
    embeddings met a bf16 context embedder: a dtype error at the quantize stage), then generates from a prompt."""
    install(monkeypatch)
    engines = tmp_path / "e"
    assert main(["build", str(flux_pipeline_folder), "--backend", "tensorrt", "--precision", "fp8", "--height", "8",
                 "--width", "8", "--text-tokens", "8", "--calibration-samples", "2", "--calibration-steps", "3",
                 "--out", str(engines)]) == 0, capsys.readouterr().err
    assert "prompts through" in read_manifest(engines).quantization["calibration"]["conditioning"]
    out = tmp_path / "fox.png"
    assert main(["generate", "--engines", str(engines), "--prompt", "a fox", "--pipeline", str(flux_pipeline_folder),
                 "--steps", "3", "--out", str(out)]) == 0, capsys.readouterr().err
    assert out.stat().st_size > 0
