"""A stand-in for TensorRT's Python API (10.x / 11.x) on the emulated GPU of tests/emulated_cuda.py.

It behaves like TensorRT where this project relies on it, so that tests fail on the mistakes the real
library punishes (facts: TensorRT's bindings and headers, onnx-tensorrt's parser; the op table and its
sources are in tests/fixtures/onnx_tensorrt_ops.json):

- parsing: a node is imported by its op_type alone, whatever its domain (ModelImporter.cpp): ops that
  onnx-tensorrt does not support at this version (MatMulInteger, DynamicQuantizeLinear, ...) and ops with
  no importer (onnxruntime's FastGelu, SkipSimplifiedLayerNormalization, ...) fail with the real parser's
  messages; every node is checked; external data is read relative to the ONNX file;
- addresses: ``set_tensor_address`` returns False for a name the engine does not have; addresses and
  ``set_device_memory`` take device pointers, 256-byte aligned, of sufficient size; a host pointer is an
  illegal memory access that poisons the device for every later launch (CUDA errors are sticky);
- launches: ``execute_async_v3`` queues the plan on the stream whose handle it is given (emulated_cuda:
  a read of its outputs that is not ordered after that stream sees NaN), taking ``launch_seconds`` of the
  device's simulated time;
- contexts: ``USER_MANAGED`` contexts need ``set_device_memory`` (10.1+) of at least the engine's
  ``device_memory_size_v2`` before a launch; 11.x has no ``device_memory_size``; the weight-streaming
  budget cannot change while contexts exist (the Python setter drops TensorRT's refusal);
- shapes: ``IOptimizationProfile.set_shape`` raises on a negative dimension or mismatched ranks;
  ``add_optimization_profile`` returns -1 for min > opt > max; ``set_input_shape`` returns False outside
  the built profile; output shapes are -1 until every input shape is set;
- builder: TensorRT 11 has no FP16/BF16/INT8/FP8 builder flags and STRONGLY_TYPED is 0; 10.x weight
  streaming needs a strongly typed network;
- CUDA graphs: a context must be launched once before its launch is captured, and carries one graph;
  a replay queues the captured launches on the current stream.

Plans are real enough to run: a plan holds its ONNX graph (bf16 graphs run in float32 behind bf16 I/O),
and a launch runs it with onnxruntime on the tensors at the bound addresses, writing the outputs there.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import json
import tempfile
import types
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto

from tcpade_trt.engines.tensorrt.plans import CudaDevice

from . import emulated_cuda
from .emulated_cuda import DeviceTensor, EmulatedGPU

ILLEGAL_ADDRESS = "CUDA error 700: an illegal memory access was encountered"
OPS = json.loads((Path(__file__).parent / "fixtures" / "onnx_tensorrt_ops.json").read_text())
_SERIALIZE = onnx.ModelProto.SerializeToString  # TensorRT's plans are not protobuf: no 2 GB limit on them
_ONNX_TO_TRT = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16",
                TensorProto.INT64: "int64", TensorProto.INT32: "int32", TensorProto.INT8: "int8",
                TensorProto.BOOL: "bool", TensorProto.UINT8: "uint8", TensorProto.DOUBLE: "float32",
                TensorProto.FLOAT8E4M3FN: "fp8"}
_TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int64": torch.int64,
          "int32": torch.int32, "int8": torch.int8, "bool": torch.bool, "uint8": torch.uint8,
          "fp8": torch.float8_e4m3fn}


def supported_ops(version: str) -> set[str]:
    """Default-domain ops onnx-tensorrt imports at ``version`` (10.1's table plus what came later) and TensorRT's
    own ops that ModelOpt exports (TRT_FP8QuantizeLinear, ...)."""
    have = tuple(int(p) for p in version.split(".")[:2])
    later = {op for op, since in OPS["op_added_in"].items() if have >= tuple(int(p) for p in since.split("."))}
    return set(OPS["supported_10_1"]) | later | set(OPS["trt_custom_ops_10_1"])


def parser_errors(model: onnx.ModelProto, version: str) -> list[str]:
    """What onnx-tensorrt's parser reports for ``model``: one message per node it cannot import."""
    supported, explicit = supported_ops(version), set(OPS["not_supported_10_1"])
    errors = []
    for i, node in enumerate(model.graph.node):
        if node.op_type in supported:
            continue
        if node.op_type in explicit:  # a static checker that always fails
            errors.append(f"In node {i} with name: {node.name} and operator: {node.op_type} (check{node.op_type}): "
                          "UNSUPPORTED_NODE: false")
        else:  # no importer: the plugin fallback, and no such plugin
            errors.append(f"In node {i} with name: {node.name} and operator: {node.op_type} "
                          "(checkFallbackPluginImporter): INVALID_NODE: creator && \"Plugin not found, are the plugin "
                          "name, version, and namespace correct?\"")
    for value in model.graph.input:
        if value.type.tensor_type.elem_type not in _ONNX_TO_TRT:
            errors.append(f"In node -1 with name:  and operator:  (importInput): UNSUPPORTED_NODE: Assertion failed: "
                          f"convertDtype(onnxDtype.elem_type(), &trtDtype) (input {value.name})")
    return errors


_HALF = (TensorProto.BFLOAT16, TensorProto.FLOAT16)


def _as_float32(tensor: onnx.TensorProto) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor).astype(np.float32), tensor.name)


