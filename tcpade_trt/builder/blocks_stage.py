"""The build's second stage: the block stack in its precision (INT8, FP8, or TensorRT's bf16 / fp16), replacing
or writing blocks.onnx, checked against torch where onnxruntime can run it (a bf16 graph is checked as a
TensorRT plan, builder/plan_check.py).

    int8, onnxruntime   dynamic per-channel S8 written one weight at a time (engines/int8_dynamic.py), or
                        onnxruntime's static QDQ calibrated on trajectories, from the fp32 graph
    int8, tensorrt      NVIDIA's ModelOpt recipes (engines/modelopt_quant.py) on the model as loaded (bf16 on a
    fp8, both           GPU, fp32 on the host), exported as standard Q/DQ
    bf16 / fp16         the blocks exported in that dtype (TensorRT builds strongly typed networks)
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from ..engines.manifest import PartEntry
from ..export.onnx_export import ExportError, check_part, export_part
from ..export.onnx_files import move_model, referenced_data_files, scratch_folder
from ..export.parts import example_tensors
from ..models.model import Model
from .parts_stage import TOLERANCE, check_batches, ort_session

SCOPE = "blocks only: prepare, head (embedders), tail (norm_out, proj_out) and the Padé graphs stay fp32"

# What a ModelOpt recipe may change the blocks' output by (relative L2 of the fake-quantized torch blocks against
# the unquantized ones, on the inputs every check uses) before the build refuses it as unusable. The engine is then
# judged against that measured cost plus KERNEL_MARGIN, not a fixed figure: INT8 error grows with depth (28 blocks
# of DiT-XL/2, 57 of FLUX.1), and a fixed tolerance would either stop sound builds or pass broken plans.
QUANTIZATION_LIMIT = {"int8": 0.25, "fp8": 0.3}
# what kernels add on top of the quantization: bf16 accumulation, inputs landing across a rounding boundary
KERNEL_MARGIN = 5e-2


def quantized_tolerance(precision: str, table: dict, quantization: dict | None) -> float:
    """The tolerance of a quantized engine: ``table[precision]``, or the recipe's measured cost plus KERNEL_MARGIN
    where that is larger."""
    error = (quantization or {}).get("quantization_error")
    return table[precision] if error is None else max(table[precision], error + KERNEL_MARGIN)


def quantize_blocks(model: Model, folder: Path, entry: PartEntry, options, axes: dict) -> dict:
    """Write blocks.onnx quantized (checked against torch by ``check_quantized_blocks``); returns the recipe for
    the manifest. ``axes``: the batch axis of every named tensor (export/parts.batch_axes)."""
    from ..engines.modelopt_quant import quantize_blocks_modelopt
    from .calibration import collect_block_inputs

    recipe = {"method": None, "scope": SCOPE}
    if options.precision == "int8" and options.backend == "onnxruntime":
        recipe.update(_onnxruntime_int8(model, folder / "blocks.onnx", options))
    else:
        feeds, conditioning = collect_block_inputs(model, options.shape, options.calibration_samples,
                                                   options.calibration_steps, options.calibration_seed)
        example = example_tensors(model, options.shape, batch=max(2, options.shape.batch_opt))
        recipe.update(quantize_blocks_modelopt(model, options.precision, feeds, example, axes, folder / "blocks.onnx",
                                               measure=lambda session: _quantization_cost(session, model, options)))
        recipe["calibration"] = _calibration(options, feeds, conditioning)
    entry.precision = options.precision
    return recipe


def _quantization_cost(session, model: Model, options) -> float:
    """Relative L2 of the fake-quantized blocks (``session``) against the model; refused above QUANTIZATION_LIMIT."""
    precision = options.precision
    error = check_part(session, model, "blocks", options.shape, math.inf, batches=check_batches(options.shape))
    limit = QUANTIZATION_LIMIT[precision]
    if not error <= limit:
        raise ExportError(f"the {precision} recipe changes the blocks' output by {error:.2e} (relative L2 against the "
                          f"unquantized model), more than the {limit} a usable quantization keeps; build this model "
                          f"at {'fp8 or bf16' if precision == 'int8' else 'bf16'} instead.")
    return error


def _onnxruntime_int8(model: Model, dst: Path, options) -> dict:
    """onnxruntime's INT8 forms, from the fp32 graph at ``dst`` (replaced)."""
    from ..engines.int8_dynamic import quantize_int8_dynamic
    from ..engines.ort_backend import quantize_static_qdq
    from .calibration import collect_block_inputs

    # the fp32 graph (and its external data) moves aside under its own name, so that its references hold
    # and the quantized graph can take blocks.onnx / blocks.onnx.data; the scratch folder goes with it
    with scratch_folder(dst, "fp32") as scratch:
        src = Path(scratch) / dst.name
        move_model(dst, src)
        external = bool(referenced_data_files(src))
        if options.int8_mode == "dynamic":
            report = quantize_int8_dynamic(src, dst, external)
            recipe = {"method": "dynamic INT8 (onnxruntime's MatMulInteger form, written one weight at a time): "
                                "per-column S8 weights of every MatMul / Gemm with a constant weight",
                      "quantized_matmuls": report.matmuls}
            if report.skipped:
                recipe["left_float"] = report.skipped
            return recipe
        feeds, conditioning = collect_block_inputs(model, options.shape, options.calibration_samples,
                                                   options.calibration_steps, options.calibration_seed)
        quantize_static_qdq(src, dst, feeds, external=external)
        return {"method": "onnxruntime static QDQ INT8 per-channel (MatMul, Gemm)",
                "calibration": _calibration(options, feeds, conditioning)}


def _calibration(options, feeds, conditioning: str) -> dict:
    return {"samples": options.calibration_samples, "steps": options.calibration_steps,
            "seed": options.calibration_seed, "feeds": len(feeds), "conditioning": conditioning}


def check_quantized_blocks(model: Model, folder: Path, entry: PartEntry, options, recipe: dict) -> None:
    if recipe.get("graph_dtype") == "bfloat16":
        entry.check_error = None  # checked as a plan (tensorrt backend only, see BuildOptions.validate)
    else:
        tolerance = quantized_tolerance(options.precision, TOLERANCE, recipe)
        entry.check_error = check_part(ort_session(folder / entry.file), model, "blocks", options.shape, tolerance,
                                       batches=check_batches(options.shape))


def export_reduced_precision_blocks(model: Model, folder: Path, entry: PartEntry, options, axes: dict) -> dict:
    """TensorRT bf16 / fp16: blocks.onnx exported from the model in that dtype (as loaded on a GPU, else a cast
    copy), so that the graph carries its precision (TensorRT 11 builds strongly typed networks only). Its I/O is
    bf16 / fp16; the runtime casts at the boundary. onnxruntime's CPU kernels cannot run it, so it is checked when
    TensorRT builds the plan."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[options.precision]
    cast = model
    if model.dtype != dtype:
        family = copy.copy(model.family)
        family.dtype = dtype
        cast = Model(model.name, family, type(model.parts)(copy.deepcopy(model.transformer).to(dtype), family))
    io = export_part(cast, "blocks", options.shape, folder / "blocks.onnx", options.opset, axes)
    entry.inputs, entry.outputs = io["inputs"], io["outputs"]
    entry.precision, entry.check_error = options.precision, None
    return {"method": f"blocks exported in {options.precision} (strongly typed)", "scope": "blocks only"}
