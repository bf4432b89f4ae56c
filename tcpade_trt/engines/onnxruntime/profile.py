"""Where an onnxruntime engine spends its time, by operator type (onnxruntime's own profiler).

    shares = profile_part("engines/demo-fp32", "blocks", batch=16)   # [(op type, share, ms per run)]

Answers questions like "how much can INT8 matmuls gain here?": if MatMul is a quarter of the
block stack's time, quantizing it cannot make the engine more than 1 / (1 - 0.25) = 1.33x faster.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ...errors import ConfigError


def profile_part(folder: str | Path, part: str = "blocks", batch: int | None = None, runs: int = 10,
                 warmup: int = 3) -> list[tuple[str, float, float]]:
    """Run ``part`` of an onnxruntime folder ``runs`` times on random inputs of ``batch`` rows (default:
    the folder's opt batch) after ``warmup`` runs; returns (op type, share of node time, ms per run),
    largest first."""
    from ..manifest import read_manifest
    from .sessions import create_session

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.backend != "onnxruntime":
        raise ConfigError(f"{folder} holds TensorRT plans; the operator profile reads onnxruntime folders.")
    if part not in manifest.parts:
        raise ConfigError(f"{folder} has no '{part}' part; it has {', '.join(manifest.parts)}.")
    batch = batch or manifest.shape["batch_opt"]
    entry = manifest.parts[part]
    with tempfile.TemporaryDirectory() as tmp:
        # the runtime's own session settings, plus the profiler
        session = create_session(folder / entry.file, ["CPUExecutionProvider"],
                                 profile_prefix=os.path.join(tmp, "profile"))
        feeds = _random_feeds(entry.inputs, batch)
        for _ in range(warmup + runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    # keep the node events inside the last ``runs`` model runs (the warm-up allocates and packs)
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[-runs:]
    start = windows[0][0] if windows else 0
    by_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= start:
            by_op[event["args"]["op_name"]] += event["dur"]  # microseconds
    total = sum(by_op.values()) or 1
    return [(op, us / total, us / 1000 / runs) for op, us in by_op.most_common()]


def _random_feeds(inputs: list[dict], batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in inputs:
        shape = [batch if d == "batch" else d for d in spec["shape"]]
        dtype = np.dtype(spec["dtype"]) if spec["dtype"] != "bfloat16" else np.float32
        feeds[spec["name"]] = (rng.standard_normal(shape) if dtype.kind == "f" else np.zeros(shape)).astype(dtype)
    return feeds
