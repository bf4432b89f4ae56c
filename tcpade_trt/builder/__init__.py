"""The offline build: a model -> a checked, sealed engine folder (build.py), with the data its
quantization is calibrated on (quantization_inputs.py) and the rules of where it may write (output_folder.py).
Backend-neutral: each backend's own stage (TensorRT plans and their check) is in engines/<backend>/. Sits
above the runtime, whose sampler it calibrates with."""

from .build import BACKENDS, PRECISIONS, BuildOptions, TensorRTOptions, build_engines

__all__ = ["BACKENDS", "PRECISIONS", "BuildOptions", "TensorRTOptions", "build_engines"]
