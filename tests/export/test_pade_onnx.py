"""The exported Padé engines compute what the torch policies compute (one source of truth)."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tcpade_trt.cache.pade import VARIANTS, PadeEval, PadeFit, trajectory_stability
from tcpade_trt.export.pade_onnx import GRAPHS, export_pade


def residual_history(batch, tokens, hidden, seed):
    """Realistic histories: a large residual drifting slowly with noise (sigma near 1)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, tokens, hidden, generator=gen) * 3
    drift = torch.randn(batch, tokens, hidden, generator=gen) * 0.1
    return [base + s * drift + 0.02 * torch.randn(batch, tokens, hidden, generator=gen) for s in (7, 4, 2)]


def export(tmp_path_factory, graph, variant="rational"):
    path = export_pade(tmp_path_factory.mktemp("pade") / f"{graph}.onnx", graph, variant, hidden=24)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda *tensors: session.run(None, {n: t.numpy() for n, t in zip(GRAPHS[graph][0], tensors)})


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    fits = {variant: export(tmp_path_factory, "pade-fit", variant) for variant in VARIANTS}
    return fits, export(tmp_path_factory, "pade-eval"), export(tmp_path_factory, "tsi")


def assert_close(got, expected):
    expected = expected.numpy()
    assert got.shape == expected.shape
    assert np.linalg.norm(got - expected) <= 1e-6 * max(np.linalg.norm(expected), 1e-30)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("batch,tokens", [(1, 4), (2, 64), (5, 33)])
def test_onnxruntime_matches_torch_on_several_shapes(engines, variant, batch, tokens):
    fits, evaluate, tsi = engines
    r1, r2, r3 = residual_history(batch, tokens, 24, seed=batch * tokens)
    fit_params, k = torch.tensor([-3.0, -5.0, 1.0, 0.3, -0.3, 10.0, 0.25]), torch.tensor([2.0])
    x_in = torch.randn(batch, tokens, 24)
    expected_state = PadeFit(variant)(r1, r2, r3, fit_params)
    state = fits[variant](r1, r2, r3, fit_params)
    for got, expected in zip(state, expected_state):
        assert_close(got, expected)
    base, scale, damping = (torch.from_numpy(s) for s in state[:3])
    assert_close(evaluate(base, scale, damping, k, x_in)[0], PadeEval()(*expected_state[:3], k, x_in))
    assert_close(tsi(r1, r2, r3)[0], trajectory_stability(r1, r2, r3))


def test_the_exported_fit_reads_nan_magnitude_for_a_nan_anywhere(engines):
    """onnxruntime's ReduceMax skips a NaN that is not the first element: the magnitude, which
    guards every prediction of a fit, must not."""
    fits, _, _ = engines
    r1, r2, r3 = residual_history(2, 64, 24, seed=3)
    fit_params = torch.tensor([-3.0, -5.0, 1.0, 0.3, -0.3, 10.0, 0.25])
    assert np.isfinite(fits["rational"](r1, r2, r3, fit_params)[3]).all()
    for position in [(0, 0, 0), (1, 40, 7), (1, 63, 23)]:
        poisoned = r1.clone()
        poisoned[position] = float("nan")
        assert np.isnan(fits["rational"](poisoned, r2, r3, fit_params)[3]).all(), position


def test_export_leaves_no_partial_file_when_it_fails(tmp_path):
    with pytest.raises(ValueError, match="unknown TC-Padé variant"):
        export_pade(tmp_path / "x.onnx", "pade-fit", "nope")
    assert list(tmp_path.iterdir()) == []
