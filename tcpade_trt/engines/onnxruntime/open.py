"""Opening an onnxruntime folder: one session per part on the CPU, or on onnxruntime-gpu's CUDA / TensorRT
execution providers, sharing one CUDA stream with the runtime's torch ops."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch

from ..backend import EngineError, Opened, OpenRequest
from .runner import OrtPart


def fusion_advice(build_options: dict, ort_device: str, folder: Path) -> str | None:
    """A sentence for running a folder with onnxruntime's fused kernels on its TensorRT execution
    provider, which has no such ops: those nodes go to CUDA kernels and split TensorRT's graph."""
    if ort_device == "tensorrt" and build_options.get("ort_fusions"):
        return (f"{folder} uses onnxruntime's fused GELU / RMSNorm kernels, which the TensorRT execution provider "
                "hands to CUDA kernels (splitting its engines); rebuild with --no-ort-fusions for device 'tensorrt'.")
    return None


def open_onnxruntime(folder: Path, manifest, request: OpenRequest) -> Opened:
    """The folder's parts as onnxruntime sessions on ``request.device``."""
    from ..tensorrt.build import profile_shapes
    from .sessions import create_session, provider_chain, resolve_ort_device

    ort_device = resolve_ort_device(request.device)
    if ort_device != "cpu" and runs_on_cpu_only(folder, manifest):
        if request.device != "auto":
            raise EngineError(f"{folder} holds onnxruntime's dynamic INT8 block stack (DynamicQuantizeLinear and "
                              "MatMulInteger), which neither onnxruntime's CUDA provider nor TensorRT runs: on a GPU "
                              "every quantized linear would run on the CPU, with two copies per call. Build "
                              "--backend tensorrt --precision int8 (ModelOpt SmoothQuant) for the GPU, or run this "
                              "folder with --device cpu.")
        warnings.warn(f"{folder} holds onnxruntime's dynamic INT8 form, which GPUs do not run: it runs on the CPU "
                      "(build --backend tensorrt --precision int8 for the GPU).", stacklevel=4)
        ort_device = "cpu"
    advice = fusion_advice(manifest.options, ort_device, folder)
    if advice:
        warnings.warn(advice, stacklevel=4)
    engine_device, stream = torch.device("cpu"), None
    if ort_device != "cpu":
        from ...versions import require_onnxruntime_for_gpu

        require_onnxruntime_for_gpu()
        engine_device = torch.device("cuda")
        stream = torch.cuda.Stream()  # not the legacy default stream, which onnxruntime cannot share
    s, engines = manifest.shape, {}
    trt_cache = ort_tensorrt_cache(folder, manifest) if ort_device == "tensorrt" else None
    for name, entry in manifest.parts.items():
        chain = provider_chain(ort_device, stream=stream.cuda_stream if stream else None, trt_cache=trt_cache,
                               trt_profiles=profile_shapes(entry.inputs, s["batch_min"], s["batch_opt"],
                                                           s["batch_max"]))
        session = create_session(folder / entry.file, chain)
        engines[name] = OrtPart(name, session, [i["name"] for i in entry.inputs], [o["name"] for o in entry.outputs],
                                device=engine_device, io_binding=request.io_binding)
    return Opened(engines, engine_device, stream)


# onnxruntime's dynamic INT8 form: its CUDA provider registers MatMulInteger for int8 x int8 with scalar zero
# points only and has no DynamicQuantizeLinear; onnx-tensorrt supports neither (shared/design/DEPLOYMENT_FACTS.md)
CPU_ONLY_OPS = frozenset({"MatMulInteger", "DynamicQuantizeLinear"})


def runs_on_cpu_only(folder: Path, manifest) -> bool:
    """Whether the folder's block stack holds ops that only onnxruntime's CPU provider runs (read without weights)."""
    import onnx

    graph = onnx.load(str(folder / manifest.parts["blocks"].file), load_external_data=False).graph
    return any(node.op_type in CPU_ONLY_OPS for node in graph.node)


def ort_tensorrt_cache(folder: Path, manifest) -> Path:
    """Where onnxruntime's TensorRT provider keeps the engines it builds on first use: in the folder, or
    (a read-only deployment) in a temporary folder named after the folder's blocks hash."""
    if os.access(folder, os.W_OK):
        return folder / "ort-tensorrt-cache"
    return Path(tempfile.gettempdir()) / "tcpade-trt-ort-tensorrt" / manifest.parts["blocks"].sha256[:16]
