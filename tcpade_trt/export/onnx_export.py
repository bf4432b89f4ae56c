"""torch -> ONNX for the parts of a split model (dynamo exporter, dynamic batch), and its check.

Every file is written under its final name in a scratch folder next to the destination and moved
when complete, so a failed export leaves nothing that looks finished, and a part over
onnx_files.EXTERNAL_DATA_BYTES of weights (protobuf stops at 2 GB) keeps its weights in
``<file>.data``, named correctly in the graph (see onnx_files.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import TcpadeError
from ..models.model import Model
from . import onnx_files
from .parts import BuildShape, PartModule, batch_axes, example_tensors


class ExportError(TcpadeError):
    """A part could not be exported or does not match torch."""


def _quiet():
    """The exporter prints progress lines and warnings of its own; our build shows its own progress."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    noisy = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch.onnx._internal.exporter._registration")
    for name in noisy:
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
    return stack


def export_part(model: Model, part: str, shape: BuildShape, path: Path, opset: int = 18,
                axes: dict | None = None) -> dict:
    """Export one part to ``path``; returns its I/O description for the manifest."""
    module = PartModule(model, part).eval()
    example = example_tensors(model, shape, batch=max(2, shape.batch_opt))
    axes = axes or batch_axes(model, shape)
    args = tuple(example[n] for n in module.input_names)
    batch = torch.export.Dim("batch", min=1, max=max(shape.batch_max, 2))
    # forward(*tensors) binds every input to one vararg, so the specs nest in one tuple
    dynamic = (tuple({axes[n]: batch} if axes.get(n) is not None else None for n in module.input_names),)
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    path = Path(path)
    try:
        with onnx_files.scratch_folder(path, "export") as scratch, _quiet(), torch.no_grad():
            program = torch.onnx.export(module, args, input_names=list(module.input_names),
                                        output_names=list(module.output_names), dynamic_shapes=dynamic,
                                        opset_version=opset, dynamo=True, verbose=False)
            target = Path(scratch) / path.name  # the final name: the graph names its data file after it
            program.save(str(target), external_data=onnx_files.needs_external_data(weight_bytes=weight_bytes))
            del program  # the exported program holds a copy of the weights
            onnx_files.move_model(target, path)
    except Exception as exc:
        raise ExportError(f"exporting the {part} part of {model.name} to ONNX failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}).") from exc
    return describe_io(module, example, axes)


def describe_io(module: PartModule, example: dict, axes: dict) -> dict:
    """Names, dtypes and shapes ("batch" on the dynamic axis) of a part's inputs and outputs."""
    def spec(name):
        t = example[name]
        dims = ["batch" if i == axes.get(name) else d for i, d in enumerate(t.shape)]
        return {"name": name, "dtype": str(t.dtype).replace("torch.", ""), "shape": dims}

    return {"inputs": [spec(n) for n in module.input_names], "outputs": [spec(n) for n in module.output_names]}


def relative_error(got: np.ndarray, expected: np.ndarray, scale: np.ndarray | None = None) -> float:
    """||got - expected|| / ||scale|| (default: ||expected||), in float64."""
    expected = expected.astype(np.float64)
    denom = np.linalg.norm(expected if scale is None else scale.astype(np.float64))
    return float(np.linalg.norm(got.astype(np.float64) - expected) / (denom if denom > 0 else 1.0))


def host_array(t: torch.Tensor) -> np.ndarray:
    """A tensor as the numpy array an engine is fed: on the host, bf16 / fp16 as float32 (numpy has no bf16)."""
    t = t.detach()
    return (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).cpu().numpy()


def worst_error(errors) -> float:
    """The largest error, NaN if any is NaN (max() keeps a number over a later NaN: an all-NaN engine would pass)."""
    errors = list(errors)
    return float("nan") if any(e != e for e in errors) else max(errors)


def check_part(session, model: Model, part: str, shape: BuildShape, tolerance: float,
               batches: tuple[int, ...] = (2,), seed: int = 7) -> float:
    """Run ``session`` (anything with .run(None, feeds)) on fresh example inputs at each of ``batches``;
    compare with torch.

    Returns the worst relative L2 error over the outputs; raises ExportError above ``tolerance``.
    """
    module = PartModule(model, part).eval()
    worst = 0.0
    for batch in batches:
        example = example_tensors(model, shape, batch=batch, seed=seed)
        feeds = {n: host_array(example[n]) for n in module.input_names}
        with torch.no_grad():
            expected = module(*(example[n] for n in module.input_names))
        got = dict(zip(module.output_names, session.run(None, feeds)))
        expected = {n: e.float().cpu().numpy() for n, e in zip(module.output_names, expected)}
        # the residual x_out - x_in carries x_out's absolute error; it is judged on x_out's scale, or a
        # quantized block stack whose residual is small next to x_in would read as wrong
        scale = {"residual": expected.get("x_out")}
        worst = worst_error([worst, *(relative_error(got[n], expected[n], scale.get(n)) for n in module.output_names)])
    if not worst <= tolerance:  # NaN included
        raise ExportError(f"the {part} engine differs from torch by {worst:.2e} (relative L2), more than the "
                          f"{tolerance:.0e} allowed; the export is not trustworthy, so the build stops.")
    return worst
