"""Parts over the external-data threshold (every real model's block stack) keep their weights in a
side file: the build must name it correctly, quantize it without ever holding the graph as one serialized
message (protobuf's 2 GB limit), hash it, and leave nothing else. With protobuf's limit and the threshold
lowered (tests/protobuf_limit.py) a tiny model takes the same path in seconds, and any step that serializes
a whole graph fails as it fails on a real one."""

import pytest
import torch

from tcpade_trt.builder import BuildOptions, build_engines
from tcpade_trt.cli import main
from tcpade_trt.engines.manifest import MANIFEST, read_manifest
from tcpade_trt.export import onnx_files
from tcpade_trt.runtime.runtime import Runtime
from tcpade_trt.runtime.sampler import initial_noise

from ..conftest import SHAPES, make_inputs
from ..protobuf_limit import lower_protobuf_limit


@pytest.fixture
def limited(monkeypatch):
    lower_protobuf_limit(monkeypatch)


def assert_folder_is_exactly_its_manifest(folder):
    manifest = read_manifest(folder)  # every listed file present, every hash right
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, *manifest.files()])
    for part in manifest.parts.values():
        if part.file.endswith(".onnx"):
            assert set(onnx_files.referenced_data_files(folder / part.file)) <= set(part.extra_files)
    return manifest


@pytest.fixture(scope="module")
def external_fp32(tmp_path_factory):
    """tiny-flux under the lowered protobuf limit: its larger parts with external data (built once)."""
    mp = pytest.MonkeyPatch()
    lower_protobuf_limit(mp)
    try:
        folder = tmp_path_factory.mktemp("external") / "fp32"
        build_engines("tiny-flux", folder, BuildOptions(shape=SHAPES["tiny-flux"]), progress=False)
    finally:
        mp.undo()
    return folder


def test_an_fp32_build_with_external_data_is_complete_and_generates(external_fp32, tmp_path, capsys):
    manifest = assert_folder_is_exactly_its_manifest(external_fp32)
    assert manifest.parts["blocks"].extra_files == ["blocks.onnx.data"]
    assert main(["inspect", str(external_fp32)]) == 0
    assert main(["generate", "--engines", str(external_fp32), "--steps", "4", "--out", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").is_file()


@pytest.mark.parametrize("precision,mode", [("int8", "dynamic"), ("int8", "static"), ("fp8", "static")])
def test_quantized_builds_with_external_data(external_fp32, limited, tmp_path, precision, mode):
    options = BuildOptions(shape=SHAPES["tiny-flux"], precision=precision, int8_mode=mode,
                           reuse_onnx_from=external_fp32, calibration_samples=2, calibration_steps=4)
    manifest = build_engines("tiny-flux", tmp_path / "q", options, progress=False)
    assert_folder_is_exactly_its_manifest(tmp_path / "q")  # no fp32 blocks.onnx.data left behind
    assert manifest.parts["blocks"].extra_files == ["blocks.onnx.data"]
    model = Runtime(tmp_path / "q").model
    _, cond = make_inputs(model, 1, 8, 8)
    noise = initial_noise(model, model.family.geometry(1, 8, 8).shape, 0)
    result = Runtime(tmp_path / "q").generate(cond, noise, cache="tcpade-fast", steps=6)
    assert torch.isfinite(result.latents).all()


def test_a_side_file_is_never_appended_to(tmp_path):
    """onnx appends tensors to an existing side file; saving twice must not double it."""
    import onnx

    external = tmp_path / "m.onnx"
    weights = onnx.numpy_helper.from_array(torch.randn(64, 64).numpy(), "w")
    graph = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 64])],
                                   [weights])
    model = onnx.helper.make_model(graph)
    onnx_files.save_model(model, external, external=True)
    size = (tmp_path / "m.onnx.data").stat().st_size
    onnx_files.save_model(onnx.load(str(external)), external, external=True)
    assert (tmp_path / "m.onnx.data").stat().st_size == size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
