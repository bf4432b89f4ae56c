"""ModelOpt's FP8 export -> standard ONNX Q/DQ with FP8 weights, which onnxruntime (simulated, for the
build's accuracy check) and TensorRT (strongly typed, explicit quantization) both run.

The TorchScript exporter turns ModelOpt's FP8 fake-quant into TensorRT's custom ops
``trt::TRT_FP8QuantizeLinear`` / ``TRT_FP8DequantizeLinear`` with the weights still in full
precision. This rewrite, with the onnx API alone (no modelopt.onnx / onnx_graphsurgeon):

- turns them into ``QuantizeLinear`` (float8e4m3fn zero point, saturate=1) and ``DequantizeLinear``
  (opset >= 19);
- folds every weight's Q into an FP8 initializer ``e4m3(W / s)`` feeding its DequantizeLinear, with
  the Transposes of nn.Linear folded in, so that TensorRT sees W8 -> DQ -> MatMul (exact: the scale
  is per tensor and W / s is rounded once, as ModelOpt's fake quantization does); weights shrink 4x;
- drops the exporter's stale uint8 type information on the Q outputs (onnxruntime rejects it) and
  the ``trt`` opset import.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

ZERO_POINT = "fp8_zero_point"


def _fp8_bytes(x: np.ndarray) -> bytes:
    """float32 -> E4M3FN bytes, round to nearest even, saturated at +-448 (E4M3's largest finite value)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).clamp(-448.0, 448.0)
    return t.to(torch.float8_e4m3fn).view(torch.uint8).numpy().tobytes()


class _Graph:
    """Lookups over a GraphProto: constants (initializers and Constant nodes), producers, consumers."""

    def __init__(self, graph: onnx.GraphProto):
        self.g = graph
        self.inits = {t.name: t for t in graph.initializer}
        self.consts = {n.output[0]: n.attribute[0].t for n in graph.node
                       if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def constant(self, name: str) -> np.ndarray | None:
        tensor = self.inits[name] if name in self.inits else self.consts.get(name)
        if tensor is None:
            return None
        value = numpy_helper.to_array(tensor)
        if tensor.data_type == TensorProto.BFLOAT16 and value.dtype == np.uint16:  # raw bf16 bits
            return (value.astype(np.uint32) << 16).view(np.float32)
        return value.astype(np.float32)


def _perm(node) -> list[int] | None:
    perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
    return perm[0] if perm else None


def _transpose(w: np.ndarray, node) -> np.ndarray:
    perm = _perm(node)
    return np.transpose(w, perm) if perm else w.T


def rewrite_trt_fp8_qdq(model: onnx.ModelProto) -> dict:
    """Rewrite ``model`` in place (see the module docstring); returns counts of what changed."""
    g = model.graph
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < 19:
            raise ValueError(f"FP8 QuantizeLinear needs opset >= 19; this graph is opset {o.version}")
    touched, counts = set(), {"quantize": 0, "dequantize": 0, "weights_folded": 0, "transposes_folded": 0}
    for node in g.node:
        if node.op_type == "TRT_FP8QuantizeLinear":
            node.op_type, node.domain = "QuantizeLinear", ""
            del node.input[2:]
            node.input.append(ZERO_POINT)
            node.attribute.append(helper.make_attribute("saturate", 1))
            touched.add(node.output[0])
            counts["quantize"] += 1
        elif node.op_type == "TRT_FP8DequantizeLinear":
            node.op_type, node.domain = "DequantizeLinear", ""
            touched.add(node.output[0])
            counts["dequantize"] += 1

    graph, remove, new_inits = _Graph(g), set(), []
    outputs = {o.name for o in g.output}
    for q in [n for n in g.node if n.op_type == "QuantizeLinear"]:
        src, before = q.input[0], None
        producer = graph.producer.get(src)
        if graph.constant(src) is None and producer is not None and producer.op_type == "Transpose" \
                and graph.constant(producer.input[0]) is not None:
            before, src = producer, producer.input[0]  # Constant W -> Transpose -> Q
        w = graph.constant(src)
        dqs = graph.consumers.get(q.output[0], [])
        if w is None or not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
            continue  # an activation's Q stays
        if before is not None:
            w = _transpose(w, before)
            if len(graph.consumers.get(before.output[0], [])) == 1:
                remove.add(id(before))
                counts["transposes_folded"] += 1
        if len(dqs) == 1:  # DQ -> Transpose -> MatMul (nn.Linear on 3-D inputs): store W8 transposed instead
            after = graph.consumers.get(dqs[0].output[0], [])
            if len(after) == 1 and after[0].op_type == "Transpose" and after[0].output[0] not in outputs:
                users = graph.consumers.get(after[0].output[0], [])
                if users and all(u.op_type in ("MatMul", "Gemm") for u in users):
                    w = _transpose(w, after[0])
                    for u in users:
                        for i, name in enumerate(u.input):
                            if name == after[0].output[0]:
                                u.input[i] = dqs[0].output[0]
                    remove.add(id(after[0]))
                    touched.add(dqs[0].output[0])  # its recorded shape is now transposed
                    counts["transposes_folded"] += 1
        scale = graph.constant(q.input[1])
        if scale is None:
            raise ValueError(f"the scale {q.input[1]} of a weight's QuantizeLinear is not a constant")
        w8 = TensorProto(name=f"{src}_fp8", data_type=TensorProto.FLOAT8E4M3FN, dims=list(w.shape),
                         raw_data=_fp8_bytes(w / scale))
        new_inits.append(w8)
        for d in dqs:
            d.input[0] = w8.name
        remove.add(id(q))
        counts["weights_folded"] += 1

    kept = [n for n in g.node if id(n) not in remove]
    del g.node[:]
    g.node.extend(kept)
    _drop_unused(g)
    g.initializer.extend(new_inits)
    if counts["quantize"]:
        g.initializer.append(helper.make_tensor(ZERO_POINT, TensorProto.FLOAT8E4M3FN, [], [0.0]))
    stale = [v for v in g.value_info if v.name not in touched]  # the exporter typed Q outputs uint8
    del g.value_info[:]
    g.value_info.extend(stale)
    used_domains = {n.domain for n in g.node}
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx") or o.domain in used_domains]
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    return counts


def _drop_unused(g: onnx.GraphProto) -> None:
    """Constant nodes and initializers nothing reads any more (the folded full-precision weights)."""
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type == "Constant" and n.output[0] not in used]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
