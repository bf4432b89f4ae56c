"""After TensorRT builds the plans: run each on fresh sample inputs, against torch (the model's parts)
or onnxruntime (the Padé graphs), and refuse the build beyond PLAN_TOLERANCE, before the folder is
sealed. The error of each plan goes into the manifest."""

from __future__ import annotations

from pathlib import Path

from ..engines import trt_plans
from ..engines.ort_backend import create_session
from ..export.onnx_export import ExportError, check_part, relative_error, worst_error
from ..export.pade_onnx import example_pade_inputs
from ..export.parts import PARTS, part_io
from .blocks_stage import quantized_tolerance
from .parts_stage import check_batches

# relative L2 that a plan may differ by; fp32 parts run with TF32 matmuls, TensorRT's default
PLAN_TOLERANCE = {"fp32": 1e-2, "fp16": 2e-2, "bf16": 5e-2, "int8": 0.1, "fp8": 0.2}


def check_plans(folder: Path, entries: dict, model, options, cheap=None, quantization: dict | None = None) -> None:
    """Run every plan on fresh sample inputs; refuse the build beyond PLAN_TOLERANCE (one sentence). ``model`` is
    the reference of the blocks plan, ``cheap`` (builder/device.cheap_parts_model) of the others; a quantized
    blocks plan is allowed its recipe's measured cost (``quantization``, blocks_stage.quantized_tolerance)."""
    cheap = cheap or model
    parts, stream = trt_plans.load_trt_parts(folder, {n: e.file for n, e in entries.items()},
                                        device=trt_plans.default_device())
    try:
        for name, entry in entries.items():
            tolerance = PLAN_TOLERANCE[entry.precision]
            if name == "blocks" and entry.precision in ("int8", "fp8"):
                tolerance = quantized_tolerance(entry.precision, PLAN_TOLERANCE, quantization)
            if name in PARTS:
                reference = model if name == "blocks" else cheap
                session = trt_plans.PlanSession(parts[name], part_io(reference, name)[1])
                entry.check_error = check_part(session, reference, name, options.shape, tolerance,
                                               batches=check_batches(options.shape))
                continue
            graph = "pade-fit" if name.startswith("pade-fit") else name  # the Padé graphs: against onnxruntime
            reference = create_session(folder / entry.extra_files[0], ["CPUExecutionProvider"])
            tokens, hidden = entries["blocks"].outputs[0]["shape"][1:]
            feeds = dict(zip((i.name for i in reference.get_inputs()),
                             (t.numpy() for t in example_pade_inputs(graph, tokens=tokens, hidden=hidden))))
            got = trt_plans.PlanSession(parts[name], [o.name for o in reference.get_outputs()]).run(None, feeds)
            expected = reference.run(None, feeds)
            error = worst_error(relative_error(g, e) for g, e in zip(got, expected))
            if not error <= tolerance:
                raise ExportError(f"the {name} plan differs from onnxruntime by {error:.2e} (relative L2), more than "
                                  f"the {tolerance:.0e} allowed; the build stops.")
            entry.check_error = error
    finally:  # the plans' GPU memory goes now, once nothing queued can use it (a failed check may leave work)
        try:
            stream.synchronize()
        except Exception:  # a device fault raised again here would hide the check's own error
            pass
        for part in parts.values():
            part.close()
