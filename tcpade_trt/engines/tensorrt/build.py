"""TensorRT: plans from the same ONNX files, for TensorRT 10.x and 11.x. Imported lazily.

Per-version choices (``builder_plan``, pure Python and tested on CPU):
- TensorRT 11 removed weak typing: no FP16/BF16/INT8/FP8 builder flags; precision comes only from
  the ONNX dtypes and explicit Q/DQ nodes (strongly typed networks).
- TensorRT 10 still has the flags; we build strongly typed there too when the graph carries its
  precision (Q/DQ, bf16/fp16 ONNX), and use the FP16/BF16 flags only for an fp32 graph asked to
  run in reduced precision.
- FP8 needs compute capability >= 8.9 (Ada, Hopper); FP4 >= 10.0.
Every TensorRT return value is checked; a failure is one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import TcpadeError
from ...versions import version_tuple
from .. import gpu

MIN_CAPABILITY = {"fp8": (8, 9), "bf16": (8, 0), "int8": (6, 1), "fp16": (5, 3), "fp32": (0, 0)}


class TensorRTError(TcpadeError):
    """TensorRT is missing, or a TensorRT call failed."""


MIN_TENSORRT = (10, 1)  # set_device_memory, device_memory_size_v2 and weight_streaming_budget_v2 arrived in 10.1


def import_tensorrt():
    """The tensorrt module, or one sentence: missing, or older than MIN_TENSORRT."""
    import importlib

    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        trt = None
    version = getattr(trt, "__version__", None)
    if version is None:  # absent, or only its type stubs (an empty namespace package)
        raise TensorRTError("the tensorrt backend needs TensorRT: pip install 'tcpade-trt[gpu]' on a machine with an "
                            "NVIDIA GPU (TensorRT's libraries come from NVIDIA's package index).")
    if version_tuple(version) < MIN_TENSORRT:
        raise TensorRTError(f"TensorRT {version} is too old: tcpade-trt needs TensorRT >= "
                            f"{'.'.join(map(str, MIN_TENSORRT))} (shared scratch memory and weight streaming); "
                            "pip install -U 'tensorrt>=10.1'.")
    return trt


def gpu_identity() -> dict:
    """Name and compute capability of GPU 0, or {} without a GPU."""
    return gpu.identity()


def tensorrt_versions() -> dict:
    import_tensorrt()  # one sentence when TensorRT is missing or too old
    import tensorrt as trt
    return {"tensorrt": trt.__version__, **gpu_identity()}


def check_precision_supported(precision: str, capability: tuple[int, int] | None) -> None:
    """Refuse a precision the GPU cannot run, with the reason."""
    if capability is None:
        raise TensorRTError("no CUDA GPU is visible: TensorRT engines are built on the GPU they will run on.")
    need = MIN_CAPABILITY.get(precision, (0, 0))
    if tuple(capability) < need:
        raise TensorRTError(f"{precision} needs a GPU of compute capability >= {need[0]}.{need[1]}; this one is "
                            f"{capability[0]}.{capability[1]}. Build with a different --precision "
                            "(bf16 or int8) or on an Ada / Hopper GPU.")


def check_build_machine(precision: str) -> None:
    """What a TensorRT build needs, checked before the minutes of export: TensorRT itself and a GPU that
    runs ``precision`` (plans are built on the GPU they will run on)."""
    import_tensorrt()
    check_precision_supported(precision, gpu.capability())


@dataclass
class BuilderPlan:
    """What to ask the builder for, decided from the TensorRT version and the graph's precision."""

    strongly_typed: bool
    flags: list[str] = field(default_factory=list)  # BuilderFlag names to set
    optimization_level: int = 3
    weight_streaming: bool = False


def builder_plan(trt_major: int, precision: str, graph_carries_precision: bool, optimization_level: int = 3,
                 refittable: bool = False, weight_streaming: bool = False) -> BuilderPlan:
    """The per-version configuration: pure decision logic, no TensorRT import.

    graph_carries_precision: the ONNX already has the target dtypes / Q/DQ nodes (bf16 export,
    quantized blocks); False for an fp32 graph that should run in fp16/bf16.
    """
    flags = ["REFIT"] if refittable else []
    if trt_major >= 11:
        if not graph_carries_precision and precision not in ("fp32",):
            raise TensorRTError(f"TensorRT {trt_major} builds only strongly typed networks: export the graph in "
                                f"{precision} (or with Q/DQ nodes) instead of asking the builder for it.")
        return BuilderPlan(True, flags, optimization_level, weight_streaming)
    if graph_carries_precision or precision == "fp32":
        return BuilderPlan(True, flags, optimization_level, weight_streaming)
    if weight_streaming:
        raise TensorRTError("weight streaming needs a strongly typed network: export the blocks in the target "
                            "precision instead of relying on builder flags.")
    flag = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8", "fp8": "FP8"}[precision]
    return BuilderPlan(False, [*flags, flag], optimization_level, False)


