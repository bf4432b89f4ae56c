"""TensorRT: plans built from the same ONNX files on the GPU they will run on (TensorRT 10.1+ and 11).

    build.py       the builder: per-version flags, profiles, parse / build failures as one sentence
    plans.py       TrtPart: a plan called with named torch tensors on one stream (CUDA graphs, weight streaming)
    plan_check.py  every plan against torch before the folder is sealed
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from ..backend import Backend, BuildContext, Opened, OpenRequest


class TensorRT(Backend):
    name, title = "tensorrt", "TensorRT"
    install = "pip install 'tcpade-trt[gpu]' on a machine with an NVIDIA GPU"
    precisions = ("fp32", "fp16", "bf16", "int8", "fp8")
    runs_on_gpu = writes_engines = True
    build_stages = 2  # build the plans, check them against torch
    devices = ("auto", "cuda")

    def available(self) -> bool:
        import importlib.util

        return importlib.util.find_spec("tensorrt") is not None

    def validate(self, options) -> None:
        super().validate(options)
        if options.tensorrt.optimization_level not in range(6):
            raise ConfigError("the TensorRT builder optimization level must be 0-5.")
        if options.precision == "int8":  # ModelOpt's SmoothQuant recipe (FP8 is ModelOpt's for every backend)
            from ..modelopt_quant import require_modelopt

            require_modelopt(options.precision)

    def check_build_machine(self, options) -> None:
        from .build import check_build_machine

        check_build_machine(options.precision)  # TensorRT and a capable GPU, before the export

    def build(self, folder: Path, entries: dict, context: BuildContext, stages) -> None:
        from .. import gpu
        from .build import build_plans
        from .plan_check import check_plans

        with gpu.model_off_the_gpu(context.model):
            stages.run("build TensorRT plans", build_plans, folder, entries, context.options)
        stages.run("check TensorRT plans against torch", check_plans, folder, entries, context.model,
                   context.options, context.cheap, context.quantization)

    def manifest_options(self, options) -> dict:
        from dataclasses import asdict

        return {"tensorrt": asdict(options.tensorrt)}

    def versions(self) -> dict:
        from .build import tensorrt_versions

        return tensorrt_versions()

    def open(self, folder: Path, manifest, request: OpenRequest) -> Opened:
        from .plans import default_device, load_trt_parts, require_tensorrt_runtime

        if request.device not in self.devices:
            raise ConfigError(f"{folder} holds TensorRT plans, which run on the CUDA GPU they were built for (got "
                              f"device {request.device!r}; leave --device out).")
        require_tensorrt_runtime(manifest)
        cuda = default_device()
        # torch ops of a generation go on the plans' stream: ordered with them, no host syncs
        engines, stream = load_trt_parts(folder, {n: e.file for n, e in manifest.parts.items()},
                                         cuda_graphs=request.cuda_graphs,
                                         weight_streaming_budget=request.weight_streaming_budget, device=cuda)
        return Opened(dict(engines), cuda.device, stream)


BACKEND = TensorRT()
