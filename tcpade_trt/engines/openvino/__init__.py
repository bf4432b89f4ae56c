"""OpenVINO: the exported graphs compiled by OpenVINO's CPU plugin, in fp32 or (on CPUs with AVX512-BF16 or AMX)
with the block stack in bf16.

    runner.py   OvPart: a compiled model called with named torch tensors; compiling and opening a folder

A folder holds the same standard-op ONNX files as an onnxruntime one (without onnxruntime's fused kernels, which
OpenVINO cannot read); OpenVINO compiles them when the folder is opened, and the build compiles and checks each
against torch first. Install: pip install 'tcpade-trt[openvino]'.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from ..backend import Backend, BuildContext, Opened, OpenRequest


class OpenVINO(Backend):
    name, title = "openvino", "OpenVINO"
    install = "pip install 'tcpade-trt[openvino]'"
    precisions = ("fp32", "bf16")
    build_stages = 1  # compile and check every part against torch

    def available(self) -> bool:
        import importlib.util

        return importlib.util.find_spec("openvino") is not None

    def promising_here(self) -> tuple[str, ...]:
        """bf16 where the CPU has bf16 kernels (AVX512-BF16, AMX): on an AVX2 CPU OpenVINO's fp32 was 0.8-0.9x of
        onnxruntime's (docs/bench-cpu/bench.md), so nothing is promised there."""
        from .runner import cpu_capabilities

        return ("bf16",) if "BF16" in cpu_capabilities() else ()

    def validate(self, options) -> None:
        super().validate(options)
        if options.device == "cuda":
            raise ConfigError("--device cuda is for TensorRT builds; OpenVINO builds load the model on the CPU.")
        from ..onnxruntime import _refuse_tensorrt_options

        _refuse_tensorrt_options(options, self.title)

    def check_build_machine(self, options) -> None:
        from .runner import import_openvino, require_precision

        import_openvino()
        require_precision(options.precision)  # a bf16 folder is checked in bf16 or not built

    def needs_fp32_blocks(self, options) -> bool:
        return True  # bf16 is the compiler's: the graph stays fp32

    def build(self, folder: Path, entries: dict, context: BuildContext, stages) -> None:
        stages.run("compile and check OpenVINO models against torch", _check, folder, entries, context)

    def versions(self) -> dict:
        from .runner import import_openvino

        return {"openvino": import_openvino().__version__}

    def open(self, folder: Path, manifest, request: OpenRequest) -> Opened:
        from .runner import open_openvino

        self.refuse_gpu_only(request, folder)
        return open_openvino(folder, manifest, request)


def _check(folder: Path, entries: dict, context: BuildContext) -> None:
    import openvino as ov

    from ..engine_check import check_engines
    from .runner import OvPart, OvSession, compile_part

    options, core, shape = context.options, ov.Core(), context.options.shape.as_dict()
    if options.precision == "bf16":
        entries["blocks"].precision = "bf16"  # the blocks run in bf16; every other part in f32
        context.quantization = {"method": "bf16 by OpenVINO's CPU plugin (INFERENCE_PRECISION_HINT) from the fp32 "
                                          "graph", "scope": "blocks only"}

    def session_for(name, order):
        entry = entries[name]
        compiled = compile_part(core, folder / entry.file, entry, shape, entry.precision)
        return OvSession(OvPart(name, compiled, [i["name"] for i in entry.inputs],
                                [o["name"] for o in entry.outputs]), order)

    check_engines(folder, entries, session_for, context.model, options, context.cheap, context.quantization,
                  what="OpenVINO model")


BACKEND = OpenVINO()
