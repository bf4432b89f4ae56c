"""The TensorRT runtime's wiring against a stand-in for TensorRT's Python API (no GPU needed):
every input gets its shape and address, outputs are allocated once per shape and bound (callers
get copies), and the launch goes through execute_async_v3. The real thing runs only on an NVIDIA GPU with TensorRT."""

import sys
import types

import pytest
import torch

from tcpade_trt.engines.trt_backend import TensorRTError
from tcpade_trt.runtime import trt_runtime


def fake_tensorrt():
    trt = types.SimpleNamespace(__version__="10.7.0", float32="f32", float16="f16", int32="i32", int8="i8",
                                bool="b", bfloat16="bf16", int64="i64",
                                TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"))

    class Context:
        def __init__(self):
            self.shapes, self.addresses, self.launches = {}, {}, []

        def set_input_shape(self, name, shape):
            self.shapes[name] = shape
            return shape[0] <= 4  # the profile's batch_max

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def get_tensor_shape(self, name):
            return self.shapes["x"]

        def execute_async_v3(self, stream):
            self.launches.append(stream)
            return True

    class Engine:
        num_io_tensors = 3
        device_memory_size_v2 = 1024

        def get_tensor_name(self, i):
            return ["x", "t", "y"][i]

        def get_tensor_mode(self, name):
            return "out" if name == "y" else "in"

        def get_tensor_dtype(self, name):
            return "i64" if name == "t" else "f32"

        def create_execution_context(self, *strategy):
            self.context = Context()
            return self.context

    class Runtime:
        def deserialize_cuda_engine(self, data):
            return Engine() if data == b"plan" else None

    return trt, Runtime()


def test_a_plan_is_called_with_shapes_addresses_and_preallocated_outputs(tmp_path, monkeypatch):
    trt, runtime = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    (tmp_path / "blocks.plan").write_bytes(b"plan")
    part = trt_runtime.TrtPart("blocks", tmp_path / "blocks.plan", runtime)
    assert part.input_names == ["x", "t"] and part.output_names == ["y"]
    assert part.dtypes == {"x": torch.float32, "t": torch.int64, "y": torch.float32}
    x, t = torch.randn(2, 5, 8), torch.tensor([3, 4])
    out = part({"x": x, "t": t, "unused": torch.zeros(1)})
    ctx = part.engine.context
    assert ctx.shapes == {"x": (2, 5, 8), "t": (2,)} and ctx.launches == [0]
    assert ctx.addresses["x"] == x.data_ptr() and out["y"].shape == (2, 5, 8)
    bound = ctx.addresses["y"]
    again = part({"x": x, "t": t})
    assert ctx.addresses["y"] == bound  # same shapes: the bound output buffer is reused ...
    # ... and callers get copies, which a policy may hold across calls
    assert len({bound, out["y"].data_ptr(), again["y"].data_ptr()}) == 3
    with pytest.raises(TensorRTError, match="outside the built profile"):
        part({"x": torch.randn(8, 5, 8), "t": torch.zeros(8, dtype=torch.int64)})
    assert part.scratch_bytes() == 1024


def test_an_unreadable_plan_is_one_sentence(tmp_path, monkeypatch):
    trt, runtime = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    (tmp_path / "head.plan").write_bytes(b"garbage")
    with pytest.raises(TensorRTError, match="could not deserialize.*rebuild"):
        trt_runtime.TrtPart("head", tmp_path / "head.plan", runtime)


def test_plans_built_by_another_tensorrt_release_are_refused(monkeypatch):
    trt, _ = fake_tensorrt()  # 10.7.0 here
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    manifest = types.SimpleNamespace(versions={"tensorrt": "10.7.1"})  # a patch release apart is enough
    with pytest.raises(TensorRTError, match="built with TensorRT 10.7.1, this machine has 10.7.0"):
        trt_runtime.require_tensorrt_runtime(manifest)
