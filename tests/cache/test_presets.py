"""Presets by name, their full steps at any step count, and the gate's monotonicity in the paper's scale."""

import pytest
import torch

from tcpade_trt.cache import PRESETS, TCPadeConfig, TeaCacheConfig, cache_config, make_policy
from tcpade_trt.errors import ConfigError

from .helpers import linear_sequence, run_policy

SKELETON_FAST = [0, 2, 5, 10, 14, 17, 19]  # budget 0.35: 7 of 20, dense at both ends
EXPECTED_FULL_STEPS_ON_A_LINE = {
    "none": list(range(20)),
    "tcpade-slow": [0, 1, 3, 6, 10, 13, 16, 18, 19],  # budget 0.45: 9 of 20
    "tcpade-fast": SKELETON_FAST,
    "reuse": SKELETON_FAST,
    "taylorseer": SKELETON_FAST,
    "taylorseer-o2": SKELETON_FAST,
}


@pytest.mark.parametrize("name", list(EXPECTED_FULL_STEPS_ON_A_LINE))
def test_full_step_list_at_20_steps(name):
    full, _ = run_policy(make_policy(name), linear_sequence())
    assert full == EXPECTED_FULL_STEPS_ON_A_LINE[name]


def test_teacache_full_steps_follow_the_accumulated_change():
    """Modulated input grows 25% per step: 0.25 accumulates to >= 0.6 every third step."""
    base = torch.rand(1, 4, 4) + 0.5
    policy = make_policy(TeaCacheConfig(threshold=0.6))  # (1.25**s: each step changes by exactly 0.25)
    full, _ = run_policy(policy, linear_sequence(shape=(1, 4, 4)), modulated_at=lambda s: base * 1.25**s)
    assert full == [0, 3, 6, 9, 12, 15, 18, 19]


@pytest.mark.parametrize("num_steps", [8, 20, 28, 30, 50])
def test_budget_presets_resolve_for_any_step_count_and_interval_methods_share_their_full_steps(num_steps):
    """round(0.35 T) full steps at every T, the same for TC-Padé and the baselines (like for like: before
    budgets, the 20-step list rescaled to 30 steps left step 1 to TC-Padé alone and a 13-step gap at 50)."""
    lists = {name: run_policy(make_policy(name), linear_sequence(), num_steps=num_steps)[0]
             for name in ("tcpade-fast", "reuse", "taylorseer", "taylorseer-o2")}
    fast = lists["tcpade-fast"]
    assert all(full == fast for full in lists.values()), lists
    assert len(fast) == int(0.35 * num_steps + 0.5) and fast[0] == 0 and fast[-1] == num_steps - 1
    assert max(b - a for a, b in zip(fast, fast[1:])) <= 2 * num_steps / len(fast)  # no long gaps
    slow, _ = run_policy(make_policy("tcpade-slow"), linear_sequence(), num_steps=num_steps)
    assert len(slow) == int(0.45 * num_steps + 0.5) < num_steps  # 8 steps: 4 full, not every step


def test_an_explicit_schedule_is_in_the_runs_own_steps():
    config = cache_config("tcpade-fast:full_steps=0/1/2/6/11/16")
    assert run_policy(make_policy(config), linear_sequence())[0] == [0, 1, 2, 6, 11, 16, 19]  # + the last step
    assert run_policy(make_policy(config), linear_sequence(), num_steps=30)[0] == [0, 1, 2, 6, 11, 16, 29]
    with pytest.raises(ConfigError, match="names step 16, but the run has 12 steps"):
        make_policy(config).reset(12)


def test_a_calibrated_table_replaces_the_formula_where_it_has_an_entry():
    table = ((20, 0.35, (0, 2, 4, 7, 12, 16, 19)),)
    policy = make_policy("tcpade-fast", calibrated=table)
    assert run_policy(policy, linear_sequence())[0] == [0, 2, 4, 7, 12, 16, 19]
    assert run_policy(policy, linear_sequence(), num_steps=28)[0] == [0, 1, 3, 7, 11, 16, 20, 24, 26, 27]
    slow = make_policy("tcpade-slow", calibrated=table)  # another budget: the formula
    assert run_policy(slow, linear_sequence())[0] == EXPECTED_FULL_STEPS_ON_A_LINE["tcpade-slow"]