def profile_shapes(inputs: list[dict], batch_min: int, batch_opt: int, batch_max: int) -> dict[str, tuple]:
    """min / opt / max shape per input, with "batch" replaced by the batch range."""
    out = {}
    for spec in inputs:
        dims = spec["shape"]
        batches = (batch_min, batch_opt, batch_max)
        out[spec["name"]] = tuple(tuple(b if d == "batch" else d for d in dims) for b in batches)
    return out


# ops TensorRT's ONNX parser has no importer for, that this toolkit's own graphs may hold, and what to build instead
_FUSED = "onnxruntime's fused kernels: rebuild with --no-ort-fusions"
_DYNAMIC_INT8 = "onnxruntime's dynamic INT8 form: build --backend tensorrt --precision int8 (ModelOpt SmoothQuant)"
PARSER_ADVICE = {"FastGelu": _FUSED, "SkipSimplifiedLayerNormalization": _FUSED, "SimplifiedLayerNormalization": _FUSED,
                 "MatMulInteger": _DYNAMIC_INT8, "DynamicQuantizeLinear": _DYNAMIC_INT8}


def parse_failure(onnx_path: Path, errors: list[str]) -> TensorRTError:
    """One sentence for a graph TensorRT's parser refused: which ops, what to do, the parser's first words."""
    import re

    ops = sorted(set(re.findall(r"operator: (\w+)", " ".join(errors))))
    advice = sorted({PARSER_ADVICE[op] for op in ops if op in PARSER_ADVICE})
    what = f"it has no importer for {', '.join(ops)}" if ops else "the parser refused it"
    return TensorRTError(f"TensorRT cannot parse {onnx_path.name}: {what} ({errors[0][:200] if errors else ''})"
                         + (f"; {'; '.join(advice)}." if advice else "."))


def build_plan_file(onnx_path: Path, plan_path: Path, inputs: list[dict], shape: dict, plan: BuilderPlan,
                    workspace_gb: float = 8.0, timing_cache: str | None = None) -> None:
    """Parse ONNX, build a serialized engine, write it to ``plan_path`` (all through TensorRT's API)."""
    import_tensorrt()  # one sentence when TensorRT is missing or too old
    import tensorrt as trt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise parse_failure(onnx_path, [str(parser.get_error(i)) for i in range(parser.num_errors)])
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    config.builder_optimization_level = plan.optimization_level
    for name in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.weight_streaming:
        config.set_flag(trt.BuilderFlag.WEIGHT_STREAMING)
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(inputs, shape["batch_min"], shape["batch_opt"], shape["batch_max"])
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    if config.add_optimization_profile(profile) < 0:
        raise TensorRTError(f"TensorRT refused the optimization profile of {onnx_path.name} ({shapes}); the "
                            "folder's batch range or resolution does not fit the graph's inputs.")
    cache_file = Path(timing_cache) if timing_cache else None
    if cache_file is not None:
        cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            raise TensorRTError(f"TensorRT refused the timing cache {timing_cache} (made by another TensorRT or "
                                "GPU?); delete it or pass another --timing-cache.")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError(f"TensorRT failed to build {onnx_path.name} (see the TensorRT log above).")
    with open(plan_path, "wb") as f:  # from TensorRT's buffer: no second host copy of a 15 GB plan
        f.write(serialized)
    if cache_file is not None:
        cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))


def build_plans(folder: Path, entries: dict, options) -> None:
    """A .plan next to every .onnx of the folder; entries then point at the plans (their sources stay,
    hashed with them). plan_check.py runs each against torch before the folder is sealed."""
    import_tensorrt()  # one sentence when TensorRT is missing or too old
    import tensorrt as trt

    check_precision_supported(options.precision, gpu.capability())
    major = version_tuple(trt.__version__)[0]
    for name, entry in entries.items():
        carries = True  # quantized blocks carry Q/DQ, bf16 / fp16 blocks were exported in that dtype
        plan = builder_plan(major, options.precision if name == "blocks" else "fp32", carries,
                            options.tensorrt.optimization_level, options.tensorrt.refittable,
                            options.tensorrt.weight_streaming and name == "blocks")
        onnx_path = folder / entry.file
        plan_path = onnx_path.with_suffix(".plan")
        build_plan_file(onnx_path, plan_path, entry.inputs, options.shape.as_dict(), plan,
                        options.tensorrt.workspace_gb, options.tensorrt.timing_cache)
        entry.file = plan_path.name
        entry.extra_files = [onnx_path.name]  # kept: the source of the plan, hashed with it
