"""Serving text-conditioned folders: prompts through a local pipeline folder's text encoders, batched per sample."""

import io

import pytest
import torch
from PIL import Image

from tcpade_trt.errors import ConfigError
from tcpade_trt.serve.request import GenerateRequest, RequestError
from tcpade_trt.serve.worker import Generator

pytest.importorskip("transformers")


def request(prompt, seed, negative="", guidance=None, steps=6):
    return GenerateRequest(None, seed, steps, "tcpade-fast", guidance, "png", prompt, negative)


@pytest.fixture(scope="module")
def flux(fp32_folders, flux_pipeline_folder):
    return Generator(fp32_folders["tiny-flux"], device="cpu", pipeline=flux_pipeline_folder)


@pytest.fixture(scope="module")
def wan(fp32_folders, wan_pipeline_folder):
    return Generator(fp32_folders["tiny-wan"], device="cpu", pipeline=wan_pipeline_folder)


def spy_latents(generator, monkeypatch):
    """The final latents of every generation the generator runs, in order."""
    seen = []
    original = generator.runtime.generate

    def spy(cond, noise, **kwargs):
        result = original(cond, noise, **kwargs)
        seen.append(result.latents)
        return result

    monkeypatch.setattr(generator.runtime, "generate", spy)
    return seen


def test_requests_with_different_prompts_share_a_generation_and_get_their_own_images(flux, monkeypatch):
    requests = [request("a red rocket", 1), request("a cat", 2), request("a red rocket", 3, guidance=5.0)]
    seen = spy_latents(flux, monkeypatch)
    together = flux.generate(requests)
    assert len(seen) == 2  # the first two share one generation; another guidance is another group
    batched = torch.cat(seen)
    seen.clear()
    alone = [flux.generate([r])[0] for r in requests]
    torch.testing.assert_close(batched, torch.cat(seen), rtol=1e-4, atol=1e-5)
    assert [r.batch for r in together] == [2, 2, 1]
    images = [Image.open(io.BytesIO(r.image)) for r in alone]
    assert all(r.media_type == "image/png" for r in together) and images[0].size == (16, 16)
    assert list(images[0].getdata()) != list(images[1].getdata())  # the prompt shapes the image


def test_embedded_guidance_is_accepted_and_changes_the_image(flux, monkeypatch):
    flux.check(request("a cat", 1, guidance=5.0))  # FLUX.1-dev: guidance is a model input, accepted
    low, high = (flux.generate([request("a cat", 1, guidance=g)])[0] for g in (1.0, 9.0))
    assert low.image != high.image
    monkeypatch.setattr(type(flux.family), "embedded_guidance", property(lambda self: False))  # FLUX.1-schnell
    with pytest.raises(RequestError, match="takes no guidance_scale"):
        flux.check(request("a cat", 1, guidance=5.0))


def test_a_video_model_answers_an_animated_gif_and_its_negative_prompt_counts(wan):
    plain, negative = wan.generate([request("a dog", 3), request("a dog", 3, negative="rain")])
    gif = Image.open(io.BytesIO(plain.image))
    assert plain.media_type == "image/gif" and gif.n_frames == 3 and gif.size == (16, 16)
    assert plain.image != negative.image
    assert wan.rows(request("a dog", 3)) == 2  # classifier-free guidance: two rows per request, always


def test_step_level_batching_with_negative_prompts_matches_the_request_alone(wan):
    r = request("a dog", 3, negative="rain", steps=5)
    alone = wan.generate([r])[0]
    stepwise = wan.stepwise_result(r, wan.submit_stepwise(r).result(timeout=120))
    assert stepwise.full_steps == alone.full_steps and stepwise.media_type == "image/gif"
    frames = lambda data: [list(f.convert("RGB").getdata()) for f in _frames(Image.open(io.BytesIO(data)))]
    first, second = frames(alone.image), frames(stepwise.image)
    assert max(abs(a - b) for fa, fb in zip(first, second) for pa, pb in zip(fa, fb) for a, b in zip(pa, pb)) <= 1


def _frames(gif):
    for i in range(gif.n_frames):
        gif.seek(i)
        yield gif.copy()


def test_a_text_folder_needs_a_pipeline_and_a_dit_folder_takes_its_vae(fp32_folders, flux_pipeline_folder):
    with pytest.raises(ConfigError, match="conditioned by text: serve it with --pipeline DIR"):
        Generator(fp32_folders["tiny-flux"], device="cpu")

    request = GenerateRequest(3, 1, 4, "tcpade-fast", None, "png")  # no guidance asked: DiT's 4.0, as `generate`
    previewed = Generator(fp32_folders["tiny-dit"], device="cpu")
    decoded = Generator(fp32_folders["tiny-dit"], device="cpu", pipeline=flux_pipeline_folder)  # a 4-channel VAE
    assert previewed.rows(request) == decoded.rows(request) == 2
    preview, image = (Image.open(io.BytesIO(g.generate([request])[0].image)) for g in (previewed, decoded))
    assert image.size == (2 * preview.size[0], 2 * preview.size[1])  # the tiny VAE's 2x: pixels, not latents


def test_a_prompt_that_comes_again_skips_the_text_encoders_and_gives_the_same_image(flux, monkeypatch):
    calls = []
    original = flux.family.encode_prompt
    monkeypatch.setattr(flux.family, "encode_prompt", lambda *a, **k: calls.append(a[1]) or original(*a, **k))
    flux.io.encoder._kept.clear()
    first = flux.generate([request("a green kite", 4)])[0]
    again = flux.generate([request("a green kite", 4)])[0]
    flux.generate([request("a blue kite", 5)])
    assert calls == ["a green kite", "a blue kite"]  # the second "a green kite" came from the kept encodings
    assert again.image == first.image
