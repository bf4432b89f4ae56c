"""The reference sampler over head/blocks/tail reproduces a loop over the unsplit model."""

import pytest
import torch

from tcpade_trt.cache import AlwaysCompute
from tcpade_trt.errors import ConfigError
from tcpade_trt.runtime.sampler import initial_noise, sample

from ..conftest import make_inputs

CASES = [("tiny-flux", (8, 8, 1), None), ("tiny-wan", (8, 8, 3), 5.0), ("tiny-dit", (8, 8, 1), 4.0),
         ("tiny-wan", (8, 8, 1), None), ("tiny-dit", (16, 16, 1), None)]


@pytest.mark.parametrize("name,res,guidance", CASES, ids=str)
def test_split_sampler_matches_unsplit_sampler(models, name, res, guidance):
    model = models[name]
    _, cond = make_inputs(model, 2, *res)
    noise = initial_noise(model, model.family.geometry(2, *res[:2], res[2]).shape, seed=[3, 4])
    split = sample(model, cond, noise, num_steps=6, guidance_scale=guidance, policy=AlwaysCompute())
    ref = sample(model, cond, noise, num_steps=6, guidance_scale=guidance, unsplit=True)
    rel = ((split.latents - ref.latents).norm() / ref.latents.norm()).item()
    assert rel <= 1e-5
    assert split.full_steps == 6 and split.predicted_steps == 0
    assert torch.isfinite(split.latents).all()


def test_a_sample_is_the_same_alone_or_in_a_batch(models):
    model = models["tiny-dit"]
    _, cond = make_inputs(model, 2, 8, 8)
    both = sample(model, cond, initial_noise(model, (2, 4, 8, 8), seed=[7, 8]), num_steps=4)
    alone = sample(model, {"class_labels": cond["class_labels"][1:]},
                   initial_noise(model, (1, 4, 8, 8), seed=[8]), num_steps=4)
    torch.testing.assert_close(both.latents[1:], alone.latents, rtol=1e-4, atol=1e-5)


def test_flux_rejects_classifier_free_guidance_with_a_sentence(models):
    model = models["tiny-flux"]
    latents, cond = make_inputs(model, 1, 8, 8)
    with pytest.raises(ConfigError, match="guidance-distilled"):
        sample(model, cond, latents, num_steps=2, guidance_scale=3.0)


def test_wrong_number_of_seeds_is_explained(models):
    with pytest.raises(ConfigError, match="one seed per sample"):
        initial_noise(models["tiny-dit"], (2, 4, 8, 8), seed=[1])


def test_how_a_batch_decides_each_sample_gets_at_least_what_it_gets_alone():
    """The TSI gate predicts a step only if every sample in the batch is stable (max over samples),
    so here the batch predicts no step that one of its samples computes alone. With the gate off
    (the presets), decisions are the schedule's and a sample's prediction is exactly what it would
    be alone: all Padé math is per element."""
    from tcpade_trt.cache import TCPadeConfig, cache_config, make_policy
    from tcpade_trt.models import tiny_model

    model = tiny_model("tiny-dit")
    _, cond = make_inputs(model, 3, 8, 8)
    noise = initial_noise(model, (3, 4, 8, 8), seed=[0, 1, 2])
    alone = lambda i, config: sample(model, {"class_labels": cond["class_labels"][i:i + 1]}, noise[i:i + 1],
                                     num_steps=20, policy=make_policy(config))
    fast = cache_config("tcpade-fast")
    batch = sample(model, cond, noise, num_steps=20, policy=make_policy(fast))
    for i in range(3):
        torch.testing.assert_close(batch.latents[i:i + 1], alone(i, fast).latents, rtol=1e-4, atol=1e-5)
    gated = TCPadeConfig(warmup=2, interval=6, threshold=0.5)
    batch = sample(model, cond, noise, num_steps=20, policy=make_policy(gated))
    singles = [alone(i, gated) for i in range(3)]
    for s, decided in enumerate(batch.decisions):
        assert decided or not any(single.decisions[s] for single in singles)
