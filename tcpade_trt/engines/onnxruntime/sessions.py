"""onnxruntime: sessions (CPU, or CUDA / TensorRT execution providers with onnxruntime-gpu) and
static QDQ INT8 quantization of the blocks graph (dynamic INT8: int8_dynamic.py; FP8: modelopt_quant.py)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ...errors import TcpadeError


def import_onnxruntime():
    """onnxruntime (the CPU or the GPU build), or one sentence saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise TcpadeError("onnxruntime is not installed: pip install 'tcpade-trt[cpu]' (or 'tcpade-trt[gpu]' on an "
                          "NVIDIA machine; never both).") from None
    return onnxruntime


def available_providers() -> list[str]:
    return import_onnxruntime().get_available_providers()


ORT_DEVICES = ("cpu", "cuda", "tensorrt")  # which execution provider runs the engines
_PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def resolve_ort_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when onnxruntime-gpu sees a GPU, else 'cpu'; an unavailable choice is one sentence."""
    have = available_providers()
    if device == "auto":
        return "cuda" if _PROVIDER["cuda"] in have else "cpu"
    if device not in ORT_DEVICES:
        raise TcpadeError(f"unknown onnxruntime device {device!r}; choose auto, {', '.join(ORT_DEVICES)}.")
    if _PROVIDER[device] not in have:
        needs = "a CUDA GPU and TensorRT" if device == "tensorrt" else "a CUDA GPU"
        raise TcpadeError(f"device '{device}' needs onnxruntime-gpu with {needs} (pip install 'tcpade-trt[gpu]'); "
                          f"this onnxruntime offers only {', '.join(have)}.")
    return device


def default_providers(device: str = "auto") -> list[str]:
    """Provider names for ``device`` with CPU as the fallback (no options: builds and checks)."""
    device = resolve_ort_device(device)
    chain = {"cpu": ["cpu"], "cuda": ["cuda", "cpu"], "tensorrt": ["tensorrt", "cuda", "cpu"]}[device]
    return [_PROVIDER[d] for d in chain]


def provider_chain(device: str, stream: int | None = None, trt_cache: Path | None = None,
                   trt_profiles: dict[str, tuple] | None = None) -> list:
    """The providers (with options) a runtime session uses on ``device`` ('cpu', 'cuda', 'tensorrt').

    stream: a CUDA stream handle (torch.cuda.Stream().cuda_stream) that onnxruntime runs on, so its
        kernels and the runtime's torch ops are ordered on one stream without host syncs. Not the
        legacy default stream (handle 0), which onnxruntime treats as "none given".
    trt_cache: folder for the TensorRT execution provider's engine and timing caches (built on the
        first run of a shape, reused afterwards).
    trt_profiles: input name -> (min, opt, max) shapes, so that TensorRT builds one engine for the
        folder's whole batch range instead of one per new shape.
    """
    if device == "cpu":
        return [_PROVIDER["cpu"]]
    on_stream = {"has_user_compute_stream": "1", "user_compute_stream": str(stream)} if stream else {}
    chain = [(_PROVIDER["cuda"], {"device_id": "0", **on_stream}), _PROVIDER["cpu"]]
    if device == "tensorrt":
        options = {"device_id": "0", **on_stream}
        if trt_cache is not None:
            options.update(trt_engine_cache_enable="True", trt_engine_cache_path=str(trt_cache),
                           trt_timing_cache_enable="True", trt_timing_cache_path=str(trt_cache))
        if trt_profiles:
            dims = lambda i: ",".join(f"{n}:{'x'.join(map(str, shapes[i]))}" for n, shapes in trt_profiles.items())
            options.update(trt_profile_min_shapes=dims(0), trt_profile_opt_shapes=dims(1),
                           trt_profile_max_shapes=dims(2))
        chain.insert(0, (_PROVIDER["tensorrt"], options))
    return chain


# x86 CPU flags under which onnxruntime's INT8 kernels multiply exactly (VNNI's 32-bit dot products, AMX)
EXACT_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def int8_products_saturate() -> bool:
    """Whether onnxruntime's INT8 products need ``session.x64quantprecision`` to stay exact on this CPU: an x86 CPU
    without VNNI or AMX (AVX2 only), or one whose flags cannot be read (exact results come first)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False  # the saturating int16 sum (vpmaddubsw) is an x86 kernel
    return not (cpu_flags() & set(EXACT_INT8_FLAGS))


def create_session(path: str | Path, providers: list | None = None, threads: int | None = None,
                   profile_prefix: str | None = None):
    """An InferenceSession for ``path`` with full graph optimisation; a bad file becomes one sentence.
    profile_prefix: write onnxruntime's profile (JSON) there (see profile.py)."""
    ort = import_onnxruntime()

    options = ort.SessionOptions()
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    # Between engine calls the loop runs torch ops (scheduler, policy); spinning onnxruntime threads
    # would keep the cores busy and slow those down several times over.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if int8_products_saturate():
        # onnxruntime's uint8 x int8 kernel sums pairs of products in a saturating int16 there (255 * 127 * 2 >
        # 32767); this makes it use uint8 x uint8 for weights that could overflow (tests/engines/
        # test_int8_saturation.py). Only there: on a VNNI CPU the products are exact anyway, and the setting made
        # the demo's INT8 block stack 1.8x slower on one (issue 25). The dynamic INT8 form this toolkit writes has
        # 7-bit weights (int8_dynamic.py), which cannot overflow: onnxruntime then keeps its int8 kernels, and the
        # setting costs nothing; it still guards static QDQ graphs and folders written with 8-bit weights.
        options.add_session_config_entry("session.x64quantprecision", "1")
    providers = providers or default_providers()
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt or invalid files
        from ...errors import ManifestError

        raise ManifestError(f"onnxruntime cannot load {path} ({type(exc).__name__}: {str(exc)[:160]}); the file "
                            "is corrupt or not an ONNX model: rebuild the engine folder.") from None
    require_provider(session, providers, path)
    return session


def require_provider(session, providers: list, path) -> None:
    """onnxruntime falls back to the CPU (printing, not raising) when a GPU provider fails to load its
    libraries; the runtime would then hand device pointers to a CPU session. Refuse instead."""
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    loaded = session.get_providers()
    if wanted not in loaded:
        raise TcpadeError(f"onnxruntime was asked for {wanted} for {Path(path).name} but loaded only "
                          f"{', '.join(loaded)} (the GPU provider's libraries, CUDA / cuDNN / TensorRT, did not load); "
                          "fix the GPU install or run with --device cpu.")


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


def quantize_static_qdq(src: Path, dst: Path, calibration: list[dict[str, np.ndarray]], external: bool = False) -> None:
    """INT8 QDQ graph (per-channel weights, per-tensor activations) calibrated on ``calibration`` feeds.
    FP8 is not done here: onnxruntime calibrates float8 only from value distributions, which gave 0.23
    relative L2 on the demo model's blocks; FP8 uses ModelOpt's recipe (modelopt_quant.py).
    external: write the weights to ``<dst>.data`` (needed over protobuf's 2 GB)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    src, dst = Path(src).resolve(), Path(dst).resolve()  # absolute: the calibration runs in a scratch folder
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True}
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()):
        cwd = os.getcwd()  # the calibrator writes scratch files next to the working directory
        os.chdir(tmp)
        try:
            quantize_static(str(src), str(dst), FeedReader(calibration), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=QUANTIZED_OPS, per_channel=True, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            extra_options=extra, use_external_data_format=external)
        finally:
            os.chdir(cwd)
