"""onnxruntime: sessions (CPU, or CUDA / TensorRT execution providers with onnxruntime-gpu) and
quantization of the blocks graph (dynamic INT8, static QDQ INT8, FP8 E4M3 QDQ)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import TcpadeError


def available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def default_providers(device: str = "auto") -> list[str]:
    """CUDA (then CPU) when onnxruntime-gpu is installed and device allows it, else CPU."""
    have = available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in have:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise TcpadeError("device 'cuda' needs onnxruntime-gpu with a CUDA GPU (pip install 'tcpade-trt[gpu]'); "
                          f"this onnxruntime offers only {', '.join(have)}.")
    return ["CPUExecutionProvider"]


def create_session(path: str | Path, providers: list[str] | None = None, threads: int | None = None):
    """An InferenceSession for ``path`` with full graph optimisation; a bad file becomes one sentence."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    # Between engine calls the loop runs torch ops (scheduler, policy); spinning onnxruntime threads
    # would keep the cores busy and slow those down several times over.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers or default_providers())
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt or invalid files
        from .manifest import ManifestError

        raise ManifestError(f"onnxruntime cannot load {path} ({type(exc).__name__}: {str(exc)[:160]}); the file "
                            "is corrupt or not an ONNX model: rebuild the engine folder.") from None


class FeedReader:
    """onnxruntime's CalibrationDataReader over a list of feed dicts (name -> numpy array)."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]):
        self._feeds = list(feeds)
        self._it = iter(self._feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._feeds)


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer logs advice on the root logger; our build reports its own progress."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# MatMul/Gemm carry nearly all of a transformer block's FLOPs; norms and softmax stay float.
QUANTIZED_OPS = ["MatMul", "Gemm"]


def quantize_int8_dynamic(src: Path, dst: Path) -> None:
    """Per-channel S8 weights, activations quantized at run time: no calibration data needed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
                         weight_type=QuantType.QInt8)


def quantize_static_qdq(src: Path, dst: Path, calibration: list[dict[str, np.ndarray]], kind: str = "int8") -> None:
    """QDQ graph calibrated on ``calibration`` feeds: INT8 or FP8 E4M3 weights and activations.

    FP8 QDQ runs as simulated quantization on CPU (the accuracy a TensorRT FP8 build would have)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src, dst = Path(src).resolve(), Path(dst).resolve()  # absolute: the calibration runs in a scratch folder
    qtype = {"int8": QuantType.QInt8, "fp8": QuantType.QFLOAT8E4M3FN}[kind]
    # onnxruntime calibrates float8 only from value distributions
    method = CalibrationMethod.MinMax if kind == "int8" else CalibrationMethod.Distribution
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True}
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()):
        cwd = os.getcwd()  # the calibrator writes scratch files next to the working directory
        os.chdir(tmp)
        try:
            quantize_static(str(src), str(dst), FeedReader(calibration), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=QUANTIZED_OPS, per_channel=kind == "int8",
                            activation_type=qtype, weight_type=qtype, calibrate_method=method,
                            extra_options=extra)
        finally:
            os.chdir(cwd)
