"""TensorRT execution of an engine folder (tensorrt backend)."""

from __future__ import annotations

from ..engines.trt_backend import TensorRTError, gpu_identity, import_tensorrt


def require_tensorrt_runtime(manifest) -> None:
    """Refuse a TensorRT folder this machine cannot run, saying what differs."""
    trt = import_tensorrt()
    built = manifest.versions.get("tensorrt")
    if built and built.split(".")[:2] != trt.__version__.split(".")[:2]:
        raise TensorRTError(f"the plans were built with TensorRT {built}, this machine has {trt.__version__}: "
                            "rebuild the engine folder here.")
    here = gpu_identity()
    if manifest.versions.get("gpu") and here.get("gpu") != manifest.versions["gpu"]:
        raise TensorRTError(f"the plans were built for {manifest.versions['gpu']}, this machine has "
                            f"{here.get('gpu', 'no GPU')}: TensorRT plans are tied to their GPU; rebuild here.")
    raise TensorRTError("running TensorRT plans is not implemented in this version of tcpade-trt; build with "
                        "--backend onnxruntime (the TensorRT execution provider of onnxruntime-gpu runs it).")
