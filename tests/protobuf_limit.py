"""protobuf's 2 GB limit on one serialized message, at tiny size.

A real block stack holds 3-24 GB of weights, so any step that serializes it as one ModelProto (``onnx.checker.
check_model(proto)``, ``shape_inference.infer_shapes(proto)``, ``onnx.save`` without external data, an
``InferenceSession`` from bytes) fails there and nowhere in a test of tiny models. ``lower_protobuf_limit`` makes
ModelProto refuse to serialize once the tensor data it carries inline passes ``limit`` bytes (the graph's
structure, a few MB for any real model, is not counted), and moves the toolkit's external-data threshold below
that limit, as the real threshold (1.5 GB) sits below the real limit (2 GiB). Every such branch is then reached by
tiny models in seconds."""

from __future__ import annotations

import onnx

from tcpade_trt.export import onnx_files

LIMIT = 32 * 1024  # bytes of inline tensor data: below every tiny model's block stack (60-500 KB)


def inline_tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes of tensor data a ModelProto carries in itself (initializers and Constant nodes, not external data)."""
    def data(t):
        return 0 if t.data_location == onnx.TensorProto.EXTERNAL else t.ByteSize()

    total = sum(data(t) for t in model.graph.initializer)
    for node in model.graph.node:
        total += sum(data(a.t) for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)
    return total


def lower_protobuf_limit(monkeypatch, limit: int = LIMIT) -> None:
    original = onnx.ModelProto.SerializeToString

    def serialize(self, *args, **kwargs):
        inline = inline_tensor_bytes(self)
        if inline > limit:  # protobuf's own words, with the limit scaled down
            raise ValueError(f"Message onnx.ModelProto exceeds maximum protobuf size of 2GB: {inline} bytes of "
                             f"tensors inline (the test's limit: {limit})")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(onnx.ModelProto, "SerializeToString", serialize)
    monkeypatch.setattr(onnx_files, "EXTERNAL_DATA_BYTES", limit // 2)
