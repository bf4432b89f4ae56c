"""MagCache, a method added as one file (tcpade_trt/cache/methods/magcache.py): found by the registry, parsed from
a spec, batched by the server only where its decisions do not depend on the batch."""

import math

import pytest
import torch

from tcpade_trt.cache import PRESETS, cache_config, compared_presets, decides_per_batch, make_policy
from tcpade_trt.errors import ConfigError

from .helpers import run_policy


def diffusers_decisions(ratios, num_steps, threshold, max_skip, retention):
    """diffusers' rule (hooks/mag_cache.py, MagCacheHeadHook.new_forward), written out: True = compute."""
    ratio, error, skipped, out = 1.0, 0.0, 0, []
    for step in range(num_steps):
        compute = True
        if step >= int(retention * num_steps + 0.5):
            ratio *= ratios[step]
            skipped += 1
            error += abs(1.0 - ratio)
            if step > 0 and error <= threshold and skipped <= max_skip:
                compute = False
            else:
                ratio, error, skipped = 1.0, 0.0, 0
        out.append(compute)
    return out


def test_with_calibrated_ratios_it_decides_as_diffusers_magcache():
    ratios = [1.0, 1.21, 1.12, 1.08, 1.06, 1.04, 1.03, 1.04, 1.02, 1.03, 1.02, 0.98, 1.02, 1.01, 1.0, 1.01, 1.0,
              0.99, 0.98, 0.93]
    spec = "magcache:threshold=0.06,mag_ratios=" + "/".join(map(str, ratios))
    policy = make_policy(spec)
    full, _ = run_policy(policy, lambda s: torch.full((1, 4, 8), 1.0 + s))
    expected = diffusers_decisions(ratios, 20, 0.06, 3, 0.2)
    expected[-1] = True  # the last step always computes here
    assert policy.decisions == expected
    assert 0 < len(full) < 20


def test_a_predicted_step_reuses_the_last_computed_residual():
    policy = make_policy("magcache:threshold=10")  # every step it may skip, it does (at most 3 in a row)
    full, predictions = run_policy(policy, lambda s: torch.full((2, 4, 8), 1.0 + s))
    assert full[:4] == [0, 1, 2, 3] and full[-1] == 19  # retention 0.2 of 20, and the last
    for step, residual in predictions.items():
        last_full = max(f for f in full if f < step)
        assert torch.equal(residual, torch.full((2, 4, 8), 1.0 + last_full))
        assert step - last_full <= 3


def test_measured_ratios_follow_the_residuals_magnitude():
    """Without calibrated ratios the ratio per step is measured between the last two computed residuals: a residual
    that keeps its size is skipped as far as max_skip allows, one that grows fast is computed every step."""
    steady, _ = run_policy(make_policy("magcache"), lambda s: torch.ones(1, 4, 8))
    growing, _ = run_policy(make_policy("magcache"), lambda s: torch.ones(1, 4, 8) * 2.0 ** s)
    assert len(steady) < len(growing) == 20


def test_a_non_finite_ratio_computes():
    """A NaN residual at step 3 makes the ratios measured at steps 4 and 5 NaN: both compute, and no prediction
    carries the NaN."""
    residual = lambda s: torch.full((1, 4, 8), math.nan if s == 3 else 1.0)
    full, predictions = run_policy(make_policy("magcache:threshold=10"), residual)
    assert {4, 5} <= set(full) and len(full) < 20
    assert all(torch.isfinite(p).all() for p in predictions.values())


def test_it_is_a_preset_compared_everywhere_and_its_knobs_are_checked():
    assert "magcache" in PRESETS and "magcache" in compared_presets(peers_only=True)
    assert cache_config("magcache:mag_ratios=1/1.1/0.9").mag_ratios == (1.0, 1.1, 0.9)
    for bad, message in [("magcache:max_skip=0", "max_skip must be a whole number >= 1"),
                         ("magcache:retention=2", r"retention .* must be a finite number in \[0, 1\]"),
                         ("magcache:mag_ratios=1/-1", "mag_ratios must be positive finite numbers")]:
        with pytest.raises(ConfigError, match=message):
            cache_config(bad)


def test_the_server_batches_it_only_with_calibrated_ratios():
    assert decides_per_batch("magcache")  # measured on the batch: each request alone
    assert not decides_per_batch("magcache:mag_ratios=1/1/1")


def test_configs_built_from_lists_are_hashable_batch_keys():
    """The server batches requests by their config: sequences given as lists become tuples."""
    from tcpade_trt.cache.methods.magcache import MagCacheConfig
    from tcpade_trt.cache.methods.tcpade import TCPadeConfig
    from tcpade_trt.cache.methods.teacache import TeaCacheConfig

    for config in (MagCacheConfig(mag_ratios=[1.0, 1.1]), TCPadeConfig(full_steps=[0, 5, 19]),
                   TeaCacheConfig(coefficients=[1.0, 0.0])):
        assert hash(config) == hash(type(config)(**vars(config)))
    with pytest.raises(ConfigError, match="mag_ratios must be positive finite numbers"):
        MagCacheConfig(mag_ratios=(True, 1.0))


def test_calibrated_ratios_are_interpolated_as_diffusers_does():
    """diffusers' nearest_interp rounds a float32 grid half to even: 8 ratios over 47 steps take ratio 3 at step 23
    (Python's float64 rounding would take 4)."""
    torch_interp = pytest.importorskip("diffusers.hooks.mag_cache").nearest_interp
    from tcpade_trt.cache.methods.magcache import MagCacheConfig

    ratios = tuple(float(r) for r in range(1, 9))
    for steps in (20, 28, 47, 50):
        expected = torch_interp(torch.tensor(ratios), steps).tolist()
        assert MagCacheConfig(mag_ratios=ratios).ratios_for(steps) == expected
