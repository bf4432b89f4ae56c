"""What a TC-Padé predicted step costs: the fit runs once per run of predicted steps, the TSI only
when the gate is on."""

import torch

from tcpade_trt.cache import cache_config, make_policy

from .helpers import linear_sequence, run_policy


class CountingPredictor:
    """Wraps the eager predictor and counts its calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, {"fit": 0, "eval": 0, "tsi": 0}

    def __getattr__(self, name):
        def counted(*args):
            self.calls[name] += 1
            return getattr(self.inner, name)(*args)
        return counted


def counted_policy(spec):
    """tcpade-fast with ``spec``, its Padé math counted (as the runtime hands it the engines' math)."""
    from tcpade_trt.cache.pade import PadePredictor

    return make_policy(cache_config("tcpade-fast").with_(**spec),
                       pade=lambda variant: CountingPredictor(PadePredictor(variant)))


def test_the_fit_runs_once_per_run_of_predicted_steps_and_the_tsi_not_at_all_with_the_gate_off():
    policy = counted_policy({})
    full, predicted = run_policy(policy, linear_sequence())
    assert full == [0, 2, 5, 10, 14, 17, 19]
    runs = 6  # predicted steps 1 (one residual: reuse), 3-4 (two: a line), 6-9, 11-13, 15-16, 18
    assert policy.predictor.calls == {"fit": runs, "eval": len(predicted), "tsi": 0}


def test_with_the_gate_on_the_tsi_is_measured_once_per_fit():
    policy = counted_policy({"threshold": 0.7})
    full, _ = run_policy(policy, linear_sequence())
    assert full == [0, 1, 2, 5, 10, 14, 17, 19]  # step 1 computes: the gate needs three residuals to judge
    assert policy.predictor.calls["tsi"] == policy.predictor.calls["fit"] == 5
    assert policy.last_tsi.shape == (2,) and policy.last_tsi.min() > 1.99  # a straight line: TSI 2, stable


def test_the_phase_mix_changing_within_a_run_forces_a_refit():
    """phase_aware with late=0.6: 'late' is step > 12, so the run 11-13 changes phase after step 12."""
    policy = counted_policy({"phase_aware": True, "late": 0.6})
    _, predicted = run_policy(policy, linear_sequence())
    assert policy.predictor.calls["fit"] == 7 and len(predicted) == 13
    r = linear_sequence()
    torch.testing.assert_close(predicted[12], r(12), rtol=1e-4, atol=1e-4)  # middle: the line itself


def test_the_late_correction_is_one_steps_change_however_far_apart_the_residuals_are():
    """Late phase: core + beta (r1 - r2) / d. With r1, r2 at steps 10 and 5 (d = 5) on a line of slope b the
    correction is beta * b, as the reference applies to consecutive steps (not 5 beta b)."""
    policy = counted_policy({"phase_aware": True, "late": 0.6})
    _, predicted = run_policy(policy, linear_sequence())
    r = linear_sequence()
    torch.testing.assert_close(predicted[13], r(13) + 0.3 * (r(1) - r(0)), rtol=1e-4, atol=1e-4)


def test_the_damping_bound_scales_with_the_span_of_the_history():
    """History at steps 2, 6, 11 (span 9), a residual that saturates hard: the clamp keeps c <= c_max / span,
    so the pole -1/c stays two spans before the newest residual, outside the history."""
    values = {2: -5.0, 6: 0.999, 11: 1.0}
    policy = make_policy(cache_config("tcpade-fast").with_(full_steps=(0, 2, 6, 11), time="step"))
    full, _ = run_policy(policy, lambda s: torch.full((1, 2, 2), values.get(s, 0.0)), num_steps=14)
    assert full == [0, 2, 6, 11, 13] and policy._fit_key[0] == (2, 6, 11)  # step 12 was fitted on 2, 6, 11
    *_, damping, _ = policy._fit
    assert 0 < damping.max() <= 0.5 / 9 + 1e-7  # the clamp is reached (unclamped c would exceed 1 / 9)


def test_the_fit_runs_in_the_samplers_time():
    """A residual linear in the sampler's time (whose steps grow late in a run, as sigma's do) is predicted
    exactly in that time, and not in the step index."""
    from tcpade_trt.cache import StepContext

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 4, 4, generator=gen), torch.randn(1, 4, 4, generator=gen)
    time_at = lambda s: float(s * s)
    errors = {}
    for axis in ("sampler", "step"):
        policy = make_policy(cache_config("tcpade-fast").with_(time=axis))
        policy.reset(20)
        worst = 0.0
        for s in range(20):
            ctx = StepContext(step=s, num_steps=20, x_in=torch.zeros(1, 4, 4), time=time_at(s))
            prediction = policy.predict(ctx)
            truth = a + b * time_at(s)
            if prediction is not None and s > 5:
                worst = max(worst, float((prediction.x_out - truth).abs().max() / truth.abs().max()))
            policy.update(ctx, truth if prediction is None else None, computed=prediction is None)
        errors[axis] = worst
    assert errors["sampler"] < 1e-5 < 0.05 < errors["step"], errors


