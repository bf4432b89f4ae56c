"""After a backend compiles a folder's engines: run each on fresh sample inputs, against torch (the model's parts)
or onnxruntime (the Padé graphs, whose ONNX source stays in the folder), and refuse the build beyond
export/tolerances.ENGINE_TOLERANCE, before the folder is sealed. The error of each engine goes into the manifest.

Used by every backend whose engines are not the ONNX files themselves (TensorRT plans, OpenVINO compiled models).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..export.onnx_export import ExportError, check_part, relative_error, worst_error
from ..export.pade_onnx import example_pade_inputs
from ..export.parts import PARTS, part_io
from ..export.tolerances import ENGINE_TOLERANCE, check_batches, quantized_tolerance

# session_for(part name, output names in order) -> an object with onnxruntime's ``run(None, feeds)`` (numpy in,
# float32 numpy out in that order) running the backend's engine for that part
SessionFor = Callable[[str, list], object]


def check_engines(folder: Path, entries: dict, session_for: SessionFor, model, options, cheap=None,
                  quantization: dict | None = None, what: str = "engine", tolerances: dict = ENGINE_TOLERANCE) -> None:
    """Run every engine on fresh sample inputs; refuse the build beyond ``tolerances`` (one sentence). ``model`` is
    the reference of the blocks engine, ``cheap`` (builder/device.cheap_parts_model) of the others; a quantized
    blocks engine is allowed its recipe's measured cost (``quantization``, export/tolerances.quantized_tolerance)."""
    from .onnxruntime.sessions import create_session

    cheap = cheap or model
    for name, entry in entries.items():
        tolerance = tolerances[entry.precision]
        if name == "blocks" and entry.precision in ("int8", "fp8"):
            tolerance = quantized_tolerance(entry.precision, tolerances, quantization)
        if name in PARTS:
            reference = model if name == "blocks" else cheap
            session = session_for(name, part_io(reference, name)[1])
            entry.check_error = check_part(session, reference, name, options.shape, tolerance,
                                           batches=check_batches(options.shape))
            continue
        graph = "pade-fit" if name.startswith("pade-fit") else name  # the Padé graphs: against onnxruntime
        source = entry.file if entry.file.endswith(".onnx") else entry.extra_files[0]
        reference = create_session(folder / source, ["CPUExecutionProvider"])
        tokens, hidden = entries["blocks"].outputs[0]["shape"][1:]
        feeds = dict(zip((i.name for i in reference.get_inputs()),
                         (t.numpy() for t in example_pade_inputs(graph, tokens=tokens, hidden=hidden))))
        got = session_for(name, [o.name for o in reference.get_outputs()]).run(None, feeds)
        expected = reference.run(None, feeds)
        error = worst_error(relative_error(g, e) for g, e in zip(got, expected))
        if not error <= tolerance:
            raise ExportError(f"the {name} {what} differs from onnxruntime by {error:.2e} (relative L2), more than "
                              f"the {tolerance:.0e} allowed; the build stops.")
        entry.check_error = error
