"""TensorRT execution of an engine folder (tensorrt backend). Imported lazily; needs a CUDA GPU.

Each part is one deserialized plan with one execution context. Per call the context gets the
concrete input shapes and the device addresses of torch tensors (inputs as given, outputs
allocated once per shape and reused), then ``execute_async_v3`` on one CUDA stream shared by
all parts, which the runtime also runs its torch ops on (EngineModel.stream), so reads and writes
stay ordered without host syncs. Callers get copies of the outputs, not the reused buffers: a
cache policy holds some across calls (a residual history, TeaCache's previous modulated input),
and a device-to-device copy costs microseconds next to a block stack. Contexts are created
without their own scratch memory where TensorRT allows it (USER_MANAGED), and one scratch buffer
sized for the largest part is shared, as NVIDIA's diffusion demo does. With ``cuda_graphs=True``
each part's launch is captured once per input shape into a CUDA graph and replayed (static
shapes only: the inputs are copied into captured buffers first).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..engines.trt_backend import TensorRTError, gpu_identity, import_tensorrt


def require_tensorrt_runtime(manifest) -> None:
    """Refuse a TensorRT folder this machine cannot run, saying what differs."""
    trt = import_tensorrt()
    built = manifest.versions.get("tensorrt")
    if built != trt.__version__:  # plans are bound to the TensorRT version that built them
        raise TensorRTError(f"the plans were built with TensorRT {built}, this machine has {trt.__version__}: "
                            "rebuild the engine folder here.")
    here = gpu_identity()
    if manifest.versions.get("gpu") and here.get("gpu") != manifest.versions["gpu"]:
        raise TensorRTError(f"the plans were built for {manifest.versions['gpu']}, this machine has "
                            f"{here.get('gpu', 'no GPU')}: TensorRT plans are tied to their GPU; rebuild here.")
    if not torch.cuda.is_available():
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
    """One TensorRT plan called with named torch tensors, like runtime.engine_model.OrtPart."""

    def __init__(self, name: str, plan: Path, runtime, stream=None, shared_scratch=None, cuda_graphs: bool = False):
        trt = import_tensorrt()
        self.name, self.trt = name, trt
        self.engine = runtime.deserialize_cuda_engine(Path(plan).read_bytes())
        if self.engine is None:
            raise TensorRTError(f"TensorRT could not deserialize {plan} (built for another TensorRT or GPU?); "
                                "rebuild the engine folder on this machine.")
        strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
        user_managed = shared_scratch is not None and strategy is not None
        self.context = (self.engine.create_execution_context(strategy.USER_MANAGED) if user_managed
                        else self.engine.create_execution_context())
        if self.context is None:
            raise TensorRTError(f"TensorRT could not create an execution context for {plan} (out of GPU memory?).")
        if user_managed:
            self.context.set_device_memory(shared_scratch.data_ptr(), shared_scratch.numel())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self.stream = stream
        self.cuda_graphs = cuda_graphs
        self._outputs: dict[tuple, dict[str, torch.Tensor]] = {}  # input shapes -> preallocated outputs
        self._graphs: dict[tuple, tuple] = {}  # input shapes -> (graph, static inputs, outputs)

    def scratch_bytes(self) -> int:
        size = getattr(self.engine, "device_memory_size_v2", None)
        return int(size if size is not None else self.engine.device_memory_size)

    def _bind(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        key = tuple(tuple(inputs[n].shape) for n in self.input_names)
        for n in self.input_names:
            if not self.context.set_input_shape(n, tuple(inputs[n].shape)):
                raise TensorRTError(f"the {self.name} plan refuses input {n} of shape {list(inputs[n].shape)}: it is "
                                    "outside the built profile; rebuild with a matching --batch-max / resolution.")
            self.context.set_tensor_address(n, inputs[n].data_ptr())
        if key not in self._outputs:
            self._outputs[key] = {n: torch.empty(tuple(self.context.get_tensor_shape(n)), dtype=self.dtypes[n],
                                                 device=inputs[self.input_names[0]].device) for n in self.output_names}
        for n, t in self._outputs[key].items():
            self.context.set_tensor_address(n, t.data_ptr())
        return self._outputs[key]

    def _launch(self) -> None:
        handle = self.stream.cuda_stream if self.stream is not None else 0
        if not self.context.execute_async_v3(handle):
            raise TensorRTError(f"TensorRT failed to run the {self.name} plan.")

    def __call__(self, named: dict[str, torch.Tensor],
                 outputs: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """Copies of the plan's outputs (all, or the named ``outputs``): the bound buffers are reused
        by the next call, and policies keep some outputs across calls."""
        inputs = {n: named[n].to(self.dtypes[n]).contiguous() for n in self.input_names}
        wanted = self.output_names if outputs is None else list(outputs)
        if not self.cuda_graphs:
            bound = self._bind(inputs)
            self._launch()
            return {n: bound[n].clone() for n in wanted}
        key = tuple(tuple(inputs[n].shape) for n in self.input_names)
        if key not in self._graphs:
            static = {n: t.clone() for n, t in inputs.items()}
            bound = self._bind(static)
            self._launch()  # TensorRT needs one launch before capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self._launch()
            self._graphs[key] = (graph, static, bound)
        graph, static, bound = self._graphs[key]
        for n, t in inputs.items():
            static[n].copy_(t)
        graph.replay()
        return {n: bound[n].clone() for n in wanted}


def load_trt_parts(folder: Path, manifest, cuda_graphs: bool = False) -> tuple[dict[str, TrtPart], torch.cuda.Stream]:
    """Every plan of the folder on one stream, with one shared scratch allocation; returns the parts
    and that stream (the runtime queues its torch ops on it too)."""
    trt = import_tensorrt()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    stream = torch.cuda.Stream()
    parts = {name: TrtPart(name, folder / entry.file, runtime, stream=stream, cuda_graphs=cuda_graphs)
             for name, entry in manifest.parts.items()}
    scratch_size = max((p.scratch_bytes() for p in parts.values()), default=0)
    if scratch_size and hasattr(trt, "ExecutionContextAllocationStrategy"):
        scratch = torch.empty(scratch_size, dtype=torch.uint8, device="cuda")
        parts = {name: TrtPart(name, folder / entry.file, runtime, stream=stream, shared_scratch=scratch,
                               cuda_graphs=cuda_graphs) for name, entry in manifest.parts.items()}
        for part in parts.values():
            part.shared_scratch = scratch  # keeps the allocation alive as long as the parts
    return parts, stream
