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
    assert full == [0, 1, 2, 6, 11, 16, 19]
    runs = 4  # predicted steps 3-5, 7-10, 12-15, 17-18
    assert policy.predictor.calls == {"fit": runs, "eval": len(predicted), "tsi": 0}


def test_with_the_gate_on_the_tsi_is_measured_once_per_fit():
    policy = counted_policy({"threshold": 0.5})
    run_policy(policy, linear_sequence())
    assert policy.predictor.calls["tsi"] == policy.predictor.calls["fit"] > 0
    assert policy.last_tsi.shape == (2,) and policy.last_tsi.max() < 0.5  # a straight line is stable


def test_the_phase_mix_changing_within_a_run_forces_a_refit():
    """phase_aware with late=0.65: 'late' is step > 13, so the run 12-15 changes phase after step 13."""
    policy = counted_policy({"phase_aware": True, "late": 0.65})
    _, predicted = run_policy(policy, linear_sequence())
    assert policy.predictor.calls["fit"] == 5 and len(predicted) == 13
    torch.testing.assert_close(predicted[13], linear_sequence()(13), rtol=1e-4, atol=1e-4)


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
    policy = counted_policy({"threshold": 0.5})
    transfers = count_host_transfers(monkeypatch)
    full, predicted = run_policy(policy, linear_sequence())
    assert len(predicted) == 13 and all(torch.isfinite(p).all() for p in predicted.values())
    assert transfers["n"] == policy.predictor.calls["fit"] == 4  # gate and guard share one transfer


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
    policy = counted_policy({"threshold": 0.5})
    fit = policy.predictor.inner.fit
    policy.predictor.inner.fit = lambda *args: tuple(torch.full_like(t, float("nan")) for t in fit(*args))
    full, predicted = run_policy(policy, linear_sequence())
    # every refused step computes, which changes the history, so the next step refits and refuses too
    assert full == list(range(20)) and predicted == {}
