"""The exported Padé engine computes what the torch policies compute (one source of truth)."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tcpade_trt.cache.pade import VARIANTS, PadeTSI
from tcpade_trt.export.pade_onnx import INPUT_NAMES, export_pade


def residual_history(batch, tokens, hidden, seed):
    """Realistic histories: a large residual drifting slowly with noise (sigma near 1)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, tokens, hidden, generator=gen) * 3
    drift = torch.randn(batch, tokens, hidden, generator=gen) * 0.1
    return [base + s * drift + 0.02 * torch.randn(batch, tokens, hidden, generator=gen) for s in (7, 4, 2)]


@pytest.fixture(scope="module", params=VARIANTS)
def engine(request, tmp_path_factory):
    path = export_pade(tmp_path_factory.mktemp("pade") / f"{request.param}.onnx", request.param, hidden=24)
    return request.param, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch,tokens", [(1, 4), (2, 64), (5, 33)])
def test_onnxruntime_matches_torch_on_several_shapes(engine, batch, tokens):
    variant, session = engine
    r1, r2, r3 = residual_history(batch, tokens, 24, seed=batch * tokens)
    params = torch.tensor([2.0, -3.0, -5.0, 1.0, 0.3, -0.3, 10.0, 0.25])
    expected = PadeTSI(variant)(r1, r2, r3, params)
    got = session.run(None, {n: t.numpy() for n, t in zip(INPUT_NAMES, (r1, r2, r3, params))})
    assert got[0].shape == (batch, tokens, 24) and got[1].shape == (batch,)
    for g, e in zip(got, expected):
        e = e.numpy()
        assert np.linalg.norm(g - e) / np.linalg.norm(e) <= 1e-6


def test_export_leaves_no_partial_file_when_it_fails(tmp_path):
    with pytest.raises(ValueError, match="unknown TC-Padé variant"):
        export_pade(tmp_path / "x.onnx", "nope")
    assert list(tmp_path.iterdir()) == []
