"""INT8 products that would overflow 16 bits come out exact on every x86 CPU.

onnxruntime multiplies uint8 activations by int8 weights with ``vpmaddubsw`` on CPUs without VNNI
(AVX2 ones, e.g. the AMD EPYC of CI): two neighbouring products are summed into an int16 that
saturates at 32767, so 255 * 127 + 255 * 127 = 64770 becomes 32767. A dynamic-INT8 chain of 12
matmuls lost 8% of its output that way (3.7% with exact products). The runtime's sessions turn on
``session.x64quantprecision``, which makes onnxruntime multiply such weights as uint8 x uint8 instead.
On a VNNI CPU the products are exact with or without it.
"""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tcpade_trt.engines.onnxruntime.sessions import create_session
from tcpade_trt.export.onnx_files import save_model

pytest.importorskip("onnxruntime")


def test_largest_uint8_times_largest_int8_weight_is_exact(tmp_path):
    k, n = 64, 16
    weight = numpy_helper.from_array(np.full((k, n), 127, np.int8), "w")  # a constant weight, as the INT8 build writes
    node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "saturating", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1, n])], [weight])
    path = tmp_path / "matmul_integer.onnx"
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path, external=False)

    (y,) = create_session(path, ["CPUExecutionProvider"]).run(None, {"x": np.full((1, k), 255, np.uint8)})

    np.testing.assert_array_equal(y, np.full((1, n), k * 255 * 127, np.int32))


def test_exact_products_are_asked_for_only_where_the_cpu_needs_them(monkeypatch, tmp_path):
    """x64quantprecision costs speed (1.8x slower INT8 blocks on an AVX512-VNNI CPU, where products are exact
    anyway): it is set on x86 CPUs without VNNI or AMX, and where the flags cannot be read."""
    import platform

    from tcpade_trt.engines.onnxruntime import sessions as ort_backend

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    for flags, saturates in [({"avx2"}, True), ({"avx2", "avx512_vnni"}, False), ({"avx_vnni"}, False),
                             ({"amx_int8", "avx512f"}, False), (set(), True)]:
        monkeypatch.setattr(ort_backend, "cpu_flags", lambda flags=flags: flags)
        assert ort_backend.int8_products_saturate() is saturates, flags
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert not ort_backend.int8_products_saturate()

    path = tmp_path / "identity.onnx"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path, external=False)
    def entry(options):
        try:
            return options.get_session_config_entry("session.x64quantprecision")
        except RuntimeError:  # onnxruntime: "does not have configuration with key"
            return None

    for saturates, expected in [(True, "1"), (False, None)]:
        monkeypatch.setattr(ort_backend, "int8_products_saturate", lambda saturates=saturates: saturates)
        assert entry(create_session(path, ["CPUExecutionProvider"]).get_session_options()) == expected


def test_the_dynamic_int8_form_is_exact_without_the_slow_path(tmp_path, monkeypatch):
    """The weights the INT8 build writes cannot overflow the int16 pair sum: a MatMul at the largest activation and
    the largest weights comes out exact even where onnxruntime is not asked for exact products."""
    from tcpade_trt.engines.onnxruntime import sessions
    from tcpade_trt.engines.onnxruntime.int8_dynamic import quantize_int8_dynamic

    k, n = 64, 16
    weight = numpy_helper.from_array(np.full((k, n), 1.0, np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "chain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], [weight])
    src, dst = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src, external=False)
    quantize_int8_dynamic(src, dst, external=False)
    monkeypatch.setattr(sessions, "int8_products_saturate", lambda: False)  # the fast kernels, as on a VNNI CPU
    x = np.concatenate([np.full((1, k - 1), 1.0, np.float32), np.zeros((1, 1), np.float32)], axis=1)  # uint8 255
    (y,) = create_session(dst, ["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(y, x @ np.ones((k, n), np.float32), rtol=1e-2)
