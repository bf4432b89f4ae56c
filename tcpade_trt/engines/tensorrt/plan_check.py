"""After TensorRT builds the plans: every plan against torch (engines/engine_check.py), with the plans on one
stream, released when the check ends."""

from __future__ import annotations

from pathlib import Path

from ...export.tolerances import ENGINE_TOLERANCE as PLAN_TOLERANCE
from ..engine_check import check_engines
from . import plans as trt_plans


def check_plans(folder: Path, entries: dict, model, options, cheap=None, quantization: dict | None = None) -> None:
    """Run every plan on fresh sample inputs; refuse the build beyond PLAN_TOLERANCE (one sentence)."""
    parts, stream = trt_plans.load_trt_parts(folder, {n: e.file for n, e in entries.items()},
                                             device=trt_plans.default_device())
    try:
        check_engines(folder, entries, lambda name, order: trt_plans.PlanSession(parts[name], order), model, options,
                      cheap, quantization, what="plan", tolerances=PLAN_TOLERANCE)
    finally:  # the plans' GPU memory goes now, once nothing queued can use it (a failed check may leave work)
        try:
            stream.synchronize()
        except Exception:  # a device fault raised again here would hide the check's own error
            pass
        for part in parts.values():
            part.close()