def plan_payload(model: onnx.ModelProto) -> bytes:
    """A plan's graph as bytes of any size (TensorRT's plans are not protobuf: DiT-XL/2's blocks run in fp32 here
    hold 2.7 GB): the graph's structure with its tensors moved out, its length, then the tensors' raw bytes."""
    from onnx import external_data_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the network keeps its tensors
    with tempfile.TemporaryDirectory(prefix="fake-plan-") as folder:
        external_data_helper.convert_model_to_external_data(copy, all_tensors_to_one_file=True, location="weights",
                                                            size_threshold=1024)
        external_data_helper.write_external_data_tensors(copy, folder)
        weights = Path(folder, "weights")
        data = weights.read_bytes() if weights.exists() else b""
    graph = _SERIALIZE(copy)
    return len(graph).to_bytes(8, "little") + graph + data


def unpack_plan(payload: bytes, folder: Path) -> str:
    """``plan_payload``'s graph written into ``folder`` (graph.onnx beside its weights); returns the graph's path."""
    size = int.from_bytes(payload[:8], "little")
    (folder / "graph.onnx").write_bytes(payload[8:8 + size])
    (folder / "weights").write_bytes(payload[8 + size:])
    return str(folder / "graph.onnx")


def runnable_on_cpu(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph as onnxruntime's CPU kernels run it: bf16 / fp16 (no CPU MatMul for bf16) computed in float32,
    what a half-precision plan computes up to rounding."""
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    if not any(t.data_type in _HALF for t in model.graph.initializer) and not any(
            v.type.tensor_type.elem_type in _HALF for v in values):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # not through bytes: a real block stack is over protobuf's 2 GB
    model = copy
    for tensor in model.graph.initializer:
        if tensor.data_type in _HALF:
            tensor.CopyFrom(_as_float32(tensor))
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i in _HALF:
                attribute.i = TensorProto.FLOAT
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type in _HALF:
                attribute.t.CopyFrom(_as_float32(attribute.t))
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if value.type.tensor_type.elem_type in _HALF:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    return model


class EmulatedDevice(CudaDevice):
    """The runtime's CudaDevice over the emulated GPU: memory from the GPU, streams, stream contexts and
    synchronization through (emulated) torch.cuda, as on a real GPU."""

    def __init__(self, gpu: EmulatedGPU):
        self.gpu, self.device = gpu, emulated_cuda.DEVICE
        self.poisoned = False  # a host pointer was launched on: every later launch fails
        self.capturing = None  # the EmulatedGraph being captured

    def empty(self, shape, dtype: torch.dtype) -> torch.Tensor:
        return self.gpu.empty(shape, dtype)

    def owns(self, ptr: int, nbytes: int = 1) -> bool:
        return self.gpu.owns(ptr, nbytes)

    def tensor_at(self, ptr: int, shape, dtype: torch.dtype) -> torch.Tensor:
        return self.gpu.tensor_at(ptr, shape, dtype)

    def put(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if isinstance(t, DeviceTensor) and t.dtype == dtype and t.is_contiguous() and t.data_ptr() % 256 == 0 \
                and self.owns(t.data_ptr(), t.numel() * t.element_size()):
            return t
        return self.copy(t, dtype)

    def copy(self, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A new device tensor holding ``t``: a device copy, or a host-to-device copy of a host tensor, on the
        current stream."""
        out = self.empty(t.shape, dtype or t.dtype)
        reads = {"src": t} if isinstance(t, DeviceTensor) else {}
        self.gpu.launch(self.gpu.current_stream(), reads, [out], lambda seen: out.copy_(seen.get("src", t)),
                        what="a copy")
        return out

    def graph(self):
        return EmulatedGraph()

    @contextlib.contextmanager
    def capture(self, graph, stream):
        self.capturing = graph
        try:
            yield
        finally:
            self.capturing = None


class EmulatedGraph:
    def __init__(self):
        self.launches: list[tuple] = []

    def replay(self) -> None:
        """The captured launches, queued on the current stream (as cudaGraphLaunch on torch's current stream)."""
        for context, addresses, shapes in self.launches:
            context.enqueue(context.engine.gpu.current_stream(), addresses, shapes)


def fake_tensorrt(version: str = "10.13.0.35", gpu: EmulatedGPU | None = None) -> types.ModuleType:
    """A module-like namespace to put in sys.modules["tensorrt"]; ``.device`` is its EmulatedDevice,
    ``.launch_seconds`` the simulated time of a plan's launch."""
    gpu = gpu or EmulatedGPU()
    device = EmulatedDevice(gpu)
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")  # a module with a spec, as importlib's finders expect of sys.modules entries
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__, trt.device, trt.gpu, trt.deserialized, trt.built = version, device, gpu, [], []
    trt.launch_seconds, trt.plan_launches = 0.0, 0
    for name in ("float32", "float16", "bfloat16", "int64", "int32", "int8", "bool", "uint8", "fp8"):
        setattr(trt, name, name)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.ExecutionContextAllocationStrategy = types.SimpleNamespace(STATIC=0, ON_PROFILE_CHANGE=1, USER_MANAGED=2)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    # 11 keeps STRONGLY_TYPED only for compatibility (value 0, ignored) and drops the weak-typing flags
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0 if major >= 11 else 1)
    flags = ["REFIT", "WEIGHT_STREAMING", "TF32", "STRIP_PLAN"]
    if major < 11:
        flags += ["FP16", "BF16", "INT8", "FP8"]
    trt.BuilderFlag = types.SimpleNamespace(**{f: f for f in flags})

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity=None):
            self.severity = severity

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, index):
            return self.errors[index]

        def parse_from_file(self, path):
            try:
                model = onnx.load(str(path))  # external data, relative to the file's folder
            except Exception as exc:  # a missing or unreadable side file
                self.errors.append(f"failed to load {path}: {exc}")
                return False
            self.errors += parser_errors(model, version)
            self.network.model = model
            return not self.errors

    class Network:
        def __init__(self, flags):
            self.flags, self.model = flags, None

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            dims = [list(lo), list(opt), list(hi)]
            for which, d in zip(("min", "opt", "max"), dims):
                if any(int(v) < 0 for v in d) or len(d) != len(dims[0]):
                    raise RuntimeError(f"Shape provided for {which} is inconsistent with other shapes.")
            self.shapes[name] = dims

    class TimingCache:
        def __init__(self, data: bytes):
            self.data = data

        def serialize(self):
            return self.data or f"timing-cache {version}".encode()

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.pools, self.cache = set(), [], {}, None
            self.builder_optimization_level = 3

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def add_optimization_profile(self, profile):
            ok = all(all(a <= b <= c for a, b, c in zip(*dims)) and min(dims[0], default=1) >= 1
                     for dims in profile.shapes.values())
            if not ok:
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data):
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.data and cache.data != f"timing-cache {version}".encode() and not ignore_mismatch:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            model = network.model
            strongly_typed = major >= 11 or network.flags & (1 << 1)
            if "WEIGHT_STREAMING" in config.flags and not strongly_typed:
                return None  # 10.x: weight streaming needs a strongly typed network
            inputs = _io(model.graph.input, model)
            profile = config.profiles[0].shapes if config.profiles else {}
            for spec in inputs:
                dims = profile.get(spec["name"])
                dynamic = any(isinstance(d, str) for d in spec["shape"])
                if dims is None and dynamic:
                    return None  # "network has dynamic inputs but no optimization profile"
                if dims is not None and any(len(d) != len(spec["shape"]) or any(
                        isinstance(s, int) and s != v for s, v in zip(spec["shape"], d)) for d in dims):
                    return None  # a profile whose rank or fixed dimensions disagree with the graph
            header = {"version": version, "inputs": inputs, "outputs": _io(model.graph.output, model),
                      "profile": profile, "streamable": sum(t.ByteSize() for t in model.graph.initializer)
                      if "WEIGHT_STREAMING" in config.flags else 0}
            trt.built.append(header)
            return json.dumps(header).encode() + b"\n" + plan_payload(runnable_on_cpu(model))

    class Engine:
        def __init__(self, header, model_bytes):
            import onnxruntime as ort

            self.header, self.contexts, self.gpu = header, 0, gpu
            self.tensors = {s["name"]: ("INPUT", s) for s in header["inputs"]}
            self.tensors.update({s["name"]: ("OUTPUT", s) for s in header["outputs"]})
            self.names = list(self.tensors)
            self._files = tempfile.TemporaryDirectory(prefix="fake-plan-")  # the graph and its weights, as loaded
            options = ort.SessionOptions()
            # Q/DQ computed as written, as TensorRT computes it: onnxruntime's default fuses Q/DQ around a MatMul
            # into its integer kernels, which on AVX2 CPUs lose accuracy TensorRT does not (the third GPU review
            # measured the released DiT's int8 plan at twice its fake-quantization cost that way)
            options.add_session_config_entry("session.disable_quant_qdq", "1")
            self.session = ort.InferenceSession(unpack_plan(model_bytes, Path(self._files.name)), options,
                                                providers=["CPUExecutionProvider"])
            self.streamable_weights_size = header["streamable"]
            self._budget = self.streamable_weights_size
            self._output_shapes: dict[tuple, dict] = {}
            if major < 11:
                self.device_memory_size = 4096

        def output_shapes(self, input_shapes: tuple) -> dict:
            if input_shapes not in self._output_shapes:
                feeds = {n: np.zeros(shape, _numpy_dtype(self.tensors[n][1]["dtype"])) for n, shape in input_shapes}
                names = [s["name"] for s in self.header["outputs"]]
                self._output_shapes[input_shapes] = dict(zip(names, (o.shape for o in self.session.run(names, feeds))))
            return self._output_shapes[input_shapes]

        @property
        def num_io_tensors(self):
            return len(self.names)

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return self.tensors[name][0]

        def get_tensor_dtype(self, name):
            return self.tensors[name][1]["dtype"]

        @property
        def device_memory_size_v2(self):
            streaming = self._budget < self.streamable_weights_size
            return 4096 + (2048 if streaming else 0)  # streaming needs scratch of its own

        @property
        def weight_streaming_budget_v2(self):
            return self._budget

        @weight_streaming_budget_v2.setter
        def weight_streaming_budget_v2(self, value):
            if self.contexts == 0 and 0 <= value <= self.streamable_weights_size:
                self._budget = value  # else TensorRT returns false, which the Python setter drops

        def create_execution_context(self, strategy=0):
            self.contexts += 1
            return Context(self, strategy)

    class Context:
        def __init__(self, engine, strategy):
            self.engine, self.strategy = engine, strategy
            self.shapes, self.addresses = {}, {}
            self.memory = None  # (ptr, size) for USER_MANAGED
            self.launched = False
            self.graph = None

        def set_device_memory(self, ptr, size):
            self.memory = (ptr, size)

        def set_input_shape(self, name, shape):
            mode, spec = self.engine.tensors.get(name, (None, None))
            dims = self.engine.header["profile"].get(name)
            if mode != "INPUT" or len(shape) != len(spec["shape"]):
                return False
            if dims is not None and not all(lo <= s <= hi for s, lo, hi in zip(shape, dims[0], dims[2])):
                return False
            self.shapes[name] = tuple(int(s) for s in shape)
            return True

        def get_tensor_shape(self, name):
            """Inputs: as set. Outputs: -1 where unknown until every input shape is set; then what the network
            computes for those shapes (TensorRT infers them; here the graph runs once per input shapes)."""
            mode, spec = self.engine.tensors[name]
            if mode == "INPUT":
                return self.shapes.get(name, tuple(-1 if isinstance(d, str) else d for d in spec["shape"]))
            if any(s["name"] not in self.shapes for s in self.engine.header["inputs"]):
                return tuple(-1 if isinstance(d, str) else d for d in spec["shape"])
            return self.engine.output_shapes(tuple(sorted(self.shapes.items())))[name]

        def set_tensor_address(self, name, ptr):
            if name not in self.engine.tensors:
                return False
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            if device.poisoned:
                raise RuntimeError(ILLEGAL_ADDRESS)  # sticky: the context is unusable from then on
            if self.strategy == trt.ExecutionContextAllocationStrategy.USER_MANAGED:
                ptr, size = self.memory or (0, 0)
                if size < self.engine.device_memory_size_v2 or ptr % 256 or not device.owns(ptr, size):
                    return False  # TensorRT: "device memory must be set" / too small / not device memory
            if any(n not in self.shapes for n, (m, _) in self.engine.tensors.items() if m == "INPUT"):
                return False
            if device.capturing is not None:
                if not self.launched or self.graph is not None:
                    return False  # capture needs one launch first; one graph per context
                self.graph = device.capturing
                device.capturing.launches.append((self, dict(self.addresses), dict(self.shapes)))
                return True
            self.launched = True
            self.enqueue(gpu.stream_by_handle(stream_handle), dict(self.addresses), dict(self.shapes))
            return True

        def enqueue(self, stream, addresses, shapes):
            """The plan's work on ``stream``: reads its inputs and writes its outputs at the bound addresses."""
            views = {}
            for name, (mode, spec) in self.engine.tensors.items():
                shape = self.get_tensor_shape(name) if mode == "OUTPUT" else shapes[name]
                ptr = addresses.get(name)
                if ptr is None or ptr % 256 or not device.owns(ptr, _nbytes(shape, spec["dtype"])):
                    device.poisoned = True
                    raise RuntimeError(ILLEGAL_ADDRESS)
                views[name] = device.tensor_at(ptr, shape, _TORCH[spec["dtype"]])
            inputs = {n: v for n, v in views.items() if self.engine.tensors[n][0] == "INPUT"}
            outputs = [s["name"] for s in self.engine.header["outputs"]]

            def run(seen):
                feeds = {n: (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy()
                         for n, t in seen.items()}
                for name, value in zip(outputs, self.engine.session.run(outputs, feeds)):
                    views[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))

            gpu.launch(stream, inputs, [views[n] for n in outputs], run, trt.launch_seconds, what="a TensorRT launch")
            trt.plan_launches += 1

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            header, _, model_bytes = bytes(data).partition(b"\n")
            try:
                header = json.loads(header)
            except ValueError:
                return None
            if header.get("version") != version:
                return None  # plans are bound to the TensorRT version that built them
            trt.deserialized.append(header)
            return Engine(header, model_bytes)

    trt.Logger, trt.OnnxParser, trt.Builder, trt.Runtime = Logger, OnnxParser, Builder, Runtime
    return trt


