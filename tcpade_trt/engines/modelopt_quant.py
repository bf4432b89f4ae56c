"""ModelOpt (nvidia-modelopt) post-training quantization of the block stack: FP8 for both backends,
INT8 SmoothQuant for TensorRT.

FP8 (NVIDIA's recipe for FLUX, measured on the demo model): per-tensor E4M3 weights and inputs of the
block stack's linear layers, "max" calibration on block inputs of seeded trajectories; kept in full
precision: the adaLN modulation linears (they make the shift / scale / gate every token is
multiplied by; quantizing them costs accuracy for little time) and each block's timestep and class
embedders (DiT); attention (q / k / v products, softmax) stays unquantized. The embedders (head),
norm_out / proj_out (tail) and the Padé graphs are separate engines that are never quantized.
On the shipped demo model this gives 0.008 relative L2 against torch where onnxruntime's own FP8
calibration ('Distribution') gave 0.23 (research note of 2026-12-01: variants in docs/measurements.md).

Export: the TorchScript exporter (ModelOpt's fake quantization does not pass torch.export), with the
traceable forms of export/traceable.py (the originals bake the example's batch into the graph, which then
fails at any other batch); FP8 is then rewritten to standard Q/DQ with FP8 weights (export/fp8_qdq.py),
INT8 already is standard.
A model on a GPU is quantized in bf16 there (NVIDIA's way, and no fp32 copy of a 12B model in host
memory); on a CPU in fp32.
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
from ..export.traceable import traceable

SMOOTHQUANT_ALPHA = 0.8  # the migration strength NVIDIA's diffusers example uses for FLUX / SD3 / SDXL
OPSET = 19  # float8 QuantizeLinear needs 19
FP8_E4M3 = {"num_bits": (4, 3), "axis": None}  # per tensor
# quantizer name patterns (of PartModule(model, "blocks")) that stay in full precision, in every family
KEEP_HIGH_PRECISION = (
    "*norm1.linear.*", "*norm1_context.linear.*", "*single_transformer_blocks.*.norm.linear.*",  # adaLN (FLUX, DiT)
    "*norm1.emb.*",  # DiT: each block's timestep / class embedder
    "*x_embedder*", "*context_embedder*", "*time_text_embed*", "*norm_out*", "transformer.proj_out.*",  # head/tail
)


def modelopt_available() -> bool:
    import warnings

    try:
        with warnings.catch_warnings():  # ModelOpt warns at import about transformers versions it has not tested
            warnings.simplefilter("ignore")
            import modelopt.torch.quantization  # noqa: F401
    except ImportError:
        return False
    return True


def require_modelopt(precision: str) -> None:
    """One sentence when ModelOpt is missing or older than the recipes need (and its import warning silenced
    once)."""
    if not modelopt_available():
        raise TcpadeError(f"{precision} quantization uses NVIDIA's ModelOpt recipe: pip install 'tcpade-trt[gpu]' "
                          "(or nvidia-modelopt alone).")
    import modelopt

    from ..versions import require_modelopt_for_recipes

    require_modelopt_for_recipes(getattr(modelopt, "__version__", "0"))


# ModelOpt's INT8 ONNX export casts a quantizer's input to this dtype for Q/DQ and (0.47, export_onnx.export_int8)
# never casts back: left at "Float", every op after the first Q/DQ of a bf16 model runs in fp32 in the plan
HIGH_PRECISION = {torch.bfloat16: "BFloat16", torch.float16: "Half", torch.float32: "Float"}


def recipe_config(precision: str, dtype: torch.dtype = torch.float32) -> dict:
    """The ModelOpt config: the linear layers of the block stack quantized (FP8 E4M3 per tensor with "max"
    calibration, or INT8 per-channel weights and per-tensor inputs with SmoothQuant alpha SMOOTHQUANT_ALPHA),
    nothing else: ModelOpt's INT8 preset also quantizes the inputs of every LayerNorm (the residual stream, 0.08
    relative L2 on tiny-dit) and, from 0.45, embeddings; KEEP_HIGH_PRECISION stays in full precision."""
    if precision == "fp8":
        weights, inputs, algorithm = dict(FP8_E4M3), dict(FP8_E4M3), "max"
    elif precision == "int8":
        weights, inputs = {"num_bits": 8, "axis": 0}, {"num_bits": 8, "axis": None}  # as ModelOpt's INT8 preset
        for cfg in (weights, inputs):  # the plan computes in the model's dtype between the quantized GEMMs
            cfg["trt_high_precision_dtype"] = HIGH_PRECISION[dtype]
        # the preset names the algorithm by a string ("smoothquant", alpha 1.0); a dict carries alpha
        algorithm = {"method": "smoothquant", "alpha": SMOOTHQUANT_ALPHA}
    else:
        raise TcpadeError(f"ModelOpt quantization covers int8 and fp8, not {precision}.")
    quant_cfg = [
        {"quantizer_name": "*", "enable": False},  # deny all, then enable what the recipe quantizes
        {"quantizer_name": "*weight_quantizer", "parent_class": "nn.Linear", "cfg": weights},
        {"quantizer_name": "*input_quantizer", "parent_class": "nn.Linear", "cfg": inputs},
        *({"quantizer_name": name, "enable": False} for name in KEEP_HIGH_PRECISION),  # later entries win
    ]
    return {"quant_cfg": quant_cfg, "algorithm": algorithm}


def quantize_blocks(model, precision: str, feeds: list[dict[str, np.ndarray]], example: dict | None = None):
    """A fake-quantized copy of the blocks part, calibrated on ``feeds`` (in bf16 on a GPU, else fp32). ``example``
    (export/parts.example_tensors) tells each input's dtype as the model makes it."""
    import modelopt.torch.quantization as mtq

    require_modelopt(precision)
    module = copy.deepcopy(PartModule(model, "blocks")).eval()
    if next(module.parameters()).device.type == "cuda":
        module.to(torch.bfloat16)  # NVIDIA quantizes FLUX in bf16 on the GPU
    dtypes = input_dtypes(module, example)

    def forward_loop(m):
        for feed in feeds:
            m(*(_module_tensor(module, feed[n], dtypes.get(n)) for n in module.input_names))

    with torch.no_grad(), _quiet():
        return mtq.quantize(module, recipe_config(precision, next(module.parameters()).dtype),
                            forward_loop=forward_loop)


