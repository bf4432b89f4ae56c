"""Dynamic INT8 quantization of a graph one weight at a time, so that a 5 GB block stack never sits in
memory whole (onnxruntime's ``quantize_dynamic`` loads the graph with its data, infers shapes on a
copy and quantizes into a third: 4x the weights at its peak, 12 GB for DiT-XL/2).

The result is what ``quantize_dynamic(per_channel=True, reduce_range=True, weight_type=QInt8)`` writes, node
for node: every ``MatMul(x, W)`` whose W is a 2-D float32 initializer, and every plain ``Gemm(x, W, bias)``
(alpha = beta = 1, x not transposed; a transposed W is stored transposed), becomes

    x --DynamicQuantizeLinear--> (x_q uint8, x_scale, x_zero_point)      one per activation, shared
    MatMulInteger(x_q, W_q int8 [K, N], x_zero_point, W_zero_point [N]) -> int32
    Cast(float) * (x_scale * W_scale [N])  (+ bias for a Gemm)           -> the node's output

with W quantized per output column, symmetric over [-64, 64] (scale = max|W[:, n]| / 64): 7-bit weights, the remedy
onnxruntime documents for AVX2 CPUs (``reduce_range=True``, whose range this is). On x86 CPUs without VNNI,
onnxruntime multiplies uint8 activations by int8 weights with vpmaddubsw, which sums two neighbouring products into
a saturating int16: 255 * 127 * 2 = 64770 overflows, 255 * 64 * 2 = 32640 cannot. With 8-bit weights exact results
needed ``session.x64quantprecision``'s uint8 x uint8 path, which is slower on AVX2 CPUs (INT8 against FP32 in
docs/bench-cpu/bench.md is measured with 7-bit weights); with 7-bit weights onnxruntime keeps its int8 kernels under
that setting (it converts only weights that could overflow), so the products are exact and fast on every CPU. The
per-tensor uint8 activations dominate the error, so halving the weights' steps hardly moves it
(docs/bench-cpu/bench.md: INT8 against FP32).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...export.onnx_files import data_file_name, move_model, scratch_folder

QMAX = 64  # onnxruntime's reduce_range for symmetric int8: -64..64, zero point 0; 255 * 64 * 2 = 32640 fits an int16
ALIGN_BYTES = 65536  # large tensors start on an allocation-granularity boundary (onnx's default), so they can be mapped
ALIGN_FROM_BYTES = 1 << 20


@dataclass
class Int8Report:
    """What was quantized: counts for the build log and the manifest."""
    matmuls: int = 0
    weights: int = 0
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    skipped: list[str] = field(default_factory=list)  # MatMuls left float, with the reason


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column symmetric int8 of a [K, N] float32 weight: (q int8 [K, N], scale float32 [N])."""
    absmax = np.abs(w).max(axis=0).astype(np.float64)
    scale = (2.0 * absmax / (2 * QMAX)).astype(np.float32)
    scale[scale < np.finfo(np.float32).tiny] = 1.0  # an all-zero column (onnxruntime does the same)
    q = w / scale  # [K, N] / [N] broadcasts over rows; rounded and clipped in place (one temporary of W's size)
    np.rint(q, out=q)
    np.clip(q, -QMAX, QMAX, out=q)
    return q.astype(np.int8), scale


class _TensorReader:
    """Reads one initializer at a time: inline, or a slice of its external data file."""

    def __init__(self, folder: Path):
        self.folder = folder

    def raw_bytes(self, tensor: TensorProto) -> bytes:
        if tensor.data_location != TensorProto.EXTERNAL:
            return numpy_helper.to_array(tensor).tobytes()
        info = {e.key: e.value for e in tensor.external_data}
        with open(self.folder / info["location"], "rb") as f:
            f.seek(int(info.get("offset", 0)))
            return f.read(int(info["length"])) if "length" in info else f.read()

    def array(self, tensor: TensorProto) -> np.ndarray:
        if tensor.data_location != TensorProto.EXTERNAL:
            return numpy_helper.to_array(tensor)
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        return np.frombuffer(self.raw_bytes(tensor), dtype=dtype).reshape(tuple(tensor.dims))


