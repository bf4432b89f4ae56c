"""tcpade-trt: TC-Padé step caching for diffusion transformers, deployed as ONNX / TensorRT engines.

The public API, in one place (each name is imported on first use, so ``import tcpade_trt`` stays cheap
and never pulls a GPU-only package such as TensorRT, onnxruntime-gpu or ModelOpt):

    from tcpade_trt import apply_cache, cache_config, Runtime, EngineTransformer, build_engines, load_model

    apply_cache(pipe, "tcpade-fast")                          # eager: an unmodified diffusers pipeline, cached
    build_engines("demo", "engines/demo", BuildOptions(precision="int8"))   # offline: a checked engine folder
    Runtime("engines/demo").generate(cond, noise, cache="tcpade-fast")      # production: engines + cache
    EngineTransformer("engines/flux").into(pipe)              # a pipeline on engines
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "apply_cache": "tcpade_trt.runtime.hooks",
    "cache_config": "tcpade_trt.cache",
    "make_policy": "tcpade_trt.cache",
    "CacheConfig": "tcpade_trt.cache",
    "CachePolicy": "tcpade_trt.cache",
    "PRESETS": "tcpade_trt.cache",
    "Runtime": "tcpade_trt.runtime.runtime",
    "EngineTransformer": "tcpade_trt.runtime.dropin",
    "build_engines": "tcpade_trt.builder",
    "BuildOptions": "tcpade_trt.builder",
    "load_model": "tcpade_trt.models",
    "Model": "tcpade_trt.models",
    "sample": "tcpade_trt.runtime.sampler",
    "initial_noise": "tcpade_trt.runtime.sampler",
    "TcpadeError": "tcpade_trt.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tcpade_trt' has no attribute {name!r}")
