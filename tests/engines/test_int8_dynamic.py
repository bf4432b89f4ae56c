"""The streaming dynamic-INT8 quantizer: onnxruntime's result, one weight in memory at a time."""

import collections
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tcpade_trt.engines.onnxruntime import int8_dynamic
from tcpade_trt.engines.onnxruntime.int8_dynamic import quantize_int8_dynamic
from tcpade_trt.engines.onnxruntime.sessions import create_session
from tcpade_trt.export.onnx_files import referenced_data_files, save_model
from tcpade_trt.export.parts import example_tensors

from ..conftest import SHAPES

ort = pytest.importorskip("onnxruntime")


def run(path, feeds):
    """Outputs of ``path`` in a session as the runtime opens it (create_session: exact INT8 products)."""
    session = create_session(path, ["CPUExecutionProvider"])
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})


def op_counts(path):
    return collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def test_the_graph_is_what_onnxruntimes_quantize_dynamic_writes(unfused_flux_folder, models, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = unfused_flux_folder / "blocks.onnx"
    ours, theirs = tmp_path / "ours.onnx", tmp_path / "theirs.onnx"
    report = quantize_int8_dynamic(src, ours, external=False)
    quantize_dynamic(str(src), str(theirs), op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                     reduce_range=True, weight_type=QuantType.QInt8)

    assert op_counts(ours) == op_counts(theirs)
    assert report.matmuls == op_counts(ours)["MatMulInteger"] > 0
    example = {k: v.numpy() for k, v in example_tensors(models["tiny-flux"], SHAPES["tiny-flux"], batch=2).items()}
    for a, b in zip(run(ours, example), run(theirs, example)):
        assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b)


def _chain_of_matmuls(path, count, rows, cols, external):
    """x [1, rows] -> MatMul W_i [rows, cols] -> MatMul W_i' [cols, rows] ... ``count`` weights."""
    rng = np.random.default_rng(0)
    nodes, weights, name = [], [], "x"
    for i in range(count):
        shape = (rows, cols) if i % 2 == 0 else (cols, rows)
        weights.append(numpy_helper.from_array(rng.standard_normal(shape, dtype=np.float32) / 30, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [name, f"w{i}"], [f"y{i}"]))
        name = f"y{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)], weights)
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path, external=external)
    return rng.standard_normal((1, rows), dtype=np.float32)


# runs in a fresh process: the peak resident memory (VmHWM) is reset after the imports, so what it
# reads afterwards is the quantization's own peak (onnxruntime's quantize_dynamic: 154 MiB here)
PEAK_OF_QUANTIZING = """
import sys
from pathlib import Path
from tcpade_trt.engines.onnxruntime.int8_dynamic import quantize_int8_dynamic

def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))

open("/proc/self/clear_refs", "w").write("5")  # 5: reset the peak resident set size to the current one
before = status("VmRSS:")
quantize_int8_dynamic(Path(sys.argv[1]), Path(sys.argv[2]), external=True)
print(status("VmHWM:") - before)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs")
def test_memory_stays_near_one_weight_not_the_whole_graph(tmp_path):
    src = tmp_path / "fp32" / "chain.onnx"
    src.parent.mkdir()
    x = _chain_of_matmuls(src, count=12, rows=512, cols=2048, external=True)  # 12 x 4 MiB of weights
    weight_bytes = 12 * 512 * 2048 * 4

    child = subprocess.run([sys.executable, "-c", PEAK_OF_QUANTIZING, str(src), str(tmp_path / "chain.onnx")],
                           capture_output=True, text=True, check=True)
    peak = int(child.stdout.split()[-1])

    assert peak < weight_bytes / 2, f"{peak / 2**20:.0f} MiB for {weight_bytes / 2**20:.0f} MiB of weights"
    assert referenced_data_files(tmp_path / "chain.onnx") == ["chain.onnx.data"]
    (expected,), (got,) = run(src, {"x": x}), run(tmp_path / "chain.onnx", {"x": x})
    # twelve random 7-bit matmuls in a row (an 8-bit chain lost 3.7%; the real block stacks barely move)
    assert np.linalg.norm(got - expected) < 0.08 * np.linalg.norm(expected)


def test_weights_round_per_column_to_64_steps():
    """7-bit weights (onnxruntime's reduce_range): two uint8 x weight products never overflow the int16 that AVX2's
    vpmaddubsw sums them in (255 * 64 * 2 = 32640 <= 32767), so onnxruntime's fast int8 kernels are exact on every
    CPU."""
    w = np.array([[1.0, -0.5, 0.0], [-2.0, 0.25, 0.0]], np.float32)
    q, scale = int8_dynamic.quantize_weight(w)
    np.testing.assert_allclose(scale, [2 / 64, 0.5 / 64, 1.0])  # an all-zero column gets scale 1
    np.testing.assert_array_equal(q, [[32, -64, 0], [-64, 32, 0]])
    assert 255 * int(np.abs(q).max()) * 2 <= np.iinfo(np.int16).max


def test_an_interrupted_quantization_leaves_no_file(tmp_path, monkeypatch):
    src = tmp_path / "fp32" / "chain.onnx"
    src.parent.mkdir()
    _chain_of_matmuls(src, count=4, rows=64, cols=64, external=True)
    calls = []
    real = int8_dynamic.quantize_weight

    def fails_on_the_third(w):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(w)

    monkeypatch.setattr(int8_dynamic, "quantize_weight", fails_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        quantize_int8_dynamic(src, tmp_path / "chain.onnx", external=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32"]


def test_a_weight_shared_with_another_node_stays_float(tmp_path):
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "w"], ["z"])]
    graph = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 4])], [w])
    src = tmp_path / "shared.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    report = quantize_int8_dynamic(src, tmp_path / "out.onnx", external=False)
    assert report.matmuls == 0 and "shared" in report.skipped[0]
    assert op_counts(tmp_path / "out.onnx") == op_counts(src)