def test_every_preset_resolves_by_name_and_unknown_names_are_explained():
    assert set(PRESETS) == {"none", "tcpade-slow", "tcpade-fast", "magcache", "reuse", "teacache", "taylorseer",
                            "taylorseer-o2"}
    with pytest.raises(ConfigError, match="choose one of: none, tcpade-slow"):
        cache_config("tcpade-turbo")


def test_linear_futures_are_reproduced_by_taylorseer_and_tcpade():
    """From the second full step on, both are exact on a line (before it, one residual: both reuse it)."""
    r = linear_sequence()
    for name in ("taylorseer", "tcpade-fast", "tcpade-fast:time=step"):
        _, predictions = run_policy(make_policy(name), r)
        assert set(predictions) == set(range(20)) - set(SKELETON_FAST)
        for s, pred in predictions.items():
            torch.testing.assert_close(pred, r(s) if s > SKELETON_FAST[1] else r(0), rtol=1e-4, atol=1e-4)


def noisy_history(seed):
    """A drifting residual with noise: the TSI varies from step to step."""
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 8, 8, generator=gen), torch.randn(2, 8, 8, generator=gen)
    noise = [torch.randn(2, 8, 8, generator=gen) * (0.2 + 0.4 * (s % 3 == 0)) for s in range(20)]
    return lambda s: a + s * b + noise[s]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("variant", ["rational", "paper", "reference"])
def test_a_larger_theta_never_gives_fewer_full_steps(seed, variant):
    """The paper's semantics: predict while TSI >= theta, so theta 0 is off and 0.7 < 1.0 < 1.3 get stricter."""
    counts = []
    for theta in [0.0, 0.2, 0.4, 0.7, 1.0, 1.3, 1.6, 1.8, 2.0]:
        policy = make_policy(TCPadeConfig(warmup=2, interval=5, threshold=theta, variant=variant))  # 7 by schedule
        full, _ = run_policy(policy, noisy_history(seed))
        counts.append(len(full))
    assert counts == sorted(counts), counts
    assert 7 == counts[0] < counts[-1]


@pytest.mark.parametrize("bad,message", [
    (dict(threshold=2.5), r"threshold .* must be a finite number in \[0, 2\]"),
    (dict(budget=1.5), r"budget .* must be a finite number in \[0, 1\]"),
    (dict(full_steps=(0, 3, 2)), "full_steps must be increasing"),
    (dict(time="sigma"), "time must be one of sampler, step"),
    (dict(variant="taylor"), "variant must be one of"),
    (dict(warmup=0), "warmup must be an integer >= 1"),
    (dict(interval=0), "interval must be an integer >= 1"),
    (dict(early=0.9, late=0.5), "early <= late"),
])
def test_bad_config_values_are_explained(bad, message):
    with pytest.raises(ConfigError, match=message):
        TCPadeConfig(**bad)


def test_teacache_computes_when_its_change_signal_is_not_finite():
    """A NaN change compares False with the threshold: it must mean 'compute', not 'reuse'."""
    from tcpade_trt.cache import StepContext

    policy = make_policy(TeaCacheConfig())
    policy.reset(20)
    signals = [torch.ones(1, 4, 8), torch.full((1, 4, 8), float("nan"))]
    for step, signal in enumerate(signals):
        ctx = StepContext(step=step, num_steps=20, x_in=torch.zeros(1, 4, 8), modulated_input=lambda s=signal: s)
        prediction = policy.predict(ctx)
        policy.update(ctx, torch.ones(1, 4, 8), computed=prediction is None)
    assert policy.decisions == [True, True]
