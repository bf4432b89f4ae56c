"""The sampler's precomputed Euler update gives exactly the latents diffusers' scheduler.step gives."""

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from tcpade_trt.runtime.scheduler_update import scheduler_update


def run(scheduler, update=None, steps=12, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 16, 8, generator=gen).to(dtype)
    for i, t in enumerate(scheduler.timesteps):
        prediction = torch.randn(2, 16, 8, generator=gen).to(dtype)
        latents = (update(i, prediction, t, latents) if update
                   else scheduler.step(prediction, t, latents, return_dict=False)[0])
    return latents


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_the_flow_matching_euler_update_is_bit_identical_to_the_scheduler(dtype, shift):
    make = lambda: FlowMatchEulerDiscreteScheduler(shift=shift)
    reference, fast = make(), make()
    for s in (reference, fast):
        s.set_timesteps(12)
    assert torch.equal(run(fast, scheduler_update(fast), dtype=dtype), run(reference, dtype=dtype))


def test_other_schedulers_keep_their_own_step():
    reference, wrapped = DDIMScheduler(), DDIMScheduler()
    for s in (reference, wrapped):
        s.set_timesteps(12)
    assert torch.equal(run(wrapped, scheduler_update(wrapped)), run(reference))
    stochastic = FlowMatchEulerDiscreteScheduler(stochastic_sampling=True)  # draws noise: not precomputable
    stochastic.set_timesteps(4)
    calls = []
    stochastic.step = lambda *args, **kwargs: calls.append(args) or (args[2],)
    run(stochastic, scheduler_update(stochastic), steps=4)
    assert len(calls) == 4


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-wan", "tiny-dit"])
def test_all_model_timesteps_at_once_equal_one_at_a_time(models, name):
    """The sampler maps every scheduler timestep before its loop ([T, batch] in one op)."""
    model = models[name]
    scheduler = model.family.make_scheduler(12, model.family.geometry(2, 8, 8))
    at_once = model.family.model_timestep(scheduler.timesteps, 3)
    assert at_once.shape == (12, 3)
    for i, t in enumerate(scheduler.timesteps):
        assert torch.equal(at_once[i], model.family.model_timestep(t, 3))
