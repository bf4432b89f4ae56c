"""ONNX files with external data: written so that every reference holds, and listed so that it is hashed.

A model over protobuf's 2 GB limit (every real FLUX / Wan block stack) keeps its weights in a side
file that the graph names by a relative ``location``. Three rules keep such a pair intact:

- the side file is named ``<model file name>.data`` and is written under the final names, in a
  scratch folder next to the destination, then moved (a rename after the fact would leave the
  graph pointing at the old name);
- onnx appends to an existing side file instead of replacing it, so any old one is removed first;
- ``referenced_data_files`` reads what a graph names, so the manifest hashes exactly those files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx

# parts whose weights exceed this many bytes are saved with external data (protobuf stops at 2 GiB;
# tests lower it to exercise the path on tiny models)
EXTERNAL_DATA_BYTES = 1_500_000_000


def data_file_name(path: Path) -> str:
    return Path(path).name + ".data"


def referenced_data_files(path: Path) -> list[str]:
    """The external-data files the graph at ``path`` names, relative to its folder (read without the data)."""
    model = onnx.load(str(path), load_external_data=False)
    names = set()
    tensors = list(model.graph.initializer)
    for node in model.graph.node:  # Constant nodes may hold external tensors too
        tensors.extend(a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in tensor.external_data if e.key == "location")
    return sorted(names)


def scratch_folder(next_to: Path, tag: str) -> tempfile.TemporaryDirectory:
    """A temporary folder beside ``next_to`` (same file system, so moving out of it is a rename)."""
    return tempfile.TemporaryDirectory(dir=Path(next_to).parent, prefix=f".{Path(next_to).name}.{tag}-")


def move_model(src: Path, dst: Path) -> None:
    """Move the graph at ``src`` and its external data to ``dst`` (whose side file is
    ``data_file_name(dst)``); the graph must name its side file ``data_file_name(src)`` or none,
    and src and dst must share a name, so that the reference holds after the move."""
    src, dst = Path(src), Path(dst)
    if src.name != dst.name:
        raise ValueError(f"move_model keeps file names ({src.name} != {dst.name}): save under the final name")
    data = referenced_data_files(src)
    if data not in ([], [data_file_name(src)]):
        raise ValueError(f"{src} names external data {data}; expected none or {data_file_name(src)}")
    old = dst.with_name(data_file_name(dst))
    if old.exists():
        old.unlink()
    if data:
        os.replace(src.with_name(data[0]), old)
    os.replace(src, dst)


def save_model(model: onnx.ModelProto, path: Path, external: bool) -> None:
    """Write ``model`` to ``path`` (with its weights in ``data_file_name(path)`` when ``external``),
    through a scratch folder, so a failure leaves the previous file pair untouched."""
    path = Path(path)
    with scratch_folder(path, "save") as scratch:
        target = Path(scratch) / path.name
        if external:
            onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_file_name(target), size_threshold=1024)
        else:
            onnx.save_model(model, str(target))
        move_model(target, path)


def needs_external_data(model: onnx.ModelProto | None = None, weight_bytes: int | None = None) -> bool:
    """Whether a graph (or a module of ``weight_bytes``) goes over the external-data threshold."""
    if weight_bytes is None:
        weight_bytes = sum(t.ByteSize() for t in model.graph.initializer)
    return weight_bytes > EXTERNAL_DATA_BYTES


def copy_model(src: Path, dst_folder: Path) -> list[str]:
    """Copy a graph and the side files it names into ``dst_folder``; returns the names copied."""
    names = [Path(src).name, *referenced_data_files(src)]
    for name in names:
        shutil.copy2(Path(src).parent / name, Path(dst_folder) / name)
    return names