def input_dtypes(module: torch.nn.Module, example: dict | None) -> dict[str, torch.dtype]:
    """Input name -> the dtype the model itself makes it (a bf16 FLUX's RoPE tables stay float32); empty without an
    example, where floats take the module's dtype."""
    return {n: example[n].dtype for n in module.input_names if example and n in example}


def _module_tensor(module: torch.nn.Module, array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A feed (host arrays are float32) on the module's device: floats in ``dtype`` (the model's own for that input)
    or else the module's; integers (DiT's class labels, which index an embedding) as they are."""
    parameter = next(module.parameters())
    t = torch.from_numpy(np.ascontiguousarray(array)).to(parameter.device)
    if not t.is_floating_point():
        return t
    return t.to(dtype if dtype is not None and dtype.is_floating_point else parameter.dtype)


class TorchSession:
    """The fake-quantized torch module behind onnxruntime's ``run(None, feeds)``, so that export/onnx_export.check_part
    measures what the quantization itself costs (against the unquantized model, on the inputs every check uses)."""

    def __init__(self, module: torch.nn.Module, dtypes: dict[str, torch.dtype] | None = None):
        self.module, self.dtypes = module, dtypes or {}

    def run(self, _outputs, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad(), _quiet():
            out = self.module(*(_module_tensor(self.module, feeds[n], self.dtypes.get(n))
                                for n in self.module.input_names))
        return [o.float().cpu().numpy() for o in out]


def export_quantized_blocks(quantized, precision: str, example: dict, batch_axes: dict, out: Path) -> dict:
    """TorchScript export of the quantized blocks to ``out`` (standard Q/DQ; FP8 weights for fp8)."""
    import onnx

    from ..export.fp8_qdq import rewrite_trt_fp8_qdq

    # each input in the dtype the model itself makes it (a bf16 model's RoPE tables stay float32)
    args = tuple(example[n] for n in quantized.input_names)
    dynamic = {n: {batch_axes[n]: "batch"} for n in quantized.input_names if batch_axes.get(n) is not None}
    dynamic.update({n: {0: "batch"} for n in quantized.output_names})  # x_out, residual: batch first
    with onnx_files.scratch_folder(out, "modelopt") as scratch, torch.no_grad(), _quiet(), traceable(quantized):
        # over 2 GB the exporter writes one external-data file per tensor beside the graph: it exports into a
        # scratch folder, and the graph is saved again with one <file>.data
        raw = Path(scratch) / out.name
        torch.onnx.export(quantized, args, str(raw), dynamo=False, input_names=list(quantized.input_names),
                          output_names=list(quantized.output_names), dynamic_axes=dynamic, opset_version=OPSET,
                          do_constant_folding=True)
        graph = onnx.load(str(raw))
        counts = rewrite_trt_fp8_qdq(graph) if precision == "fp8" else {}
        onnx_files.save_model(graph, out, external=onnx_files.needs_external_data(graph))
        del graph
    # checked by path: the checker serializes an in-memory proto, which fails above protobuf's 2 GB (FLUX.1 FP8)
    onnx.checker.check_model(str(out))
    return counts


def quantize_blocks_modelopt(model, precision: str, feeds: list[dict[str, np.ndarray]], example: dict,
                             batch_axes: dict, out: Path, measure=None) -> dict:
    """Quantize the blocks with the recipe, calibrate on ``feeds``, export to ``out``; returns the recipe
    for the manifest. ``measure(session)``, if given, returns what the fake-quantized blocks (as a TorchSession)
    differ from the model by; it goes into the recipe as ``quantization_error``, before the export."""
    quantized = quantize_blocks(model, precision, feeds, example)
    error = measure(TorchSession(quantized, input_dtypes(quantized, example))) if measure else None
    counts = export_quantized_blocks(quantized, precision, example, batch_axes, out)
    dtype = str(next(quantized.parameters()).dtype).replace("torch.", "")
    config = recipe_config(precision, next(quantized.parameters()).dtype)
    if precision == "fp8":
        method = (f"ModelOpt FP8 E4M3 per-tensor max (weights and inputs of the linear layers, quantized in {dtype}; "
                  f"{counts.get('weights_folded', 0)} FP8 weights), standard Q/DQ ONNX opset {OPSET}")
    else:
        method = f"ModelOpt INT8 SmoothQuant alpha {SMOOTHQUANT_ALPHA}, Q/DQ ONNX opset {OPSET}"
    return {"method": method, "algorithm": config["algorithm"], "kept_in_full_precision": list(KEEP_HIGH_PRECISION),
            "graph_dtype": dtype, **({"quantization_error": error} if error is not None else {})}
