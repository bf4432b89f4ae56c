"""onnxruntime's fused kernels for the ops the exporter writes out one by one (onnxruntime folders only).

torch.onnx at opset 18 writes a tanh-GELU as Pow / Mul / Add / Tanh / Mul / Add / Mul and an RMSNorm
as Pow / ReduceMean / Add / Sqrt / Reciprocal / Mul / Mul: one pass over the tensor per op, where
onnxruntime has one kernel for each (com.microsoft FastGelu, with the preceding bias add folded in,
and SimplifiedLayerNormalization). onnxruntime's session optimizer does not match the exporter's
patterns; its transformers fusions do, so an onnxruntime build rewrites each exported part with them
before checking it against torch. On the demo model's block stack: 8 FastGelu and 16
SimplifiedLayerNormalization nodes, about 1.2x faster on CPU, outputs within 2e-7.

TensorRT builds keep the standard-op graphs: TensorRT fuses pointwise chains itself and has no
com.microsoft ops (for the same reason, onnxruntime's TensorRT execution provider would hand these
nodes to CUDA kernels: build with ``--no-ort-fusions``, BuildOptions(ort_fusions=False), for it).
"""

from __future__ import annotations

import collections
from pathlib import Path

FUSED_OPS = ("FastGelu", "SimplifiedLayerNormalization")


def fuse_for_onnxruntime(path: Path) -> dict[str, int]:
    """Rewrite the ONNX file at ``path`` in place with onnxruntime's fusions; returns {fused op: count}.

    Called on files inside a build's temporary folder, which becomes the engine folder only once
    complete, so rewriting in place never leaves a half-written engine folder behind."""
    import onnx
    from onnxruntime.transformers.fusion_biasgelu import FusionBiasGelu
    from onnxruntime.transformers.fusion_fastgelu import FusionFastGelu
    from onnxruntime.transformers.fusion_simplified_layernorm import FusionSimplifiedLayerNormalization
    from onnxruntime.transformers.onnx_model import OnnxModel

    from ...export.onnx_files import referenced_data_files, save_model

    path = Path(path)
    external = bool(referenced_data_files(path))  # parts over 2 GB keep their weights beside them
    model = OnnxModel(onnx.load(str(path)))  # loads external weights into memory too
    FusionFastGelu(model).apply()
    FusionBiasGelu(model, is_fastgelu=True).apply()  # MatMul's bias add into the FastGelu that follows
    FusionSimplifiedLayerNormalization(model).apply()
    model.prune_graph(allow_remove_graph_inputs=False)  # the engine keeps its interface, used or not
    counts = collections.Counter(n.op_type for n in model.model.graph.node)
    fused = {op: counts[op] for op in FUSED_OPS if counts[op]}
    if fused:
        if not any(o.domain == "com.microsoft" for o in model.model.opset_import):
            model.model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
        save_model(model.model, path, external)
    return fused
