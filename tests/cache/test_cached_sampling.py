"""Every preset through the reference sampler, and the non-finite guard."""

import pytest
import torch

from tcpade_trt.cache import PRESETS, AlwaysCompute, make_policy
from tcpade_trt.runtime.sampler import initial_noise, sample

from ..conftest import make_inputs

FAMILIES = [("tiny-flux", (8, 8, 1), None), ("tiny-wan", (8, 8, 3), 5.0), ("tiny-dit", (8, 8, 1), 4.0)]


@pytest.mark.parametrize("name,res,guidance", FAMILIES, ids=lambda v: str(v))
def test_every_preset_samples_every_family(models, name, res, guidance):
    model = models[name]
    _, cond = make_inputs(model, 2, *res)
    noise = initial_noise(model, model.family.geometry(2, *res[:2], res[2]).shape, seed=[0, 1])
    ref = sample(model, cond, noise, num_steps=20, guidance_scale=guidance)
    for preset in PRESETS:
        out = sample(model, cond, noise, num_steps=20, guidance_scale=guidance,
                     policy=make_policy(preset))
        assert torch.isfinite(out.latents).all(), preset
        assert out.full_steps + out.predicted_steps == 20
        rel = ((out.latents - ref.latents).norm() / ref.latents.norm()).item()
        if preset == "none":
            assert rel == 0.0 and out.full_steps == 20
        else:  # random tiny models have unstable trajectories: tcpade-slow's TSI gate may refuse all
            assert rel < 0.2, (preset, rel)
            assert out.predicted_steps > 0 or preset == "tcpade-slow", preset


class PredictsNaN(AlwaysCompute):
    """A broken predictor: asks to skip every step after the first but predicts NaN."""

    def decide(self, ctx):
        return None if ctx.step == 0 else torch.full_like(ctx.x_in, float("nan"))


def test_a_non_finite_prediction_becomes_a_full_step(models):
    model = models["tiny-dit"]
    _, cond = make_inputs(model, 1, 8, 8)
    noise = initial_noise(model, (1, 4, 8, 8), seed=0)
    guarded = sample(model, cond, noise, num_steps=6, policy=PredictsNaN())
    ref = sample(model, cond, noise, num_steps=6)
    assert guarded.decisions == [True] * 6
    assert torch.equal(guarded.latents, ref.latents)
