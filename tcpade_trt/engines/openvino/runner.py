"""OpenVINO compiled models called with named torch tensors: the OpenVINO backend's Runner (engines/backend.py).

Each part of a folder is read from its ONNX file (OpenVINO's ONNX frontend), its batch axes bounded to the
folder's range (the CPU plugin plans memory for bounded shapes better than for open ones), and compiled for the
CPU with an explicit inference precision: f32 for every part, bf16 for the block stack of a bf16 folder. OpenVINO
picks bf16 by itself on CPUs that have it, and silently runs f32 where bf16 was asked on one that has not: both are
refused here, so a folder runs in the precision its manifest says or not at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import TcpadeError
from ..backend import Opened, OpenRequest, engine_call

# OpenVINO's names for the precisions a folder's parts run in (INFERENCE_PRECISION_HINT)
PRECISION_HINT = {"fp32": "f32", "bf16": "bf16"}


def import_openvino():
    """The openvino module, or one sentence saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise TcpadeError("the openvino backend needs OpenVINO: pip install 'tcpade-trt[openvino]'.") from None
    return openvino


def cpu_capabilities() -> set[str]:
    """What OpenVINO's CPU plugin can run here ('FP32', 'BF16', 'INT8', ...)."""
    ov = import_openvino()
    return set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def require_precision(precision: str) -> None:
    """Refuse a precision this CPU has no kernels for (OpenVINO would run f32 instead, without a word)."""
    if precision == "bf16" and "BF16" not in cpu_capabilities():
        raise TcpadeError("this CPU has no bf16 kernels (OpenVINO's CPU plugin offers "
                          f"{', '.join(sorted(cpu_capabilities()))}; bf16 needs AVX512-BF16 or AMX): use an fp32 "
                          "folder here, or build and run bf16 on a CPU that has them.")


class OvPart:
    """One compiled model and its infer request; ``part(named_tensors[, outputs]) -> {output name: tensor}``."""

    def __init__(self, name: str, compiled, input_names, output_names):
        self.name, self.compiled = name, compiled
        self.input_names, self.output_names = list(input_names), list(output_names)
        self.request = compiled.create_infer_request()
        self.seconds = 0.0

    def close(self) -> None:
        self.request = self.compiled = None

    def closed(self) -> bool:
        return self.request is None

    def __call__(self, named, outputs: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        with engine_call(self):
            feeds = {n: named[n].detach().cpu().contiguous().numpy() for n in self.input_names}
            # share_outputs=False: the request reuses its output buffers on the next call; callers keep tensors
            result = self.request.infer(feeds, share_inputs=True, share_outputs=False)
            return {n: torch.from_numpy(np.asarray(result[self.compiled.output(n)]))
                    for n in (outputs or self.output_names)}


class OvSession:
    """An OvPart behind onnxruntime's ``run(None, feeds)`` (numpy in, float32 numpy out in ``order``): what the
    build's accuracy check calls."""

    def __init__(self, part: OvPart, order):
        self.part, self.order = part, list(order)

    def run(self, names, feeds):
        out = self.part({n: torch.from_numpy(np.asarray(v)) for n, v in feeds.items()})
        return [out[n].float().numpy() for n in (names or self.order)]


def compile_part(core, path: Path, entry, shape: dict, precision: str):
    """``path`` (ONNX) compiled for the CPU, its batch axes bounded to the folder's range, in ``precision``."""
    import openvino as ov

    model = core.read_model(str(path))
    bounded = {}
    for spec in entry.inputs:  # {"name", "shape": ["batch", 16, 64] or [2, ...], "dtype"}
        dims = spec["shape"]
        if any(isinstance(d, str) for d in dims):
            bounded[spec["name"]] = ov.PartialShape([ov.Dimension(shape["batch_min"], shape["batch_max"])
                                                     if isinstance(d, str) else int(d) for d in dims])
    if bounded:
        model.reshape(bounded)
    hint = PRECISION_HINT[precision]
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})
    got = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    if hint == "bf16" and "bf16" not in got:
        raise TcpadeError(f"OpenVINO compiled {path.name} in {got}, not bf16: this CPU has no bf16 kernels.")
    return compiled


def open_openvino(folder: Path, manifest, request: OpenRequest) -> Opened:
    ov = import_openvino()
    if manifest.precision == "bf16":
        require_precision("bf16")
    core = ov.Core()
    engines = {}
    for name, entry in manifest.parts.items():
        precision = entry.precision if entry.precision in PRECISION_HINT else "fp32"
        compiled = compile_part(core, folder / entry.file, entry, manifest.shape, precision)
        engines[name] = OvPart(name, compiled, [i["name"] for i in entry.inputs], [o["name"] for o in entry.outputs])
    return Opened(engines, torch.device("cpu"))
