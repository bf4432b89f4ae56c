"""apply_cache on unmodified diffusers transformers: hand-written loops and real pipelines."""

import pytest
import torch
from diffusers import AutoencoderKL, DiTPipeline, FluxPipeline, WanPipeline

from tcpade_trt.cache import CacheConfig, apply_cache
from tcpade_trt.errors import ConfigError
from tcpade_trt.models import tiny_model
from tcpade_trt.runtime.sampler import initial_noise, sample

from ..conftest import make_inputs

FAST_FULL = [0, 1, 2, 7, 12, 17, 19]


@pytest.mark.parametrize("name,res,guidance", [("tiny-flux", (8, 8, 1), None), ("tiny-dit", (8, 8, 1), 4.0)])
def test_hook_in_a_hand_written_loop_matches_the_split_sampler(name, res, guidance):
    """The unsplit loop calls transformer(...) each step; hooked, it must equal the cached split path."""
    model = tiny_model(name)
    _, cond = make_inputs(model, 2, *res)
    noise = initial_noise(model, model.geometry(2, *res[:2]).shape, seed=[5, 6])
    config = CacheConfig.preset("tcpade-fast")
    split = sample(model, cond, noise, num_steps=20, guidance_scale=guidance, policy=config.make_policy())
    handle = apply_cache(model.transformer, config, num_steps=20)
    try:
        hooked = sample(model, cond, noise, num_steps=20, guidance_scale=guidance, unsplit=True)
    finally:
        handle.remove()
    assert handle.stats()["full"] == 7 and handle.stats()["predicted"] == 13
    assert handle.stats()["decisions"] == split.decisions
    torch.testing.assert_close(hooked.latents, split.latents, rtol=1e-5, atol=1e-6)


def test_remove_restores_bit_identical_outputs():
    model = tiny_model("tiny-wan")
    latents, cond = make_inputs(model, 1, 8, 8, 3)
    t = torch.tensor([500.0])
    before = model.forward_unsplit(latents, t, cond)
    handle = apply_cache(model.transformer, "reuse", num_steps=20)
    assert "forward" in vars(model.transformer)
    handle.remove()
    assert "forward" not in vars(model.transformer)
    assert torch.equal(model.forward_unsplit(latents, t, cond), before)


def test_trajectory_restarts_when_the_timestep_goes_back_up():
    model = tiny_model("tiny-dit")
    _, cond = make_inputs(model, 1, 8, 8)
    noise = initial_noise(model, (1, 4, 8, 8), seed=0)
    handle = apply_cache(model.transformer, "tcpade-fast", num_steps=20)
    try:
        sample(model, cond, noise, num_steps=10, unsplit=True)  # a shorter run than announced
        sample(model, cond, noise, num_steps=10, unsplit=True)  # timestep jumps back up: restart
        first = handle.stats()
        assert first["full"] + first["predicted"] == 10
        handle.reset()
    finally:
        handle.remove()


def test_bad_arguments_are_explained():
    model = tiny_model("tiny-dit")
    with pytest.raises(ConfigError, match="num_steps must be a positive integer"):
        apply_cache(model.transformer, "reuse", num_steps=0)
    handle = apply_cache(model.transformer, "reuse", num_steps=20)
    with pytest.raises(ConfigError, match="already has a cache"):
        apply_cache(model.transformer, "reuse", num_steps=20)
    handle.remove()


def run_twice(pipe, call, preset):
    """(uncached output, cached output, stats, output after remove())."""
    plain = call()
    handle = apply_cache(pipe.transformer, preset, num_steps=20)
    cached = call()
    stats = handle.stats()
    handle.remove()
    return plain, cached, stats, call()


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_inside_an_unmodified_flux_pipeline():
    transformer = tiny_model("tiny-flux").transformer
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    pipe = FluxPipeline(scheduler=scheduler, vae=None, text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=transformer)
    gen = torch.Generator().manual_seed(0)
    embeds, pooled = torch.randn(1, 8, 32, generator=gen), torch.randn(1, 24, generator=gen)
    call = lambda: pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, height=64, width=64,
                        num_inference_steps=20, guidance_scale=3.5, output_type="latent",
                        generator=torch.Generator().manual_seed(1)).images
    plain, cached, stats, after = run_twice(pipe, call, "tcpade-fast")
    assert [s for s, f in enumerate(stats["decisions"]) if f] == FAST_FULL
    assert rel(cached, plain) < 0.1
    assert torch.equal(after, plain)


def test_inside_an_unmodified_wan_pipeline_with_separate_cfg_branches():
    from diffusers import FlowMatchEulerDiscreteScheduler

    transformer = tiny_model("tiny-wan").transformer
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    gen = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(1, 8, 32, generator=gen), torch.randn(1, 8, 32, generator=gen)
    call = lambda: pipe(prompt_embeds=pos, negative_prompt_embeds=neg, height=16, width=16, num_frames=5,
                        num_inference_steps=20, guidance_scale=5.0, output_type="latent",
                        generator=torch.Generator().manual_seed(1)).frames
    plain, cached, stats, after = run_twice(pipe, call, "tcpade-fast")
    assert len(stats["branches"]) == 2  # cond and uncond kept separate state
    for branch in stats["branches"]:
        assert [s for s, f in enumerate(branch["decisions"]) if f] == FAST_FULL
    assert rel(cached, plain) < 0.1
    assert torch.equal(after, plain)


def test_inside_an_unmodified_dit_pipeline():
    from diffusers import DDIMScheduler

    transformer = tiny_model("tiny-dit").transformer
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                        norm_num_groups=4, layers_per_block=1)
    pipe = DiTPipeline(transformer=transformer, vae=vae.eval(),
                       scheduler=DDIMScheduler(beta_schedule="linear", clip_sample=False))
    call = lambda: pipe(class_labels=[1, 3], guidance_scale=4.0, num_inference_steps=20, output_type="np",
                        generator=torch.Generator().manual_seed(1)).images
    plain, cached, stats, after = run_twice(pipe, call, "taylorseer")
    assert stats["full"] == 7 and stats["predicted"] == 13
    plain, cached, after = (torch.as_tensor(x) for x in (plain, cached, after))
    assert rel(cached, plain) < 0.1
    assert torch.equal(after, plain)
