"""Export the Padé/TSI math (cache/pade.py) to three small ONNX graphs: "the Padé engines".

    pade-fit-VARIANT  r1, r2, r3 [batch, tokens, hidden], fit_params [7]
                      -> base, scale, damping [batch, tokens, hidden], magnitude [2]
    pade-eval         base, scale, damping [batch, tokens, hidden], k [1], x_in [batch, tokens, hidden]
                      -> x_out [batch, tokens, hidden]
    tsi               r1, r2, r3 [batch, tokens, hidden] -> tsi [batch]

batch and tokens are dynamic; hidden is fixed per model. One source of truth: each graph is traced
from the same module the eager policies run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from ..cache.pade import FIT_PARAMS, PadeEval, PadeFit, TrajectoryStability
from ..paths import atomic_path
from .onnx_export import _quiet

RESIDUALS = ("r1", "r2", "r3")  # most recent residual first
FIT_STATE = ("base", "scale", "damping")
GRAPHS = {  # name -> (input names, output names); pade-fit-VARIANT shares one signature
    "pade-fit": ((*RESIDUALS, "fit_params"), (*FIT_STATE, "magnitude")),
    "pade-eval": ((*FIT_STATE, "k", "x_in"), ("x_out",)),
    "tsi": (RESIDUALS, ("tsi",)),
}
EXAMPLE_FIT_PARAMS = (-3.0, -5.0, 1.0, 0.3, -0.3, 10.0, 0.25)  # k2, k3, phase mix, lambda, c_max
assert len(EXAMPLE_FIT_PARAMS) == len(FIT_PARAMS)


def example_pade_inputs(graph: str, batch: int = 2, tokens: int = 16, hidden: int = 32, seed: int = 0):
    """Inputs of ``graph`` (a key of GRAPHS): random [batch, tokens, hidden] tensors and fixed scalars."""
    gen = torch.Generator().manual_seed(seed)
    big = lambda: torch.randn(batch, tokens, hidden, generator=gen)
    if graph == "pade-fit":
        return (big(), big(), big(), torch.tensor(EXAMPLE_FIT_PARAMS))
    if graph == "pade-eval":
        return (big(), big(), torch.rand(batch, tokens, hidden, generator=gen) * 0.25, torch.tensor([2.0]), big())
    return (big(), big(), big())


def pade_module(graph: str, variant: str = "rational") -> nn.Module:
    if graph == "pade-fit":
        return PadeFit(variant)
    return PadeEval() if graph == "pade-eval" else TrajectoryStability()


# graphs exported in this process, by (graph, variant, hidden, opset): a Padé graph holds no weights and depends on
# nothing else, so the folders of one process (the demo's fp32 and int8, a bench's precisions) share one export
_EXPORTED: dict[tuple, bytes] = {}


def export_pade(path: str | Path, graph: str, variant: str = "rational", hidden: int = 32, opset: int = 18) -> Path:
    """Write one Padé graph (``graph`` a key of GRAPHS) to ``path`` atomically; returns the path."""
    path = Path(path)
    key = (graph, variant, hidden, opset)
    if key not in _EXPORTED:
        with tempfile.TemporaryDirectory(prefix="tcpade-pade-") as scratch:
            _export(Path(scratch) / "graph.onnx", graph, variant, hidden, opset)
            _EXPORTED[key] = (Path(scratch) / "graph.onnx").read_bytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(_EXPORTED[key])
    return path


def _export(path: Path, graph: str, variant: str, hidden: int, opset: int) -> None:
    module = pade_module(graph, variant).eval()
    input_names, output_names = GRAPHS[graph]
    args = example_pade_inputs(graph, hidden=hidden)
    # keyed by forward()'s argument names, which the modules keep equal to the graph's input names
    batch, tokens = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("tokens", min=2, max=1 << 20)
    dynamic_shapes = {n: ({0: batch, 1: tokens} if a.dim() == 3 else None) for n, a in zip(input_names, args)}
    with _quiet():
        program = torch.onnx.export(module, args, input_names=list(input_names), output_names=list(output_names),
                                    dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True, verbose=False)
        program.save(str(path))  # no weights: nothing goes to external data


def pade_io(graph: str, tokens: int, hidden: int) -> dict:
    """The manifest's I/O description of ``graph`` in a folder built for ``tokens`` image tokens
    (the graph itself accepts any token count; "batch" is the folder's batch range)."""
    input_names, output_names = GRAPHS[graph]
    fixed = {"fit_params": [len(FIT_PARAMS)], "k": [1], "magnitude": [2], "tsi": ["batch"]}
    spec = lambda n: {"name": n, "dtype": "float32", "shape": fixed.get(n, ["batch", tokens, hidden])}
    return {"inputs": [spec(n) for n in input_names], "outputs": [spec(n) for n in output_names]}
