"""The TensorRT runtime against the stand-in for TensorRT (tests/fake_tensorrt.py), which rejects what
TensorRT rejects: host pointers, USER_MANAGED contexts without their scratch memory, shapes outside
the profile, a graph captured before a first launch or a second graph on one context. The real thing
runs only on an NVIDIA GPU with TensorRT."""

import types

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from tcpade_trt.engines.tensorrt import plans as trt_plans
from tcpade_trt.engines.tensorrt.build import TensorRTError
from tcpade_trt.runtime.streams import on_stream

from ..fake_tensorrt import ILLEGAL_ADDRESS, install, write_fake_plan


def scale_and_shift_graph(path):
    """y = 2 x + t[:, None, None] (x [batch, 4, 8] float32, t [batch] float32)."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["x2"]),
             helper.make_node("Unsqueeze", ["t", "axes"], ["t3"]),
             helper.make_node("Add", ["x2", "t3"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8]),
                     helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8])],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]), helper.make_tensor("axes", TensorProto.INT64, [2],
                                                                                    [1, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


PROFILE = {"x": ((1, 4, 8), (2, 4, 8), (4, 4, 8)), "t": ((1,), (2,), (4,))}


@pytest.fixture
def trt(monkeypatch, tmp_path):
    """The stand-in as `tensorrt` on an emulated GPU, with two plans built through its builder."""
    fake = install(monkeypatch)
    write_fake_plan(fake, scale_and_shift_graph(tmp_path / "g.onnx"), tmp_path / "blocks.plan", PROFILE)
    write_fake_plan(fake, tmp_path / "g.onnx", tmp_path / "head.plan", PROFILE)
    return fake


def load(trt, tmp_path, **kwargs):
    return trt_plans.load_trt_parts(tmp_path, {"blocks": "blocks.plan", "head": "head.plan"}, device=trt.device,
                                      **kwargs)


def expected(x, t):
    return 2 * x + t[:, None, None]


def run(part, named):
    """A part called as the runtime calls it: on the plans' stream, after the caller's work, and the caller's
    reads after it (runtime/streams.on_stream)."""
    with on_stream(part.stream):
        return part(named)


def test_host_tensors_are_put_on_the_device_and_outputs_are_reused_buffers_handed_out_as_copies(trt, tmp_path):
    parts, _ = load(trt, tmp_path)
    part = parts["blocks"]
    x, t = torch.randn(2, 4, 8), torch.tensor([1.0, -1.0])  # host tensors: the timestep of a CPU scheduler
    out = run(part, {"x": x, "t": t, "unused": torch.zeros(1)})
    torch.testing.assert_close(out["y"], expected(x, t))
    bound = part._outputs[((2, 4, 8), (2,))]["y"]
    again = run(part, {"x": x, "t": t})
    assert part._outputs[((2, 4, 8), (2,))]["y"] is bound  # the same shapes reuse the bound buffer ...
    assert len({bound.data_ptr(), out["y"].data_ptr(), again["y"].data_ptr()}) == 3  # ... callers get copies


def test_outputs_read_off_the_plans_stream_before_it_is_waited_for_are_poison(trt, tmp_path):
    """What the emulated GPU catches: a part's outputs are ready on the plans' stream only; the default stream
    reading them without a wait races TensorRT (torch's pool streams are non-blocking)."""
    parts, _ = load(trt, tmp_path)
    x, t = torch.randn(2, 4, 8), torch.tensor([1.0, -1.0])
    out = parts["blocks"]({"x": x, "t": t})  # called outside the plans' stream context, read on the default stream
    assert torch.isnan(out["y"].cpu()).all()
    assert trt.gpu.races and "without waiting" in trt.gpu.races[0]
    trt.gpu.races.clear()
    parts["blocks"].stream.synchronize()  # the host waits for the plans' stream: now the outputs are there
    torch.testing.assert_close(out["y"].cpu(), expected(x, t))
    trt.gpu.assert_no_races()


def test_a_misaligned_slice_is_copied_before_binding(trt, tmp_path):
    parts, _ = load(trt, tmp_path)
    both = trt.device.put(torch.randn(3, 4, 8), torch.float32)
    second = both[1:]  # contiguous, on the device, but 128 bytes past an aligned start
    assert second.data_ptr() % 256
    t = trt.device.put(torch.tensor([0.5, 0.25]), torch.float32)
    torch.testing.assert_close(run(parts["blocks"], {"x": second, "t": t})["y"], expected(second, t))


def test_the_stand_in_treats_a_host_pointer_as_an_illegal_access_for_good(trt, tmp_path):
    """What the runtime above avoids: TensorRT reads a host address as device memory."""
    parts, _ = load(trt, tmp_path)
    engine = parts["blocks"].engine
    context = engine.create_execution_context()
    x, t = torch.randn(1, 4, 8), torch.zeros(1)
    context.set_input_shape("x", (1, 4, 8))
    context.set_input_shape("t", (1,))
    y = trt.device.empty((1, 4, 8), torch.float32)
    for name, tensor in (("x", x), ("t", t), ("y", y)):
        context.set_tensor_address(name, tensor.data_ptr())
    with pytest.raises(RuntimeError, match=ILLEGAL_ADDRESS):
        context.execute_async_v3(parts["blocks"].stream.cuda_stream)
    with pytest.raises(RuntimeError, match=ILLEGAL_ADDRESS):  # sticky, as CUDA errors are
        parts["head"]({"x": x, "t": t})


def test_plans_are_deserialized_once_and_share_one_scratch_allocation(trt, tmp_path):
    parts, stream = load(trt, tmp_path)
    assert len(trt.deserialized) == 2
    scratch = parts["blocks"].scratch
    assert scratch is parts["head"].scratch and scratch.numel() == parts["blocks"].engine.device_memory_size_v2
    run(parts["blocks"], {"x": torch.randn(1, 4, 8), "t": torch.zeros(1)})
    assert parts["blocks"]._context.memory == (scratch.data_ptr(), scratch.numel())  # USER_MANAGED on it
    assert parts["blocks"].stream is parts["head"].stream is stream


def test_a_user_managed_context_without_its_memory_does_not_run(trt, tmp_path):
    parts, _ = load(trt, tmp_path)
    part = parts["blocks"]
    context = part.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
    part._context = context  # as if set_device_memory had been forgotten
    with pytest.raises(TensorRTError, match="TensorRT failed to run the blocks plan"):
        part({"x": torch.randn(1, 4, 8), "t": torch.zeros(1)})


def test_outside_the_built_profile_is_one_sentence(trt, tmp_path):
    parts, _ = load(trt, tmp_path)
    with pytest.raises(TensorRTError, match="outside the built profile"):
        parts["blocks"]({"x": torch.randn(8, 4, 8), "t": torch.zeros(8)})


def test_cuda_graphs_capture_one_graph_per_context_after_a_first_launch(trt, tmp_path):
    parts, _ = load(trt, tmp_path, cuda_graphs=True)
    part = parts["blocks"]
    for batch in (1, 2, 1, 2):  # two shapes, each captured once, then replayed with new inputs
        x, t = torch.randn(batch, 4, 8), torch.randn(batch)
        torch.testing.assert_close(run(part, {"x": x, "t": t})["y"], expected(x, t))
    contexts = [entry[1] for entry in part._graphs.values()]
    assert len(part._graphs) == 2 and len({id(c) for c in contexts}) == 2
    assert all(c.graph is not None and c.launched for c in contexts)


def test_the_stand_in_refuses_a_capture_before_a_first_launch_and_a_second_graph(trt, tmp_path):
    parts, _ = load(trt, tmp_path)
    part = parts["blocks"]
    context = part._new_context()
    inputs = {"x": trt.device.put(torch.randn(1, 4, 8), torch.float32), "t": trt.device.put(torch.zeros(1),
                                                                                              torch.float32)}
    part._bind(context, inputs, None)
    part.stream.wait_stream(torch.cuda.current_stream())  # the inputs were copied on the default stream
    with trt.device.capture(trt.device.graph(), None):
        assert not context.execute_async_v3(part.stream.cuda_stream)  # TensorRT initialises lazily on the first launch
    assert context.execute_async_v3(part.stream.cuda_stream)
    with trt.device.capture(trt.device.graph(), None):
        assert context.execute_async_v3(part.stream.cuda_stream)
    with trt.device.capture(trt.device.graph(), None):
        assert not context.execute_async_v3(part.stream.cuda_stream)  # one graph per context


def test_weight_streaming_budget_is_set_before_contexts_and_checked(trt, tmp_path, monkeypatch):
    parts, _ = load(trt, tmp_path)
    with pytest.raises(TensorRTError, match="built without weight streaming"):
        trt_plans.set_weight_streaming_budget(parts["blocks"].engine, "50%", cuda_graphs=False)
    engine = parts["blocks"].engine
    engine.streamable_weights_size = engine._budget = 1000
    with pytest.raises(TensorRTError, match="cannot capture"):
        trt_plans.set_weight_streaming_budget(engine, "50%", cuda_graphs=True)
    assert trt_plans.set_weight_streaming_budget(engine, "40%", cuda_graphs=False) == 400
    engine.create_execution_context()
    with pytest.raises(TensorRTError, match="did not accept"):  # contexts exist: TensorRT keeps the old budget
        trt_plans.set_weight_streaming_budget(engine, "20%", cuda_graphs=False)


@pytest.mark.parametrize("spec,streamable,expected_bytes", [("40%", 1000, 400), ("1GB", 2 << 30, 1 << 30),
                                                            ("512MiB", 1 << 30, 1 << 29), ("123", 1000, 123)])
def test_budgets_read_as_share_size_or_bytes(spec, streamable, expected_bytes):
    assert trt_plans.parse_budget(spec, streamable) == expected_bytes


@pytest.mark.parametrize("spec,message", [("lots", "give a percentage"), ("150%", "at most 100%")])
def test_bad_budgets_are_one_sentence(spec, message):
    with pytest.raises(TensorRTError, match=message):
        trt_plans.parse_budget(spec, 1000)


def test_tensorrt_11_has_only_the_v2_memory_api_and_the_runtime_uses_it(monkeypatch, tmp_path):
    fake = install(monkeypatch, "11.1.0.10")
    write_fake_plan(fake, scale_and_shift_graph(tmp_path / "g.onnx"), tmp_path / "blocks.plan", PROFILE)
    parts, _ = trt_plans.load_trt_parts(tmp_path, {"blocks": "blocks.plan"}, device=fake.device)
    assert not hasattr(parts["blocks"].engine, "device_memory_size")
    x, t = torch.randn(3, 4, 8), torch.randn(3)
    np.testing.assert_allclose(run(parts["blocks"], {"x": x, "t": t})["y"].cpu().numpy(), expected(x, t).numpy(),
                               rtol=1e-6)


def test_an_unreadable_plan_is_one_sentence(trt, tmp_path):
    (tmp_path / "bad.plan").write_bytes(b"garbage")
    with pytest.raises(TensorRTError, match="could not deserialize bad.plan.*rebuild"):
        trt_plans.load_trt_parts(tmp_path, {"blocks": "bad.plan"}, device=trt.device)


def test_plans_built_by_another_tensorrt_release_are_refused(trt):
    manifest = types.SimpleNamespace(versions={"tensorrt": "10.13.0.36"})  # a patch release apart is enough
    with pytest.raises(TensorRTError, match="built with TensorRT 10.13.0.36, this machine has 10.13.0.35"):
        trt_plans.require_tensorrt_runtime(manifest)


def test_an_address_the_plan_refuses_is_one_sentence(trt, tmp_path):
    """set_tensor_address returns False for a name the plan does not have (a plan that does not match its
    manifest); the runtime used to launch anyway, with that output unbound, and hand out stale data."""
    parts, _ = load(trt, tmp_path)
    part = parts["blocks"]
    named = {"x": torch.randn(1, 4, 8), "t": torch.zeros(1)}
    run(part, named)  # binds and keeps the output buffer for this shape
    del part.engine.tensors["y"]  # as if the plan had no output y
    with pytest.raises(TensorRTError, match="the blocks plan has no input or output named 'y'.*rebuild"):
        run(part, named)
