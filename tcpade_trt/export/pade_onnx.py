"""Export the Padé/TSI math (cache/pade.py) to a small ONNX graph: "the Padé engine".

Inputs  r1, r2, r3 [batch, tokens, hidden] (most recent residual first), params [8] float32
Outputs prediction [batch, tokens, hidden], tsi [batch]
batch and tokens are dynamic; hidden is fixed per model. One source of truth: the graph is traced
from the same PadeTSI module the eager policies run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from ..cache.pade import PadeTSI
from .onnx_export import _quiet

INPUT_NAMES = ("r1", "r2", "r3", "params")  # params: 8 floats, see cache/pade.py
OUTPUT_NAMES = ("prediction", "tsi")


def example_pade_inputs(batch: int = 2, tokens: int = 16, hidden: int = 32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    rs = [torch.randn(batch, tokens, hidden, generator=gen) for _ in range(3)]
    params = torch.tensor([2.0, -1.0, -2.0, 1.0, 0.0, 0.0, 10.0, 0.25])
    return (*rs, params)


def export_pade(path: str | Path, variant: str = "rational", hidden: int = 32, opset: int = 18) -> Path:
    """Write the Padé graph for ``variant`` to ``path`` atomically; returns the path."""
    path = Path(path)
    module = PadeTSI(variant).eval()
    args = example_pade_inputs(hidden=hidden)
    batch, tokens = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("tokens", min=2, max=1 << 20)
    residual = {0: batch, 1: tokens}
    dynamic_shapes = {"r1": residual, "r2": residual, "r3": residual, "params": None}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with _quiet():
            program = torch.onnx.export(
                module, args, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True, verbose=False,
            )
            program.save(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; an engine file is as readable as its folder
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

