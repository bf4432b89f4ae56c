"""tcpade-trt: TC-Padé step caching for diffusion transformers, deployed as ONNX / TensorRT engines.

The heavy pieces are imported lazily so that ``import tcpade_trt`` stays cheap and never pulls a
GPU-only package (TensorRT, onnxruntime-gpu, ModelOpt).
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "TcpadeError": "tcpade_trt.errors",
    "load_model": "tcpade_trt.models",
    "SplitModel": "tcpade_trt.models",
    "sample": "tcpade_trt.runtime.sampler",
    "CachePolicy": "tcpade_trt.cache",
    "CacheConfig": "tcpade_trt.cache",
    "apply_cache": "tcpade_trt.cache",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tcpade_trt' has no attribute {name!r}")
