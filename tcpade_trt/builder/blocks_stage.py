"""The build's second stage: the block stack in its precision (INT8, FP8, or bf16 / fp16), replacing or writing
blocks.onnx, checked against torch where onnxruntime can run it (a bf16 graph is checked when its backend compiles
it, engines/<backend>/).

    int8                the backend's own recipe where it has one (onnxruntime: dynamic or static QDQ from the fp32
                        graph, engines/onnxruntime/int8.py), else NVIDIA's ModelOpt recipe (engines/modelopt_quant.py)
    fp8                 ModelOpt, on the model as loaded (bf16 on a GPU, fp32 on the host), exported as Q/DQ
    bf16 / fp16         the blocks exported in that dtype (TensorRT builds strongly typed networks)
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from ..engines import registry
from ..engines.manifest import PartEntry
from ..export.onnx_export import ExportError, check_part, export_part
from ..export.parts import example_tensors
from ..export.tolerances import KERNEL_MARGIN, TOLERANCE, check_batches, quantized_tolerance  # noqa: F401
from ..models.model import Model
from .parts_stage import ort_session

SCOPE = "blocks only: prepare, head (embedders), tail (norm_out, proj_out) and the Padé graphs stay fp32"

# What a ModelOpt recipe may change the blocks' output by (relative L2 of the fake-quantized torch blocks against
# the unquantized ones, on the inputs every check uses) before the build refuses it as unusable; the engine is then
# judged against that measured cost (export/tolerances.quantized_tolerance).
QUANTIZATION_LIMIT = {"int8": 0.25, "fp8": 0.3}


def quantize_blocks(model: Model, folder: Path, entry: PartEntry, options, axes: dict) -> dict:
    """Write blocks.onnx quantized (checked against torch by ``check_quantized_blocks``); returns the recipe for
    the manifest. ``axes``: the batch axis of every named tensor (export/parts.batch_axes)."""
    from ..engines.modelopt_quant import quantize_blocks_modelopt
    from .quantization_inputs import collect_block_inputs

    recipe = {"method": None, "scope": SCOPE}

    def calibration_feeds():  # block inputs on real trajectories, and the manifest's record of them
        feeds, conditioning = collect_block_inputs(model, options.shape, options.calibration_samples,
                                                   options.calibration_steps, options.calibration_seed)
        return feeds, _calibration(options, feeds, conditioning)

    own = (registry.backend(options.backend).quantize_int8(model, folder / "blocks.onnx", options, calibration_feeds)
           if options.precision == "int8" else None)
    if own is not None:  # the backend's own INT8 form (onnxruntime's), from the fp32 graph
        recipe.update(own)
    else:
        feeds, calibration = calibration_feeds()
        example = example_tensors(model, options.shape, batch=max(2, options.shape.batch_opt))
        recipe.update(quantize_blocks_modelopt(model, options.precision, feeds, example, axes, folder / "blocks.onnx",
                                               measure=lambda session: _quantization_cost(session, model, options)))
        recipe["calibration"] = calibration
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
