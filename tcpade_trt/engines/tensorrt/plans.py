"""TensorRT execution of an engine folder (tensorrt backend). Imported lazily; needs a CUDA GPU.

Loading (``load_trt_parts``), as NVIDIA's diffusion demo does it:
- every plan is deserialized once;
- with a weight-streaming budget, the blocks plan's ``weight_streaming_budget_v2`` is set before
  any execution context exists (TensorRT refuses a change while contexts live; its default, the
  whole streamable size, means "stream nothing");
- one scratch allocation, sized by the largest ``device_memory_size_v2`` of the engines (an engine
  property: no context needed), is shared by every context (USER_MANAGED + set_device_memory);
- every part runs on one CUDA stream, which the runtime also queues its torch ops on.

Calling a part: inputs are put on the engine's device first (TensorRT reads every address as
device memory: a host pointer is an illegal memory access that poisons the CUDA context) and
256-byte aligned; shapes are set (refused outside the built profile); outputs are allocated once per
input shape; ``execute_async_v3`` runs on the stream. Callers get copies of the outputs: the bound
buffers are reused by the next call and policies keep some outputs across calls.

CUDA graphs (``cuda_graphs=True``): one execution context per captured input shape (one graph per
context, as trtexec and the diffusion demo do), launched once before its capture (TensorRT's
first enqueue initialises lazily); replay copies the inputs into the captured buffers. Not with
weight streaming: TensorRT then enqueues synchronously, which cannot be captured.

Everything CUDA goes through ``CudaDevice``; tests substitute an emulated device and a stand-in for
TensorRT's API that rejects what TensorRT rejects (tests/fake_tensorrt.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .. import gpu
from .build import TensorRTError, gpu_identity, import_tensorrt

if TYPE_CHECKING:  # TensorRT's types for the static check (scripts/typecheck_tensorrt.sh); imported lazily at run time
    import tensorrt

ALIGNMENT = 256  # bytes: what TensorRT requires of every tensor address


class CudaDevice:
    """Where the plans' tensors live and the CUDA facilities the runtime uses: torch's allocator,
    streams and graphs."""

    def __init__(self, index: int = 0):
        self.device = torch.device("cuda", index)

    def empty(self, shape, dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(tuple(shape), dtype=dtype, device=self.device)

    def put(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``t`` as a contiguous, aligned tensor of ``dtype`` on this device (a no-op when it is one)."""
        t = t.to(device=self.device, dtype=dtype).contiguous()
        return t if t.data_ptr() % ALIGNMENT == 0 else t.clone()  # e.g. the second half of a CFG batch

    def copy(self, t: torch.Tensor) -> torch.Tensor:
        """A new device tensor holding ``t`` (same dtype and shape)."""
        return t.clone()

    def stream(self):
        return torch.cuda.Stream(self.device)

    def on(self, stream):
        return torch.cuda.stream(stream)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def graph(self):
        return torch.cuda.CUDAGraph()

    def capture(self, graph, stream):
        return torch.cuda.graph(graph, stream=stream)


def require_tensorrt_runtime(manifest) -> None:
    """Refuse a TensorRT folder this machine cannot run, saying what differs."""
    import_tensorrt()  # one sentence when TensorRT is missing or too old
    import tensorrt as trt
    built = manifest.versions.get("tensorrt")
    if built != trt.__version__:  # plans are bound to the TensorRT version that built them
        raise TensorRTError(f"the plans were built with TensorRT {built}, this machine has {trt.__version__}: "
                            "rebuild the engine folder here.")
    here = gpu_identity()
    if manifest.versions.get("gpu") and here.get("gpu") != manifest.versions["gpu"]:
        raise TensorRTError(f"the plans were built for {manifest.versions['gpu']}, this machine has "
                            f"{here.get('gpu', 'no GPU')}: TensorRT plans are tied to their GPU; rebuild here.")
    if not gpu.available():
        raise TensorRTError("TensorRT plans run on a CUDA GPU and none is visible.")


def torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8,
             trt.bool: torch.bool}
    for name, torch_type in (("bfloat16", torch.bfloat16), ("int64", torch.int64), ("fp8", torch.float8_e4m3fn)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = torch_type
    if dtype not in table:
        raise TensorRTError(f"a plan uses the TensorRT dtype {dtype}, which has no torch equivalent here.")
    return table[dtype]


class TrtPart:
    """One deserialized TensorRT plan called with named torch tensors, like engines/onnxruntime/runner.OrtPart."""

    def __init__(self, name: str, engine: tensorrt.ICudaEngine, device: CudaDevice, stream,
                 scratch: torch.Tensor | None = None, cuda_graphs: bool = False, keep_alive=None):
        import_tensorrt()  # one sentence when TensorRT is missing or too old
        import tensorrt as trt
        self.name, self.engine, self.device, self.stream = name, engine, device, stream
        self.scratch, self.cuda_graphs = scratch, cuda_graphs
        self._keep_alive = keep_alive  # the trt.Runtime that deserialized the engine
        self.closed = False
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: torch_dtype(trt, engine.get_tensor_dtype(n)) for n in names}
        self._context: tensorrt.IExecutionContext | None = None  # without graphs: one context, rebound per call
        self._outputs: dict[tuple, dict[str, torch.Tensor]] = {}  # input shapes -> bound output buffers
        self._graphs: dict[tuple, tuple] = {}  # input shapes -> (graph, its context, static inputs, outputs)

    def _new_context(self) -> tensorrt.IExecutionContext:
        """An execution context on the shared scratch memory (or TensorRT's own, without one)."""
        import_tensorrt()  # one sentence when TensorRT is missing or too old
        import tensorrt as trt
        if self.scratch is not None:
            context = self.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
            if context is not None:
                context.set_device_memory(self.scratch.data_ptr(), self.scratch.numel())
        else:
            context = self.engine.create_execution_context()
        if context is None:
            raise TensorRTError(f"TensorRT could not create an execution context for the {self.name} plan "
                                "(out of GPU memory?).")
        return context

    def _bind(self, context: tensorrt.IExecutionContext, inputs: dict[str, torch.Tensor],
              outputs: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """Shapes and addresses of ``inputs`` on ``context``; output buffers allocated unless given."""
        for n in self.input_names:
            if not context.set_input_shape(n, tuple(inputs[n].shape)):
                raise TensorRTError(f"the {self.name} plan refuses input {n} of shape {list(inputs[n].shape)}: it is "
                                    "outside the built profile; rebuild with a matching --batch-max / resolution.")
            self._address(context, n, inputs[n])
        if outputs is None:
            outputs = {}
            for n in self.output_names:
                dims = context.get_tensor_shape(n)
                shape = tuple(dims[i] for i in range(len(dims)))
                if any(d < 0 for d in shape):
                    raise TensorRTError(f"the {self.name} plan's output {n} has no fixed shape {list(shape)} for "
                                        "these inputs (data-dependent shapes are not supported).")
                outputs[n] = self.device.empty(shape, self.dtypes[n])
        for n, t in outputs.items():
            self._address(context, n, t)
        return outputs

    def _address(self, context: tensorrt.IExecutionContext, name: str, tensor: torch.Tensor) -> None:
        if not context.set_tensor_address(name, tensor.data_ptr()):  # False: the plan has no such tensor
            raise TensorRTError(f"the {self.name} plan has no input or output named {name!r} (it has "
                                f"{', '.join(self.input_names + self.output_names)}): the plan does not match its "
                                "manifest; rebuild the engine folder.")

    def _launch(self, context: tensorrt.IExecutionContext) -> None:
        if not context.execute_async_v3(self.stream.cuda_stream):
            raise TensorRTError(f"TensorRT failed to run the {self.name} plan.")

    def close(self) -> None:
        """Release the plan's contexts, CUDA graphs and buffers, then the engine (the caller has synchronized the
        stream: nothing queued may still use them). TensorRT frees each when its last reference goes."""
        if self.closed:
            return
        for graph, *_ in self._graphs.values():
            if hasattr(graph, "reset"):
                graph.reset()
        self._graphs.clear()
        self._outputs.clear()
        self._context = None  # the contexts before their engine, the engine before its runtime
        del self.engine
        self.scratch = self._keep_alive = None
        self.closed = True

    def __call__(self, named: dict[str, torch.Tensor],
                 outputs: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """Copies of the plan's outputs (all, or the named ``outputs``)."""
        if self.closed:
            raise TensorRTError(f"the {self.name} plan was closed; open the folder again.")
        wanted = self.output_names if outputs is None else list(outputs)
        with self.device.on(self.stream):  # whoever calls, the plan's work and these copies share one stream
            inputs = {n: self.device.put(named[n], self.dtypes[n]) for n in self.input_names}
            key = tuple(tuple(inputs[n].shape) for n in self.input_names)
            if self.cuda_graphs:
                bound = self._replay(key, inputs)
            else:
                context = self._context = self._context or self._new_context()
                bound = self._outputs[key] = self._bind(context, inputs, self._outputs.get(key))
                self._launch(context)
            return {n: self.device.copy(bound[n]) for n in wanted}

    def _replay(self, key: tuple, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if key not in self._graphs:
            context = self._new_context()  # one graph per context
            static = {n: self.device.copy(t) for n, t in inputs.items()}
            bound = self._bind(context, static, None)
            self._launch(context)  # TensorRT's first launch initialises lazily: not something to capture
            self.device.synchronize()
            graph = self.device.graph()
            with self.device.capture(graph, self.stream):
                self._launch(context)
            self._graphs[key] = (graph, context, static, bound)
        graph, _, static, bound = self._graphs[key]
        for n, t in inputs.items():
            static[n].copy_(t)
        graph.replay()
        return bound


def parse_budget(spec: str | int, streamable: int) -> int:
    """A weight-streaming budget: bytes (an int), 'N%' of the streamable weights, or 'N GB' (GiB)."""
    text = str(spec).strip().replace(" ", "")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(%|GB|GiB|MB|MiB)?", text, flags=re.IGNORECASE)
    if not match:
        raise TensorRTError(f"weight-streaming budget {spec!r}: give a percentage of the streamable weights "
                            "(40%), a size (12GB) or bytes.")
    value, unit = float(match.group(1)), (match.group(2) or "").lower()
    scale = {"%": streamable / 100, "gb": 1 << 30, "gib": 1 << 30, "mb": 1 << 20, "mib": 1 << 20, "": 1}[unit]
    budget = int(value * scale)
    if budget > streamable:
        raise TensorRTError(f"weight-streaming budget {spec} is more than the plan's {streamable / (1 << 30):.2f} GiB "
                            "of streamable weights; give at most 100%.")
    return budget


def set_weight_streaming_budget(engine: tensorrt.ICudaEngine, spec: str | int, cuda_graphs: bool) -> int:
    """Keep ``spec`` of the blocks plan's weights on the GPU and stream the rest from host memory; must
    run before any execution context of the engine exists. Returns the budget in bytes."""
    streamable = int(getattr(engine, "streamable_weights_size", 0) or 0)
    if streamable == 0:
        raise TensorRTError("the blocks plan was built without weight streaming; rebuild it with --weight-streaming "
                            "to set a budget.")
    if cuda_graphs:
        raise TensorRTError("with weight streaming TensorRT launches synchronously, which a CUDA graph cannot "
                            "capture: drop --cuda-graphs or the budget.")
    budget = parse_budget(spec, streamable)
    engine.weight_streaming_budget_v2 = budget
    if int(engine.weight_streaming_budget_v2) != budget:  # the Python setter drops TensorRT's refusal
        raise TensorRTError(f"TensorRT did not accept a weight-streaming budget of {budget} bytes.")
    return budget


def default_device() -> CudaDevice:
    """The device plans run on (tests replace this with an emulated one)."""
    return CudaDevice()


class PlanSession:
    """A TrtPart behind onnxruntime's ``run(None, feeds)``: numpy in, float32 numpy out in ``order`` (what
    the build's accuracy check calls)."""

    def __init__(self, part: TrtPart, order):
        self.part, self.order = part, list(order)

    def run(self, names, feeds):
        # the outputs are ready on the plans' stream only (a non-blocking pool stream: the default stream is not
        # ordered after it), so they are read on it: .cpu() there waits for the plan and the copies
        with self.part.device.on(self.part.stream):
            out = self.part({n: torch.from_numpy(v) for n, v in feeds.items()})
            return [out[n].float().cpu().numpy() for n in (names or self.order)]


def load_trt_parts(folder: Path, files: dict[str, str], cuda_graphs: bool = False, weight_streaming_budget=None,
                   device: CudaDevice | None = None) -> tuple[dict[str, TrtPart], object]:
    """The plans ``files`` (part name -> file in ``folder``), each deserialized once, on one stream with one
    shared scratch allocation; returns the parts and that stream (the runtime queues its torch ops on it)."""
    import_tensorrt()  # one sentence when TensorRT is missing or too old
    import tensorrt as trt
    device = device or default_device()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engines = {}
    for name, file in files.items():
        engine = runtime.deserialize_cuda_engine((Path(folder) / file).read_bytes())
        if engine is None:
            raise TensorRTError(f"TensorRT could not deserialize {file} (built for another TensorRT or GPU?); "
                                "rebuild the engine folder on this machine.")
        engines[name] = engine
    if weight_streaming_budget is not None:
        set_weight_streaming_budget(engines["blocks"], weight_streaming_budget, cuda_graphs)
    # after the budget: the scratch a streaming engine needs depends on it
    scratch_size = max(int(engine.device_memory_size_v2) for engine in engines.values())
    scratch = device.empty((scratch_size,), torch.uint8) if scratch_size else None
    stream = device.stream()
    parts = {name: TrtPart(name, engine, device, stream, scratch, cuda_graphs, keep_alive=runtime)
             for name, engine in engines.items()}
    return parts, stream