class _TensorWriter:
    """Appends tensors to ``<dst>.data`` (external) or keeps them in the graph (inline)."""

    def __init__(self, data_path: Path | None):
        self.data_path = data_path
        self.file = open(data_path, "wb") if data_path else None

    def tensor(self, name: str, data_type: int, dims: tuple[int, ...], raw: bytes) -> TensorProto:
        tensor = TensorProto(name=name, data_type=data_type, dims=list(dims))
        if self.file is None or len(raw) < 1024:  # small tensors stay inline, as onnx.save does
            tensor.raw_data = raw
            return tensor
        if len(raw) >= ALIGN_FROM_BYTES:
            pad = -self.file.tell() % ALIGN_BYTES
            self.file.write(b"\0" * pad)
        offset = self.file.tell()
        self.file.write(raw)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.data_path.name), ("offset", str(offset)), ("length", str(len(raw)))):
            tensor.external_data.add(key=key, value=value)
        return tensor

    def array(self, name: str, array: np.ndarray) -> TensorProto:
        return self.tensor(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape, array.tobytes())

    def close(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()


@dataclass
class _Linear:
    """One MatMul / Gemm to rewrite: y = x @ W (+ bias), with W stored as [K, N] after quantization."""
    node: onnx.NodeProto
    weight: TensorProto
    transposed: bool  # Gemm with transB=1: the initializer is [N, K]
    bias: str | None


def _gemm_attributes(node: onnx.NodeProto) -> dict:
    values = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    values.update({a.name: helper.get_attribute_value(a) for a in node.attribute})
    return values


def _linears(graph: onnx.GraphProto) -> tuple[dict[str, _Linear], list[str]]:
    """The nodes to rewrite (by output name) and why other MatMul / Gemm nodes stay float."""
    initializers = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    linears, skipped = {}, []
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm") or node.input[1] not in initializers:
            continue  # activation x activation (attention scores) stays float, as in onnxruntime
        label, w = node.name or node.output[0], initializers[node.input[1]]
        gemm = _gemm_attributes(node) if node.op_type == "Gemm" else None
        if gemm and (gemm["alpha"] != 1.0 or gemm["beta"] != 1.0 or gemm["transA"]):
            skipped.append(f"{label}: a Gemm with alpha, beta or transA set")
        elif w.data_type != TensorProto.FLOAT or len(w.dims) != 2:
            skipped.append(f"{label}: weight {w.name} is not a 2-D float32 tensor")
        elif uses[w.name] > 1:
            skipped.append(f"{label}: weight {w.name} is shared with other nodes")
        elif node.input[0] in initializers:
            skipped.append(f"{label}: both inputs are constants")
        else:
            bias = node.input[2] if gemm and len(node.input) > 2 and node.input[2] else None
            linears[node.output[0]] = _Linear(node, w, bool(gemm and gemm["transB"]), bias)
    return linears, skipped


def _quantized_nodes(graph: onnx.GraphProto, linears: dict[str, _Linear]) -> Iterator[onnx.NodeProto]:
    """The graph's nodes with each linear replaced by its integer form; an activation's
    DynamicQuantizeLinear comes right before its first consumer (so the order stays topological)."""
    activation_quantized: set[str] = set()
    for node in graph.node:
        linear = linears.get(node.output[0]) if node.output else None
        if linear is None:
            yield node
            continue
        x, w, out = node.input[0], linear.weight.name, node.output[0]
        if x not in activation_quantized:
            activation_quantized.add(x)
            yield helper.make_node("DynamicQuantizeLinear", [x], [f"{x}_quantized", f"{x}_scale", f"{x}_zero_point"],
                                   f"{x}_QuantizeLinear")
        name = node.name or out
        product = f"{out}_MatMul" if linear.bias else out
        yield helper.make_node("MatMulInteger", [f"{x}_quantized", f"{w}_quantized", f"{x}_zero_point",
                                                 f"{w}_zero_point"], [f"{out}_output_quantized"], f"{name}_quant")
        yield helper.make_node("Cast", [f"{out}_output_quantized"], [f"{out}_cast"], f"{name}_cast",
                               to=TensorProto.FLOAT)
        yield helper.make_node("Mul", [f"{x}_scale", f"{w}_scale"], [f"{out}_scales"], f"{name}_scales_mul")
        yield helper.make_node("Mul", [f"{out}_cast", f"{out}_scales"], [product], f"{name}_output_scale_mul")
        if linear.bias:
            yield helper.make_node("Add", [product, linear.bias], [out], f"{name}_Add")


def quantize_int8_dynamic(src: Path, dst: Path, external: bool) -> Int8Report:
    """Write the dynamic-INT8 form of the graph at ``src`` to ``dst`` (weights in ``<dst>.data`` when
    ``external``); reads and writes one initializer at a time. ``dst`` appears only when complete."""
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=False)  # the graph only: weights stay on disk
    graph = model.graph
    linears, skipped = _linears(graph)
    weights = {linear.weight.name: linear for linear in linears.values()}
    report = Int8Report(skipped=skipped)
    reader = _TensorReader(src.parent)
    with scratch_folder(dst, "int8") as scratch:
        target = Path(scratch) / dst.name
        writer = _TensorWriter(target.with_name(data_file_name(target)) if external else None)
        try:
            initializers = []
            for tensor in graph.initializer:
                if tensor.name in weights:
                    w = reader.array(tensor)
                    q, scale = quantize_weight(w.T if weights[tensor.name].transposed else w)
                    del w
                    initializers += [writer.array(f"{tensor.name}_quantized", q),
                                     writer.array(f"{tensor.name}_scale", scale),
                                     writer.array(f"{tensor.name}_zero_point", np.zeros(scale.shape, np.int8))]
                    report.weights += 1
                    report.weight_bytes_before += q.size * 4
                    report.weight_bytes_after += q.nbytes + scale.nbytes + scale.size
                else:
                    initializers.append(writer.tensor(tensor.name, tensor.data_type, tuple(tensor.dims),
                                                      reader.raw_bytes(tensor)))
                tensor.ClearField("raw_data")  # an inline graph's copy goes as its replacement is written
        finally:
            writer.close()
        nodes = list(_quantized_nodes(graph, linears))
        report.matmuls = sum(n.op_type == "MatMulInteger" for n in nodes)
        del graph.initializer[:]
        graph.initializer.extend(initializers)
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.save_model(model, str(target))
        move_model(target, dst)
    return report
