"""onnxruntime: the exported graphs run as they are (CPU; onnxruntime-gpu's CUDA / TensorRT execution providers).

    sessions.py      sessions, provider chains, static QDQ INT8, the CPU's INT8 exactness
    runner.py        OrtPart: a session called with named torch tensors (numpy on CPU, I/O binding on a GPU)
    open.py          a folder's parts as sessions on one device / stream
    fusions.py       onnxruntime's fused GELU / RMSNorm kernels written into the exported parts
    int8_dynamic.py  dynamic INT8 (MatMulInteger form) written one weight at a time
    profile.py       onnxruntime's per-op profile of a folder (`tcpade-trt inspect --profile`)
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from ..backend import Backend, Opened, OpenRequest


class OnnxRuntime(Backend):
    name = title = "onnxruntime"
    install = "pip install 'tcpade-trt[cpu]' (or 'tcpade-trt[gpu]' on an NVIDIA machine; never both)"
    precisions = ("fp32", "int8", "fp8")
    devices = ("auto", "cpu", "cuda", "tensorrt")
    reads_onnxruntime_ops = True

    def available(self) -> bool:
        import importlib.util

        return importlib.util.find_spec("onnxruntime") is not None

    def validate(self, options) -> None:
        if options.precision in ("fp16", "bf16"):
            raise ConfigError(f"{options.precision} blocks need a GPU engine: use --backend tensorrt, or fp32 / int8 / "
                              "fp8 with onnxruntime (onnxruntime's CPU kernels have no BF16 MatMul).")
        super().validate(options)
        if options.device == "cuda":
            raise ConfigError("--device cuda loads the model on the GPU for a TensorRT build; onnxruntime builds load "
                              "it on the CPU (leave --device out).")
        _refuse_tensorrt_options(options, self.title)

    def fuses_onnxruntime_ops(self, options) -> bool:
        if options.reuse_onnx_from is None:
            return options.ort_fusions
        from ..manifest import read_manifest

        return bool(read_manifest(options.reuse_onnx_from, verify_hashes=False).options.get("ort_fusions"))

    def needs_fp32_blocks(self, options) -> bool:
        return options.precision in ("fp32", "int8")  # its INT8 quantizers read the fp32 graph

    def quantize_int8(self, model, blocks: Path, options, calibration_feeds=None) -> dict | None:
        from .int8 import quantize_onnxruntime_int8

        return quantize_onnxruntime_int8(blocks, options, calibration_feeds)

    def versions(self) -> dict:
        from .sessions import import_onnxruntime

        return {"onnxruntime": import_onnxruntime().__version__}

    def manifest_options(self, options) -> dict:
        return {"ort_fusions": self.fuses_onnxruntime_ops(options)}

    def open(self, folder: Path, manifest, request: OpenRequest) -> Opened:
        from .open import open_onnxruntime

        self.refuse_gpu_only(request, folder)
        return open_onnxruntime(folder, manifest, request)

    def uses_gpu(self, folder: Path, manifest, device: str) -> bool:
        if device in ("cuda", "tensorrt"):
            return True
        if device != "auto":
            return False
        from .open import runs_on_cpu_only
        from .sessions import available_providers

        return "CUDAExecutionProvider" in available_providers() and not runs_on_cpu_only(folder, manifest)


def _refuse_tensorrt_options(options, title: str) -> None:
    """TensorRT's builder knobs asked of a build that makes no plans: one sentence, not silence."""
    from dataclasses import fields

    trt = options.tensorrt
    changed = [f.name for f in fields(trt) if getattr(trt, f.name) != f.default]
    if changed:
        flags = {"optimization_level": "--opt-level", "timing_cache": "--timing-cache", "refittable": "--refittable",
                 "weight_streaming": "--weight-streaming", "workspace_gb": "workspace_gb"}
        what = "is a TensorRT builder option" if len(changed) == 1 else "are TensorRT builder options"
        raise ConfigError(f"{', '.join(flags[c] for c in changed)} {what}, which {title} builds do not use: leave "
                          f"{'it' if len(changed) == 1 else 'them'} out, or build with --backend tensorrt.")


BACKEND = OnnxRuntime()
