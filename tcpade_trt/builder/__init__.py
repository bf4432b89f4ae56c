"""The offline build: a model -> a checked, sealed engine folder (build.py), with the data its
quantization is calibrated on (calibration.py), the check of TensorRT plans (plan_check.py) and the
rules of where it may write (output_folder.py). Sits above the runtime, whose sampler it calibrates
with and whose plan execution it checks with."""

from .build import BACKENDS, PRECISIONS, BuildOptions, TensorRTOptions, build_engines

__all__ = ["BACKENDS", "PRECISIONS", "BuildOptions", "TensorRTOptions", "build_engines"]
