"""A stand-in for TensorRT's Python API (10.x / 11.x) and an emulated CUDA device, for CPU machines.

It behaves like TensorRT where this project relies on it, so that tests fail on the mistakes the real
library punishes (facts: research on TensorRT's bindings and headers, shared/design/DEPLOYMENT_FACTS.md):

- addresses: ``set_tensor_address`` and ``set_device_memory`` take device pointers, 256-byte aligned,
  of sufficient size; a host pointer is found at ``execute_async_v3`` as an illegal memory access
  that poisons the device for every later launch (CUDA errors are sticky);
- contexts: ``USER_MANAGED`` contexts need ``set_device_memory`` (10.1+) of at least the engine's
  ``device_memory_size_v2`` before a launch; 11.x has no ``device_memory_size``; the weight-streaming
  budget cannot change while contexts exist (the Python setter drops TensorRT's refusal);
- shapes: ``set_input_shape`` returns False outside the built profile; output shapes are -1 until
  every input shape is set; an optimization profile missing an input fails the build;
- parsing: onnxruntime's com.microsoft ops have no importer; external data is read relative to the
  ONNX file; TensorRT 11 has no FP16/BF16/INT8/FP8 builder flags and STRONGLY_TYPED is 0;
- CUDA graphs: a context must be launched once before its launch is captured, and carries one graph.

Plans are real enough to run: a plan holds its ONNX graph, and a launch runs it with onnxruntime on
the tensors found at the bound (emulated device) addresses, writing the outputs where they are bound.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import types
from pathlib import Path

import numpy as np
import onnx
import torch

ILLEGAL_ADDRESS = "CUDA error 700: an illegal memory access was encountered"
_NUMPY = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "int8": np.int8,
          "bool": np.bool_}
_ONNX_TO_TRT = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
                onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32",
                onnx.TensorProto.INT8: "int8", onnx.TensorProto.BOOL: "bool"}
_TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int64": torch.int64,
          "int32": torch.int32, "int8": torch.int8, "bool": torch.bool}


class EmulatedDevice:
    """CudaDevice's interface over host memory that only this object hands out: an address is device
    memory only if it lies in one of its allocations (all 256-byte aligned, as cudaMalloc's are)."""

    def __init__(self):
        self.allocations: list[tuple[int, int, torch.Tensor]] = []  # (start, end, backing buffer)
        self.poisoned = False
        self.capturing = None  # the EmulatedGraph being captured
        self._streams = itertools.count(0x1000)

    def empty(self, shape, dtype: torch.dtype) -> torch.Tensor:
        count = int(np.prod(shape)) if len(shape) else 1
        nbytes = max(count * torch.empty((), dtype=dtype).element_size(), 1)
        raw = torch.empty(nbytes + 256, dtype=torch.uint8)
        offset = (-raw.data_ptr()) % 256
        view = raw[offset: offset + nbytes].view(dtype)[:count].view(tuple(shape))
        self.allocations.append((view.data_ptr(), view.data_ptr() + nbytes, raw))
        return view

    def owns(self, ptr: int, nbytes: int = 1) -> bool:
        return any(start <= ptr and ptr + nbytes <= end for start, end, _ in self.allocations)

    def put(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if (t.dtype == dtype and t.is_contiguous() and t.data_ptr() % 256 == 0
                and self.owns(t.data_ptr(), t.numel() * t.element_size())):
            return t
        out = self.empty(t.shape, dtype)
        out.copy_(t)
        return out

    def copy(self, t: torch.Tensor) -> torch.Tensor:
        out = self.empty(t.shape, t.dtype)
        out.copy_(t)
        return out

    def tensor_at(self, ptr: int, shape, dtype: torch.dtype) -> torch.Tensor:
        """The device memory at ``ptr`` seen as a tensor (the view TensorRT would read or write)."""
        for start, end, raw in self.allocations:
            if start <= ptr < end:
                count = int(np.prod(shape)) if len(shape) else 1
                offset = ptr - raw.data_ptr()
                return raw[offset: offset + count * torch.empty((), dtype=dtype).element_size()].view(dtype).view(
                    tuple(shape))
        raise AssertionError("not device memory")

    def stream(self):
        return types.SimpleNamespace(cuda_stream=next(self._streams))

    def on(self, stream):
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        pass

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
        for context, addresses, shapes in self.launches:
            context._run(addresses, shapes)


def fake_tensorrt(version: str = "10.13.0.35", device: EmulatedDevice | None = None) -> types.SimpleNamespace:
    """A module-like namespace to put in sys.modules["tensorrt"], and ``.device`` (the EmulatedDevice)."""
    device = device or EmulatedDevice()
    major = int(version.split(".")[0])
    trt = types.SimpleNamespace(__version__=version, device=device, deserialized=[], built=[])
    for name in ("float32", "float16", "bfloat16", "int64", "int32", "int8", "bool", "fp8"):
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
            for node in model.graph.node:
                if node.domain not in ("", "ai.onnx", "trt"):
                    self.errors.append(f"No importer registered for op: {node.op_type} (domain {node.domain})")
            self.network.model = model
            return not self.errors

    class Network:
        def __init__(self, flags):
            self.flags, self.model = flags, None

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = [list(lo), list(opt), list(hi)]

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
            ok = all(all(a <= b <= c for a, b, c in zip(*dims)) and min(dims[0]) >= 1
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
            return json.dumps(header).encode() + b"\n" + model.SerializeToString()

    class Engine:
        def __init__(self, header, model_bytes):
            import onnxruntime as ort

            self.header, self.contexts = header, 0
            self.tensors = {s["name"]: ("INPUT", s) for s in header["inputs"]}
            self.tensors.update({s["name"]: ("OUTPUT", s) for s in header["outputs"]})
            self.names = list(self.tensors)
            self.session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
            self.streamable_weights_size = header["streamable"]
            self._budget = self.streamable_weights_size
            if major < 11:
                self.device_memory_size = 4096

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
            mode, spec = self.engine.tensors[name]
            if mode == "INPUT":
                return self.shapes.get(name, tuple(-1 if isinstance(d, str) else d for d in spec["shape"]))
            known = {}
            for s in self.engine.header["inputs"]:
                if s["name"] not in self.shapes:
                    return tuple(-1 if isinstance(d, str) else d for d in spec["shape"])
                known.update({d: v for d, v in zip(s["shape"], self.shapes[s["name"]]) if isinstance(d, str)})
            return tuple(known.get(d, -1) if isinstance(d, str) else d for d in spec["shape"])

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
            self._run(dict(self.addresses), dict(self.shapes))
            return True

        def _run(self, addresses, shapes):
            feeds = {}
            for name, (mode, spec) in self.engine.tensors.items():
                size = _nbytes(self.get_tensor_shape(name) if mode == "OUTPUT" else shapes[name], spec["dtype"])
                ptr = addresses.get(name)
                if ptr is None or ptr % 256 or not device.owns(ptr, size):
                    device.poisoned = True
                    raise RuntimeError(ILLEGAL_ADDRESS)
                if mode == "INPUT":
                    t = device.tensor_at(ptr, shapes[name], _TORCH[spec["dtype"]])
                    feeds[name] = t.float().numpy() if spec["dtype"] == "bfloat16" else t.numpy()
            names = [s["name"] for s in self.engine.header["outputs"]]
            for name, value in zip(names, self.engine.session.run(names, feeds)):
                spec = self.engine.tensors[name][1]
                device.tensor_at(addresses[name], value.shape, _TORCH[spec["dtype"]]).copy_(torch.from_numpy(value))

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


def _nbytes(shape, dtype: str) -> int:
    return int(np.prod(shape)) * torch.empty((), dtype=_TORCH[dtype]).element_size() if len(shape) else \
        torch.empty((), dtype=_TORCH[dtype]).element_size()


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
    """This machine, as far as a TensorRT build can tell, becomes one with the stand-in TensorRT and an
    emulated GPU of ``capability`` (Hopper by default). Returns the stand-in."""
    from tcpade_trt.engines import trt_plans

    fake = fake_tensorrt(version)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Emulated GPU")
    monkeypatch.setattr(trt_plans, "default_device", lambda: fake.device)
    return fake
