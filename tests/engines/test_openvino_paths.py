"""scripts/openvino_paths.py, the comparison of OpenVINO's two paths (its docs/openvino-paths.md ran in a venv with
onnxruntime-openvino; here onnxruntime has no OpenVINO provider, so its own runtime and the CPU provider meet)."""

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'tcpade-trt[openvino]')")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "openvino_paths.py"


def test_both_runtimes_time_the_same_graph_and_agree(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("openvino_paths", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], [weight])
    model = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    page = tmp_path / "paths.md"
    assert script.main([str(model), "--batches", "1", "4", "--repeats", "2", "--markdown", str(page)]) == 0
    rows = [line for line in page.read_text().splitlines() if line.startswith("| 4 |")]
    assert any("onnxruntime CPU provider" in r for r in rows) and any("OpenVINO" in r and "runtime" in r for r in rows)
    assert all(float(r.split("|")[5]) < 1e-5 for r in rows)  # relative error against the CPU provider
