"""ModelOpt (nvidia-modelopt) post-training quantization of the block stack, for TensorRT.

Recipe (NVIDIA's for FLUX): FP8 E4M3 per-tensor "max" calibration, or INT8 SmoothQuant; both
calibrated on block inputs from seeded trajectories. Only the blocks part is quantized: the
embedders (head), norm_out / proj_out (tail) and the Padé graph are separate, unquantized engines
by construction. Exported with the TorchScript exporter (ModelOpt's fake-quant nodes do not pass
torch.export), which needs an ONNX symbolic for aten::rms_norm; FP8 comes out as TensorRT's
TRT_FP8QuantizeLinear / DequantizeLinear custom ops (TensorRT runs them, onnxruntime cannot).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from ..errors import TcpadeError
from ..export import onnx_files
from ..export.onnx_export import _quiet
from ..export.parts import PartModule


def modelopt_available() -> bool:
    try:
        import modelopt.torch.quantization  # noqa: F401
    except ImportError:
        return False
    return True


def recipe_config(precision: str):
    """The ModelOpt config for a precision: FP8 default (per-tensor max) or INT8 SmoothQuant."""
    import modelopt.torch.quantization as mtq

    if precision == "fp8":
        return copy.deepcopy(mtq.FP8_DEFAULT_CFG)
    if precision == "int8":
        config = copy.deepcopy(mtq.INT8_SMOOTHQUANT_CFG)
        algorithm = config.get("algorithm")
        if isinstance(algorithm, dict):
            algorithm["alpha"] = 0.8  # the SmoothQuant strength NVIDIA uses for FLUX
        return config
    raise TcpadeError(f"ModelOpt quantization covers int8 and fp8, not {precision}.")


def _rms_norm_symbolic(g, x, normalized_shape, weight, eps):
    """aten::rms_norm for the TorchScript exporter: x / sqrt(mean(x^2, last axis) + eps) * weight."""
    from torch.onnx import symbolic_helper as sh

    eps_value = None if sh._is_none(eps) else sh._maybe_get_const(eps, "f")
    eps_value = 1e-6 if eps_value is None else float(eps_value)
    mean_square = g.op("ReduceMean", g.op("Mul", x, x), axes_i=[-1], keepdims_i=1)
    y = g.op("Div", x, g.op("Sqrt", g.op("Add", mean_square, g.op("Constant", value_t=torch.tensor(eps_value)))))
    return y if sh._is_none(weight) else g.op("Mul", y, weight)


def quantize_blocks_modelopt(model, precision: str, feeds: list[dict[str, np.ndarray]], example: dict,
                             batch_axes: dict, out: Path, opset: int = 17) -> dict:
    """Quantize the blocks part with ModelOpt, calibrate on ``feeds``, export ONNX with Q/DQ to ``out``."""
    import modelopt.torch.quantization as mtq

    module = PartModule(model, "blocks").eval()
    quantized = copy.deepcopy(module)

    def forward_loop(m):
        for feed in feeds:
            m(*(torch.from_numpy(feed[n]).to(model.device) for n in module.input_names))

    with torch.no_grad(), _quiet():
        quantized = mtq.quantize(quantized, recipe_config(precision), forward_loop=forward_loop)
    torch.onnx.register_custom_op_symbolic("aten::rms_norm", _rms_norm_symbolic, opset)
    args = tuple(example[n] for n in module.input_names)
    dynamic = {n: {batch_axes[n]: "batch"} for n in module.input_names if batch_axes.get(n) is not None}
    with onnx_files.scratch_folder(out, "modelopt") as scratch, torch.no_grad(), _quiet():
        # over 2 GB the TorchScript exporter writes one external-data file per tensor beside the graph:
        # it exports into a scratch folder, and the graph is re-saved with one <file>.data
        target = Path(scratch) / out.name
        torch.onnx.export(quantized, args, str(target), dynamo=False, input_names=list(module.input_names),
                          output_names=list(module.output_names), dynamic_axes=dynamic, opset_version=opset)
        if onnx_files.referenced_data_files(target):
            onnx_files.consolidate(target, out)
        else:
            onnx_files.move_model(target, out)
    return {"method": f"ModelOpt {'FP8 E4M3 per-tensor max' if precision == 'fp8' else 'INT8 SmoothQuant alpha 0.8'}"
                      f" (nvidia-modelopt), Q/DQ ONNX opset {opset}",
            "runs_on": "TensorRT" if precision == "fp8" else "TensorRT and onnxruntime"}
