"""tail(blocks(head(x))) must equal each diffusers model's own forward, exactly as used in sampling."""

import pytest
import torch

from ..conftest import RESOLUTIONS, make_inputs

CASES = [(name, b, res) for name, resolutions in RESOLUTIONS.items() for b in (1, 2) for res in resolutions]


def timesteps(model, batch):
    """One timestep per sample, as the model's forward takes them (FLUX: sigma in [0, 1]; Wan, DiT: the
    scheduler's timestep in [0, 1000)), from the family's own scheduler."""
    family = model.family
    scheduler = family.make_scheduler(10, family.geometry(1, 8, 8, 1))
    return family.model_timestep(scheduler.timesteps[1:1 + batch], 1)[:, 0]


@pytest.mark.parametrize("name,batch,res", CASES, ids=lambda v: str(v))
def test_split_forward_equals_model_forward(models, name, batch, res):
    model = models[name]
    latents, cond = make_inputs(model, batch, *res)
    t = timesteps(model, batch)
    with torch.no_grad():
        expected = model.parts.forward_unsplit(latents, t, cond)
        got = model.parts.forward_split(latents, t, cond)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["tiny-wan", "tiny-dit"])
def test_split_equals_forward_on_a_cfg_batch(models, name):
    """cond and uncond rows in one batch, as the sampler runs classifier-free guidance."""
    model = models[name]
    latents, cond = make_inputs(model, 2, *RESOLUTIONS[name][1])
    uncond = model.family.uncond(cond)
    cfg_cond = {k: torch.cat([cond[k], uncond[k]]) for k in cond}
    x = torch.cat([latents, latents])
    t = timesteps(model, 4)
    with torch.no_grad():
        expected = model.parts.forward_unsplit(x, t, cfg_cond)
        got = model.parts.forward_split(x, t, cfg_cond)
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", list(RESOLUTIONS))
def test_residual_is_blocks_output_minus_blocks_input(models, name):
    """The cached quantity: image tokens only, same shape in and out of the block stack."""
    model = models[name]
    latents, cond = make_inputs(model, 2, *RESOLUTIONS[name][0])
    t = timesteps(model, 2)
    with torch.no_grad():
        step = model.parts.head(latents, t, model.parts.prepare(latents, cond))
        x_out = model.parts.blocks(step)
    x_in = step["hidden_states"]
    geometry = model.family.geometry(2, *RESOLUTIONS[name][0][:2], RESOLUTIONS[name][0][2])
    assert x_in.shape == x_out.shape == (2, geometry.tokens, x_in.shape[-1])
    assert not torch.equal(x_in, x_out)


def test_prompt_only_conditioning_is_prepared_once(models):
    """FLUX's context embedder runs in prepare(), never in head(): once per generation."""
    model = models["tiny-flux"]
    latents, cond = make_inputs(model, 1, 8, 8)
    calls = []
    handle = model.transformer.context_embedder.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            prepared = model.parts.prepare(latents, cond)
            for t in (0.9, 0.5, 0.1):
                model.parts.head(latents, torch.tensor([t]), prepared)
    finally:
        handle.remove()
    assert len(calls) == 1