def count_host_transfers(monkeypatch):
    """Counts tensor -> Python scalar transfers (.item() and .tolist()), the host syncs of a GPU run."""
    calls = {"n": 0}
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original):
            calls["n"] += 1
            return _original(self, *args)
        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def test_the_non_finite_guard_runs_once_per_fit_and_covers_that_fits_predictions(monkeypatch):
    """Every prediction comes out of the policy already checked (the loop has no check of its own), and
    the only host transfers are one per fit: predicted steps that reuse a fit cross nothing to the host."""
    policy = counted_policy({"threshold": 0.7})
    transfers = count_host_transfers(monkeypatch)
    full, predicted = run_policy(policy, linear_sequence())
    assert len(predicted) == 12 and all(torch.isfinite(p).all() for p in predicted.values())
    assert transfers["n"] == policy.predictor.calls["fit"] == 5  # gate and guard share one transfer


def test_a_fit_that_could_predict_non_finite_values_is_refused():
    """The guard bounds every evaluation of a fit: a NaN, an Inf or an overflowing scale refuses it."""
    for bad in (float("nan"), float("inf"), 1e38):
        policy = counted_policy({})
        fit = policy.predictor.inner.fit

        def poisoned(*args, _fit=fit, _bad=bad):
            from tcpade_trt.cache.pade import fit_magnitude

            base, scale, damping, _ = _fit(*args)
            scale = scale.clone().fill_(_bad)
            return base, scale, damping, fit_magnitude(base, scale)
        policy.predictor.inner.fit = poisoned
        full, predicted = run_policy(policy, linear_sequence())
        assert predicted == {} and policy.predictor.calls["eval"] == 0, bad


def test_with_the_gate_on_a_non_finite_fit_is_refused_by_the_policy_itself():
    policy = counted_policy({"threshold": 0.7})
    fit = policy.predictor.inner.fit
    policy.predictor.inner.fit = lambda *args: tuple(torch.full_like(t, float("nan")) for t in fit(*args))
    full, predicted = run_policy(policy, linear_sequence())
    # every refused step computes, which changes the history, so the next step refits and refuses too
    assert full == list(range(20)) and predicted == {}


def test_residuals_that_share_a_time_fall_back_to_the_step_index():
    """Heun-type schedulers call the model twice per timestep: with two residuals at one time, the sampler's
    time cannot order them, so the fit runs in steps (finite, and exact on a line in the step index)."""
    from tcpade_trt.cache import StepContext

    r = linear_sequence()
    policy = make_policy(cache_config("tcpade-fast").with_(full_steps=(0, 1, 2, 3), budget=0.0))
    policy.reset(8)
    for s in range(8):
        ctx = StepContext(step=s, num_steps=8, x_in=torch.zeros(2, 6, 8), time=float(s // 2))  # 0, 0, 1, 1, ...
        prediction = policy.predict(ctx)
        if prediction is not None:
            torch.testing.assert_close(prediction.x_out, r(s), rtol=1e-4, atol=1e-4)
        policy.update(ctx, r(s) if prediction is None else None, computed=prediction is None)
    assert policy.decisions == [True, True, True, True, False, False, False, True]