def _io(values, model) -> list[dict]:
    initializers = {t.name for t in model.graph.initializer}
    out = []
    for v in values:
        if v.name in initializers:
            continue
        t = v.type.tensor_type
        shape = [d.dim_param or "?" if not d.HasField("dim_value") else d.dim_value for d in t.shape.dim]
        out.append({"name": v.name, "dtype": _ONNX_TO_TRT[t.elem_type], "shape": shape})
    return out


def _numpy_dtype(dtype: str):
    """What the runnable (float32 for half precision) graph takes for a plan dtype."""
    return np.float32 if dtype in ("bfloat16", "float16") else torch.empty((), dtype=_TORCH[dtype]).numpy().dtype


def _nbytes(shape, dtype: str) -> int:
    count = int(np.prod(shape)) if len(shape) else 1
    return count * torch.empty((), dtype=_TORCH[dtype]).element_size()


def write_fake_plan(trt, onnx_path: Path, plan_path: Path, profile: dict) -> None:
    """A plan the stand-in runs, built through its builder API from ``onnx_path``."""
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, trt.Logger())
    assert parser.parse_from_file(str(onnx_path)), parser.errors
    config = builder.create_builder_config()
    p = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        p.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(p)
    plan_path.write_bytes(builder.build_serialized_network(network, config))


def install(monkeypatch, version: str = "10.13.0.35", capability: tuple[int, int] = (9, 0)):
    """This machine, as far as the toolkit can tell, becomes one with TensorRT (the stand-in) and a GPU of
    ``capability`` (Hopper by default; emulated_cuda). Returns the stand-in; ``.gpu`` is the emulated GPU."""
    from tcpade_trt.engines.tensorrt import plans as trt_plans

    gpu = emulated_cuda.install_cuda(monkeypatch, capability=capability)
    fake = fake_tensorrt(version, gpu)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake)
    monkeypatch.setattr(trt_plans, "default_device", lambda: fake.device)
    return fake
