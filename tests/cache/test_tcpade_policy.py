"""What a TC-Padé predicted step costs: the fit runs once per run of predicted steps, the TSI only
when the gate is on."""

import torch

from tcpade_trt.cache import CacheConfig
from tcpade_trt.cache.policy import StepContext

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
    policy = CacheConfig.preset("tcpade-fast").with_(**spec).make_policy()
    policy.predictor = CountingPredictor(policy.predictor)
    return policy


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


def test_with_the_gate_on_a_refitting_step_checks_its_prediction_in_the_gates_transfer():
    """Steps that fit report their prediction as checked (the loop then skips its own non-finite
    check): one host transfer carries the gate and the guard."""
    policy = counted_policy({"threshold": 0.5})
    r = linear_sequence()
    policy.reset(20)
    checked = {}
    for s in range(20):
        ctx = StepContext(step=s, num_steps=20, x_in=torch.zeros_like(r(0)))
        pred = policy.decide(ctx)
        if pred is not None:
            checked[s] = policy.prediction_checked
        policy.observe(ctx, r(s) if pred is None else pred, computed=pred is None)
    assert [s for s, c in checked.items() if c] == [3, 7, 12, 17]  # the first step of each run fits
    assert sum(checked.values()) == policy.predictor.calls["fit"]


def test_with_the_gate_on_a_non_finite_prediction_is_refused_by_the_policy_itself():
    policy = counted_policy({"threshold": 0.5})
    policy.predictor.inner.eval = lambda base, scale, damping, k: torch.full_like(base, float("nan"))
    full, predicted = run_policy(policy, linear_sequence())
    # every refused step computes, which changes the history, so the next step refits and refuses too
    assert full == list(range(20)) and predicted == {}
