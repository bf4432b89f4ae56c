"""Presets by name, the exact full-step lists at 20 steps, and the gate's monotonicity."""

import pytest
import torch

from tcpade_trt.cache import PRESETS, TCPadeConfig, TeaCacheConfig, cache_config, make_policy
from tcpade_trt.errors import ConfigError

from .helpers import linear_sequence, run_policy

SKELETON_FAST = [0, 1, 2, 6, 11, 16, 19]
EXPECTED_FULL_STEPS_ON_A_LINE = {
    "none": list(range(20)),
    "tcpade-slow": [0, 1, 2, 4, 7, 10, 13, 16, 19],
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


def test_an_explicit_schedule_scales_to_other_step_counts():
    config = cache_config("tcpade-fast")
    full, _ = run_policy(make_policy(config), linear_sequence(), num_steps=39)  # s -> round(s * 38 / 19) = 2s
    assert full == [0, 1, 2, 4, 12, 22, 32, 38]  # 3 (history needs a third residual) and the last step added
    assert [s for s in range(50) if config.is_anchor(s, 50)] == [0, 3, 5, 15, 28, 41, 49]


def test_every_preset_resolves_by_name_and_unknown_names_are_explained():
    assert set(PRESETS) == {"none", "tcpade-slow", "tcpade-fast", "reuse", "teacache", "taylorseer", "taylorseer-o2"}
    with pytest.raises(ConfigError, match="choose one of: none, tcpade-slow"):
        cache_config("tcpade-turbo")


def test_linear_futures_are_reproduced_by_taylorseer_and_tcpade():
    r = linear_sequence()
    for name in ("taylorseer", "tcpade-fast"):
        _, predictions = run_policy(make_policy(name), r)
        assert predictions
        for s, pred in predictions.items():
            torch.testing.assert_close(pred, r(s), rtol=1e-4, atol=1e-4)


def noisy_history(seed):
    """A drifting residual with noise: the TSI varies from step to step."""
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 8, 8, generator=gen), torch.randn(2, 8, 8, generator=gen)
    noise = [torch.randn(2, 8, 8, generator=gen) * (0.2 + 0.4 * (s % 3 == 0)) for s in range(20)]
    return lambda s: a + s * b + noise[s]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("variant", ["rational", "paper", "reference"])
def test_a_stricter_threshold_never_gives_fewer_full_steps(seed, variant):
    counts = []
    for theta in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]:
        policy = make_policy(TCPadeConfig(warmup=2, interval=5, threshold=theta, variant=variant))  # 7 by schedule
        full, _ = run_policy(policy, noisy_history(seed))
        counts.append(len(full))
    assert counts == sorted(counts, reverse=True), counts
    assert counts[0] > counts[-1] == 7


@pytest.mark.parametrize("bad,message", [
    (dict(threshold=1.3), r"threshold .* must be a finite number in \[0, 1\]"),
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
