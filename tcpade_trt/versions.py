"""The oldest versions of the stack this toolkit works with, and one sentence for anything older.

    torch >= 2.5            torch.onnx.export(dynamo=True, dynamic_shapes=...) (every export)
    onnxruntime >= 1.21     OrtValue DLPack in the regular (non-training) wheels (I/O binding on a GPU)
    TensorRT >= 10.1        set_device_memory, device_memory_size_v2, weight_streaming_budget_v2
                            (checked in engines/tensorrt/build.import_tensorrt)
    nvidia-modelopt >= 0.44 the list form of ``quant_cfg`` (entries with quantizer_name / parent_class / cfg)
                            that the INT8 / FP8 recipes use; 0.43 and older refuse it in a pydantic error
                            (ModelOpt's CHANGELOG, 0.44, "quant_cfg ... is now an ordered list")
"""

from __future__ import annotations

import re

from .errors import TcpadeError

TORCH_FOR_EXPORT = (2, 5)
ONNXRUNTIME_FOR_DLPACK = (1, 21)
MODELOPT_FOR_LIST_CONFIG = (0, 44)


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.13.0.35' -> (10, 13, 0, 35); stops at the first part that is not a plain number ('2.5.1+cpu' ->
    (2, 5, 1))."""
    out = []
    for piece in version.split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        out.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(out)


def require(package: str, installed: str, floor: tuple[int, ...], needed_for: str) -> None:
    """One sentence when ``installed`` is older than ``floor``."""
    if version_tuple(installed) < floor:
        wanted = ".".join(map(str, floor))
        raise TcpadeError(f"{package} {installed} is too old for {needed_for}: tcpade-trt needs {package} >= {wanted} "
                          f"(pip install -U '{package}>={wanted}').")


def require_torch_for_export() -> None:
    import torch

    require("torch", torch.__version__, TORCH_FOR_EXPORT, "the ONNX export (dynamo exporter with dynamic shapes)")


def require_modelopt_for_recipes(installed: str) -> None:
    require("nvidia-modelopt", installed, MODELOPT_FOR_LIST_CONFIG,
            "the INT8 / FP8 recipes (their quant_cfg is in the list form ModelOpt reads from 0.44 on)")


def require_onnxruntime_for_gpu() -> None:
    import onnxruntime

    require("onnxruntime-gpu", onnxruntime.__version__, ONNXRUNTIME_FOR_DLPACK,
            "GPU I/O binding (DLPack hand-over of outputs)")
