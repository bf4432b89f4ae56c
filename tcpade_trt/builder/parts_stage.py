"""The build's first stage: the model's parts and the Padé graphs as fp32 ONNX, each model part checked against
torch, or the fp32 parts of an existing folder of the same model and shape reused.

The cheap parts (prepare, head, tail, modulated) come from ``cheap`` (builder/device.cheap_parts_model: the model
in fp32 on the host, or a copy of what those parts read); the block stack from the model as loaded, and only when
its fp32 graph is used: by fp32 folders and onnxruntime's INT8 quantizers. The other recipes (ModelOpt's FP8 and
INT8, TensorRT's bf16 / fp16) export the blocks themselves, so the fp32 export of a 12B block stack is skipped.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

from ..engines import registry
from ..engines.manifest import PartEntry
from ..errors import ConfigError
from ..export import onnx_files
from ..export.onnx_export import check_part, describe_io, export_part
from ..export.onnx_files import copy_model, referenced_data_files
from ..export.pade_onnx import export_pade, pade_io
from ..export.parts import PARTS, BuildShape, PartModule, batch_axes, example_tensors
from ..export.tolerances import TOLERANCE, check_batches
from ..models.model import Model


def needs_fp32_blocks(options) -> bool:
    """Whether the fp32 blocks graph is part of the folder or the input of its backend's quantizer."""
    return registry.backend(options.backend).needs_fp32_blocks(options)


def fuses(options) -> bool:
    """Whether the exported parts are rewritten with onnxruntime's fused kernels (its backend runs them)."""
    return registry.backend(options.backend).fuses_onnxruntime_ops(options)


def holds_fp32_onnx(manifest) -> bool:
    """Whether a folder's engines are its fp32 ONNX files (which a build of the same model may reuse)."""
    return manifest.precision == "fp32" and not registry.backend(manifest.backend).writes_engines


# parts exported in this process, by (model identity: class, config and weights; part, shape, opset, fusions): a
# process that builds several folders of one model (the demo's fp32 and int8, a bench's precisions, TensorRT
# precisions) exports each part once. The config is part of the key: buffers that are not weights (DiT's position
# table, from sample_size) make two models of equal weights compute differently. Only graphs without external
# data, at most MEMO_GRAPH_BYTES each and MEMO_TOTAL_BYTES in all (oldest dropped first).
_EXPORTED: OrderedDict[tuple, tuple[bytes, dict]] = OrderedDict()
MEMO_GRAPH_BYTES, MEMO_TOTAL_BYTES = 256 << 20, 1 << 30


def export_all(model: Model, cheap: Model, folder: Path, options, stages,
               identity: dict | None = None) -> dict[str, PartEntry]:
    """Every part and Padé variant to fp32 ONNX, each model part checked against torch. ``identity``: the manifest's
    model identity (class, config, weights hash), which keys the parts exported earlier in this process."""
    shape = options.shape
    model_key = json.dumps(identity, sort_keys=True, default=str) if identity else None
    axes = batch_axes(cheap, shape)
    entries: dict[str, PartEntry] = {}
    for part in PARTS:
        if part == "prepare" and not model.family.PREPARE_OUTPUTS:
            continue  # nothing prompt-only to precompute (DiT)
        source = model if part == "blocks" else cheap
        if part == "blocks" and not needs_fp32_blocks(options):
            module = PartModule(cheap, "blocks")  # the I/O only: the recipe writes blocks.onnx
            entries[part] = PartEntry(file="blocks.onnx", **describe_io(module, example_tensors(cheap, shape, 2), axes))
            continue
        key = (model_key, str(source.dtype), part, tuple(sorted(shape.as_dict().items())), options.opset,
               fuses(options),
               onnx_files.EXTERNAL_DATA_BYTES) if model_key else None  # where a graph's weights go: in it or beside
        io = stages.run(f"export {part}", _export_model_part, source, part, folder / f"{part}.onnx", options, axes,
                        key)
        entries[part] = PartEntry(file=f"{part}.onnx", **io)
        entries[part].check_error = stages.run(f"check {part} against torch", _check_fp32_part, source, part,
                                               folder / f"{part}.onnx", shape)
    _, tokens, hidden = entries["blocks"].outputs[0]["shape"]  # x_out ["batch", tokens, hidden]
    graphs = [(f"pade-fit-{variant}", "pade-fit", variant) for variant in options.pade_variants]
    for name, graph, variant in [*graphs, ("pade-eval", "pade-eval", "rational"), ("tsi", "tsi", "rational")]:
        stages.run(f"export {name}", export_pade, folder / f"{name}.onnx", graph, variant, hidden=hidden)
        entries[name] = PartEntry(file=f"{name}.onnx", **pade_io(graph, tokens, hidden))
    return entries


def _check_fp32_part(model: Model, part: str, path: Path, shape: BuildShape) -> float:
    return check_part(ort_session(path), model, part, shape, TOLERANCE["fp32"], batches=check_batches(shape))


def _export_model_part(model: Model, part: str, path: Path, options, axes: dict, key: tuple | None) -> dict:
    if key in _EXPORTED:
        _EXPORTED.move_to_end(key)
        graph, io = _EXPORTED[key]
        path.write_bytes(graph)  # inside the build's temporary folder: an interrupted write leaves nothing
        return dict(io)
    io = export_part(model, part, options.shape, path, options.opset, axes)
    if fuses(options):
        from ..engines.onnxruntime.fusions import fuse_for_onnxruntime

        fuse_for_onnxruntime(path)  # checked against torch with the rest of the part, below
    if key is not None and not referenced_data_files(path) and path.stat().st_size <= MEMO_GRAPH_BYTES:
        _EXPORTED[key] = (path.read_bytes(), dict(io))
        while sum(len(g) for g, _ in _EXPORTED.values()) > MEMO_TOTAL_BYTES:
            _EXPORTED.popitem(last=False)
    return io


def copy_fp32_parts(source: Path, folder: Path, identity: dict, shape: BuildShape) -> dict[str, PartEntry]:
    """The fp32 ONNX files of an existing folder of the same model and shape (saves the export)."""
    from ..engines.manifest import read_manifest

    src = read_manifest(source)
    if not holds_fp32_onnx(src):
        raise ConfigError(f"{source} is a {src.backend} {src.precision} folder; reuse needs an fp32 one whose engines "
                          "are its ONNX files (onnxruntime).")
    if src.model["weights_sha256"] != identity["weights_sha256"] or src.shape != shape.as_dict():
        raise ConfigError(f"{source} was built from other weights or for another shape; build without reusing it.")
    for entry in src.parts.values():
        copy_model(source / entry.file, folder)  # with its external data, if any
    return {name: PartEntry(**asdict(entry)) for name, entry in src.parts.items()}


def ort_session(path: Path):
    from ..engines.onnxruntime.sessions import create_session

    return create_session(path, providers=["CPUExecutionProvider"])
