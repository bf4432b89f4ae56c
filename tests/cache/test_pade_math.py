"""The Padé/TSI math on sequences whose answer is known in advance."""

import torch

from tcpade_trt.cache.pade import PadeEval, PadeFit, trajectory_stability

from .helpers import linear_sequence


def predict(variant, r1, r2, r3, k, k2=-1.0, k3=-2.0, mix=(1.0, 0.0, 0.0), lam=10.0, c_max=0.25):
    """Fit the history (offsets k2, k3 of r2, r3 from r1's step), then evaluate k steps after r1."""
    base, scale, damping, _ = PadeFit(variant)(r1, r2, r3, torch.tensor([k2, k3, *mix, lam, c_max]))
    x_in = torch.zeros_like(r1)  # so that the evaluation's x_out is the predicted residual itself
    return PadeEval()(base, scale, damping, torch.tensor([float(k)]), x_in)


def test_tsi_is_two_on_a_straight_line_and_zero_on_a_reversal():
    """The paper's scale: ||u1 + u2|| in [0, 2], large = stable (the paper predicts when TSI >= theta)."""
    r = linear_sequence()
    assert torch.allclose(trajectory_stability(r(3), r(2), r(1)), torch.full((2,), 2.0), atol=1e-6)
    base, step = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    there_and_back = trajectory_stability(base, base + step, base)  # r3 -> r2 -> r1 reverses
    assert torch.allclose(there_and_back, torch.zeros(2), atol=1e-6)
    turn = torch.zeros(1, 1, 2)
    right_angle = trajectory_stability(turn + torch.tensor([1.0, 1.0]), turn + torch.tensor([1.0, 0.0]), turn)
    assert torch.allclose(right_angle, torch.tensor([2**0.5]))  # a quarter turn: sqrt(2)


def test_rational_variant_reproduces_a_linear_sequence_at_any_offset():
    r = linear_sequence()
    # history at steps 2, 4, 7 (uneven spacing, as after gated full steps); predict steps 8..10
    for target in (8, 9, 10):
        pred = predict("rational", r(7), r(4), r(2), target - 7, 4 - 7, 2 - 7)
        torch.testing.assert_close(pred, r(target), rtol=1e-5, atol=1e-5)
    assert trajectory_stability(r(7), r(4), r(2)).min() > 2 - 1e-3


def test_reference_variant_keeps_its_prediction_within_the_clamp_around_m():
    """The released code's 1 / (1 - 0.1 sigma) overshoots a slow line by ~11%; its clamp caps the
    deviation from m = 0.6 r1 + 0.4 r2 at max(0.5 |r1 - r2|, 0.1 (|r1| + |r2|) / 2)."""
    base, drift = torch.ones(1, 4, 4) * 5, torch.ones(1, 4, 4) * 1e-3
    r = lambda s: base + s * drift
    pred = predict("reference", r(3), r(2), r(1), 1)
    m = 0.6 * r(3) + 0.4 * r(2)
    bound = 0.1 * (r(3).abs() + r(2).abs()) / 2
    assert ((pred - m).abs() <= bound + 1e-5).all()
    assert ((pred - m).abs() >= 0.99 * bound).all()  # it does hit the clamp


def test_paper_variant_is_the_equation_as_stated():
    """Constant history: sigma = 1, so R_hat = (2 r1 - r2) / (1 + r3 / lambda) = c / (1 + c / 10)."""
    c = torch.full((1, 2, 2), 5.0)
    pred = predict("paper", c, c, c, 1)
    torch.testing.assert_close(pred, c / 1.5)


def test_phase_mix_gives_early_blend_and_late_correction():
    r = linear_sequence()
    r1, r2, r3 = r(3), r(2), r(1)
    early = predict("rational", r1, r2, r3, 1, mix=(0.0, 0.9, 0.1))
    torch.testing.assert_close(early, 0.9 * r1 + 0.1 * r2)
    late = predict("rational", r1, r2, r3, 1, mix=(1.0, 0.3, -0.3))
    torch.testing.assert_close(late, r(4) + 0.3 * (r1 - r2), rtol=1e-5, atol=1e-5)


def test_rational_beats_taylor_on_a_saturating_sequence():
    """R(s) = A + B s / (1 + 0.3 s): a rational trajectory (residual growth that levels off)."""
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(1, 8, 8, generator=gen), torch.randn(1, 8, 8, generator=gen)
    r = lambda s: a + b * s / (1 + 0.3 * s)
    r1, r2, r3, truth = r(6), r(5), r(4), r(9)  # predict 3 steps ahead
    pade = predict("rational", r1, r2, r3, 3, c_max=0.5)
    d1, d1_prev = r1 - r2, r2 - r3
    taylor1 = r1 + 3 * d1
    taylor2 = taylor1 + (d1 - d1_prev) * 9 / 2
    err = lambda p: ((p - truth).norm() / truth.norm()).item()
    assert err(pade) < 1e-4
    assert err(pade) < err(taylor1) / 100 and err(pade) < err(taylor2) / 10


def test_rational_damping_is_clamped_so_no_pole_is_reached():
    """Wildly curving history: c is clamped to [0, c_max], so the prediction stays finite and bounded."""
    r1, r2, r3 = torch.tensor([[[1.0]]]), torch.tensor([[[0.999]]]), torch.tensor([[[-5.0]]])
    pred = predict("rational", r1, r2, r3, 4, c_max=0.5)
    assert torch.isfinite(pred).all() and pred.abs().max() < 10


def test_paper_and_reference_predictions_do_not_depend_on_the_offset():
    """They extrapolate over consecutive steps: their fit is the prediction (scale = damping = 0)."""
    r = linear_sequence()
    for variant in ("paper", "reference"):
        assert torch.equal(predict(variant, r(3), r(2), r(1), 1), predict(variant, r(3), r(2), r(1), 3))


def test_the_fit_magnitude_bounds_every_prediction_and_reads_nan_for_any_non_finite_element():
    """A million float16 elements of 1 and -0.5: [1, 0.5], far below float16's 65504 (a norm of the
    whole tensor would read 1000 and refuse such fits at large sizes). One NaN or Inf anywhere,
    not only first, turns both entries into NaN."""
    from tcpade_trt.cache.pade import fit_magnitude

    base = torch.ones(1, 1000, 1000, dtype=torch.float16)
    scale = torch.full_like(base, -0.5)
    assert fit_magnitude(base, scale).tolist() == [1.0, 0.5]
    for bad in (float("nan"), float("inf"), -float("inf")):
        poisoned = scale.clone()
        poisoned[0, 700, 7] = bad
        assert torch.isnan(fit_magnitude(base, poisoned)).all(), bad


def test_the_evaluation_returns_the_block_stacks_output():
    r = linear_sequence()
    x_in = torch.randn(2, 6, 8)
    base, scale, damping, _ = PadeFit("rational")(r(3), r(2), r(1), torch.tensor([-1.0, -2.0, 1, 0, 0, 10, 0.25]))
    x_out = PadeEval()(base, scale, damping, torch.tensor([2.0]), x_in)
    torch.testing.assert_close(x_out - x_in, r(5), rtol=1e-5, atol=1e-5)
