"""What a backend is: the one interface every folder under engines/ implements.

A backend turns the fp32 ONNX parts of a model (builder/parts_stage.py) into engines and runs them:

    backend = engines.registry.backend("openvino")
    backend.validate(options)                        # its own options, one sentence each (before any work)
    backend.build(folder, entries, context, stages)  # after the export: plans, compiled models, their checks
    opened = backend.open(folder, manifest, OpenRequest(device="auto"))
    out = opened.engines["blocks"](named_tensors)    # a Runner: named torch tensors in, named tensors out
    opened.close()

Everything else (export, quantization recipes, manifest, hashing, the sampler, the cache policies) is shared
and never asks which backend it serves. Polygraphy keeps a backend the same way: one folder behind one runner
interface (backend/trt/{loader,runner}.py).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ..errors import ConfigError, TcpadeError


class EngineError(TcpadeError):
    """An engine failed while running."""


@contextlib.contextmanager
def engine_call(runner):
    """One call of ``runner``: refused once it is closed (``runner.closed()``), timed into ``runner.seconds``, and
    its runtime's own exception types turned into one EngineError sentence naming the part."""
    if runner.closed():
        raise EngineError(f"the {runner.name} engine was closed; open the folder again.")
    start = time.perf_counter()
    try:
        yield
    except EngineError:
        raise
    except Exception as exc:  # onnxruntime's, OpenVINO's, ... own error types
        raise EngineError(f"the {runner.name} engine failed ({type(exc).__name__}: {str(exc)[:200]}).") from exc
    finally:
        runner.seconds += time.perf_counter() - start


class Runner(Protocol):
    """One engine part: ``runner(named_tensors[, outputs]) -> {output name: tensor}`` (every output, or the named
    ones only); ``close()`` releases it (idempotent; a closed runner says so when called); ``seconds``: time spent
    inside its calls (on a GPU, asynchronous launches count only their launch)."""

    name: str
    seconds: float

    def __call__(self, named: dict[str, torch.Tensor], outputs: tuple[str, ...] | None = None
                 ) -> dict[str, torch.Tensor]: ...

    def close(self) -> None: ...


@dataclass
class OpenRequest:
    """How a caller wants a folder's engines opened. Each backend takes what applies to it and refuses, in one
    sentence, what does not (a weight-streaming budget for an onnxruntime folder)."""

    device: str = "auto"  # onnxruntime: 'cpu', 'cuda' or 'tensorrt' (its execution provider); others: 'auto'/'cpu'
    cuda_graphs: bool = False  # TensorRT: replay each plan from a captured CUDA graph
    io_binding: bool | None = None  # onnxruntime: force I/O binding on or off (default: on a GPU only)
    weight_streaming_budget: str | int | None = None  # TensorRT plans built with --weight-streaming


@dataclass
class Opened:
    """A folder's engines, open: runners by part name, the torch device their tensors live on, and the CUDA stream
    every engine call and torch op of a generation runs on (None on a CPU)."""

    engines: dict[str, Runner]
    device: torch.device
    stream: Any = None

    def close(self) -> None:
        for runner in self.engines.values():
            runner.close()


@dataclass
class BuildContext:
    """What a backend's build stage reads: the model as loaded (the blocks' reference), its fp32 host copy of the
    cheap parts, the options, and the block stack's quantization recipe (None for fp32)."""

    model: Any
    cheap: Any
    options: Any
    quantization: dict | None = None
    notes: dict = field(default_factory=dict)


class Backend:
    """Defaults describe a CPU backend that runs the exported graphs as they are; a backend overrides what differs."""

    name: str = ""
    title: str = ""  # for sentences: "onnxruntime", "TensorRT", "OpenVINO"
    install: str = ""  # how to install its runtime (one phrase)
    precisions: tuple[str, ...] = ("fp32",)
    runs_on_gpu: bool = False  # its engines are built on, and run on, a CUDA GPU
    writes_engines: bool = False  # compiled engines stored beside the graphs (twice the blocks on disk)
    build_stages: int = 0  # progress-bar stages its ``build`` runs
    devices: tuple[str, ...] = ("auto", "cpu")  # what OpenRequest.device may be
    reads_onnxruntime_ops: bool = False  # runs graphs holding onnxruntime's fused kernels (only onnxruntime does)

    def available(self) -> bool:
        """Whether its runtime is installed here (a cheap check: no engine is opened)."""
        return True

    def promising_here(self) -> tuple[str, ...]:
        """Precisions of this backend expected to be fast on this machine (the demo builds and times them)."""
        return ()

    def validate(self, options) -> None:
        """Options that make no sense for this backend, refused in one sentence before any work."""
        if options.precision not in self.precisions:
            raise ConfigError(f"the {self.name} backend builds {', '.join(self.precisions)} block stacks (got "
                              f"{options.precision!r}).")

    def check_build_machine(self, options) -> None:
        """What the build needs of this machine (a runtime, a GPU), checked before the minutes of export."""

    def fuses_onnxruntime_ops(self, options) -> bool:
        """Whether the exported parts are rewritten with onnxruntime's fused kernels (only onnxruntime runs them)."""
        return False

    def quantize_int8(self, model, blocks: Path, options, calibration_feeds) -> dict | None:
        """The backend's own INT8 recipe for ``blocks`` (the fp32 graph, replaced), or None for ModelOpt's.
        ``calibration_feeds()``: (block-input feeds on real trajectories, the manifest's record of them)."""
        return None

    def needs_fp32_blocks(self, options) -> bool:
        """Whether the fp32 block-stack graph is part of the folder or the input of its own quantizer."""
        return options.precision == "fp32"

    def build(self, folder: Path, entries: dict, context: BuildContext, stages) -> None:
        """After the ONNX files are written and checked: compile / check the engines (``stages.run`` for each step,
        ``build_stages`` of them)."""

    def manifest_options(self, options) -> dict:
        """The build options this backend's folders record (read back by ``open``)."""
        return {}

    def versions(self) -> dict:
        """The versions of its runtime (recorded at build, compared at load)."""
        return {}

    def open(self, folder: Path, manifest, request: OpenRequest) -> Opened:
        raise NotImplementedError

    def uses_gpu(self, folder: Path, manifest, device: str) -> bool:
        """Whether opening ``folder`` with ``device`` takes a GPU (a server reserves one per replica)."""
        return self.runs_on_gpu

    def refuse_gpu_only(self, request: OpenRequest, folder: Path) -> None:
        """One sentence for TensorRT-only open options asked of a folder that has no plans."""
        if request.weight_streaming_budget is not None:
            raise ConfigError(f"{folder} is an {self.title} folder; a weight-streaming budget is for TensorRT plans "
                              "built with --weight-streaming.")
        if request.cuda_graphs:
            raise ConfigError(f"{folder} is an {self.title} folder; CUDA graphs replay TensorRT plans (leave "
                              "--cuda-graphs out).")
        if request.device not in self.devices:
            raise ConfigError(f"{folder} is an {self.title} folder, which runs on {', '.join(self.devices)} "
                              f"(got device {request.device!r}).")
