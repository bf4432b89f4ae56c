"""How far an engine may differ from torch (relative L2), and at which batch sizes every build checks it.

Shared by the build's stages (builder/) and the backends' own checks (engines/<backend>/): a TensorRT plan, an
OpenVINO compiled model and an onnxruntime session are judged by the same rules.
"""

from __future__ import annotations

from .parts import BuildShape

# relative L2 error of each ONNX graph against torch that a build accepts (onnxruntime's CPU kernels)
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2, "int8": 0.1, "fp8": 0.2}
# relative L2 that a compiled engine may differ by: its kernels reorder sums (TensorRT runs fp32 matmuls in TF32,
# OpenVINO's CPU plugin may run them in bf16 where the CPU has it)
ENGINE_TOLERANCE = {"fp32": 1e-2, "fp16": 2e-2, "bf16": 5e-2, "int8": 0.1, "fp8": 0.2}

# What kernels add on top of a quantization recipe's own cost: bf16 accumulation, inputs landing across a rounding
# boundary. A quantized engine is judged against the recipe's measured cost plus this margin, not a fixed figure:
# INT8 error grows with depth (28 blocks of DiT-XL/2, 57 of FLUX.1), and a fixed tolerance would either stop sound
# builds or pass broken plans.
KERNEL_MARGIN = 5e-2


def quantized_tolerance(precision: str, table: dict, quantization: dict | None) -> float:
    """The tolerance of a quantized engine: ``table[precision]``, or the recipe's measured cost plus KERNEL_MARGIN
    where that is larger."""
    error = (quantization or {}).get("quantization_error")
    return table[precision] if error is None else max(table[precision], error + KERNEL_MARGIN)


def check_batches(shape: BuildShape) -> tuple[int, ...]:
    """The batch sizes every engine is checked at: both ends of the folder's range (an exporter that baked
    the example's batch into the graph fails at the other)."""
    return tuple(sorted({shape.batch_min, shape.batch_max}))
