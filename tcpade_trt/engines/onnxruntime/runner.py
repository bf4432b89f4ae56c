"""onnxruntime sessions called with named torch tensors: the onnxruntime backend's Runner (engines/backend.py).

On CPU, tensors cross as numpy views (zero-copy both ways). On a GPU (CUDA or TensorRT execution
provider) they cross by I/O binding: inputs are bound by their device pointers, outputs are
allocated by onnxruntime on the device and handed to torch through DLPack, so nothing goes through
host memory; with the runtime's CUDA stream given to the provider and onnxruntime's end-of-run
synchronisation switched off, engine calls and torch ops queue on one stream without host syncs.
"""

from __future__ import annotations

import numpy as np
import torch

from ...models.family import Tensors
from ..backend import EngineError, engine_call

# element types for I/O binding; bfloat16 has no numpy type, onnxruntime takes ONNX's enum (16) for it
_ELEMENT_TYPE = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: 16, torch.int64: np.int64,
                 torch.int32: np.int32, torch.bool: np.bool_}


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()


class OrtPart:
    """One onnxruntime session; ``part(named_tensors[, outputs]) -> {output name: tensor}`` for every
    output, or for the named ``outputs`` only (the others are not copied out).

    device: where the runtime keeps tensors; CPU runs through numpy, anything else through I/O binding
    (which ``io_binding=True`` also forces on CPU, where the tests exercise it).
    """

    def __init__(self, name: str, session, input_names, output_names, device: torch.device | None = None,
                 io_binding: bool | None = None):
        self.name, self.session = name, session
        self.input_names, self.output_names = list(input_names), list(output_names)
        self.device = device or torch.device("cpu")
        self.io_binding = self.device.type != "cpu" if io_binding is None else io_binding
        self.run_options = None
        if self.device.type == "cuda":
            import onnxruntime as ort

            self.run_options = ort.RunOptions()
            # the caller orders work on the shared stream; a host sync per engine call would serialise it
            self.run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self.seconds = 0.0  # time inside the engine call (on a GPU: the launch), for overhead accounting

    def close(self) -> None:
        """Release the session (onnxruntime frees it with its last reference)."""
        self.session = None

    def closed(self) -> bool:
        return self.session is None

    def __call__(self, named: Tensors, outputs: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        outputs = list(outputs) if outputs is not None else self.output_names
        with engine_call(self):
            return self._run_bound(named, outputs) if self.io_binding else self._run_numpy(named, outputs)

    def _run_numpy(self, named: Tensors, outputs: list[str]) -> dict[str, torch.Tensor]:
        feeds = {n: _numpy(named[n]) for n in self.input_names}
        outs = self.session.run(outputs, feeds)
        return {n: torch.from_numpy(o) for n, o in zip(outputs, outs)}

    def _run_bound(self, named: Tensors, outputs: list[str]) -> dict[str, torch.Tensor]:
        binding = self.session.io_binding()
        device_type, device_id = self.device.type, self.device.index or 0
        keep = []  # the bound tensors must outlive the run
        for n in self.input_names:
            t = named[n].detach().to(self.device).contiguous()
            if t.dtype not in _ELEMENT_TYPE:
                raise EngineError(f"the {self.name} engine's input {n} has dtype {t.dtype}, which cannot be bound.")
            keep.append(t)
            binding.bind_input(n, device_type, device_id, _ELEMENT_TYPE[t.dtype], tuple(t.shape), t.data_ptr())
        for n in outputs:
            binding.bind_output(n, device_type, device_id)  # onnxruntime allocates: shapes are known only at run
        self.session.run_with_iobinding(binding, self.run_options)
        # DLPack hands the output's memory to torch, which keeps it alive; no copy on any device
        outs = binding.get_outputs()
        return {n: torch.from_dlpack(o._ortvalue.to_dlpack()) for n, o in zip(outputs, outs)}
