"""`tcpade-trt generate --prompt --pipeline`: the text encoders and VAE come from a local pipeline
folder (saved like a downloaded one, with tiny random components), the transformer from engines."""

import warnings

import numpy as np
import pytest
from PIL import Image

from tcpade_trt.cli import main

pytest.importorskip("transformers")


def generate(folder, pipeline, prompt, out):
    return main(["generate", "--engines", str(folder), "--pipeline", str(pipeline), "--prompt", prompt,
                 "--steps", "6", "--seed", "3", "--out", str(out)])


def test_a_prompt_through_local_flux_text_encoders_gives_an_image_that_depends_on_it(
        fp32_folders, flux_pipeline_folder, tmp_path, capsys):
    assert generate(fp32_folders["tiny-flux"], flux_pipeline_folder, "a red rocket", tmp_path / "rocket.png") == 0
    assert generate(fp32_folders["tiny-flux"], flux_pipeline_folder, "a cat", tmp_path / "cat.png") == 0
    rocket = np.asarray(Image.open(tmp_path / "rocket.png"))
    cat = np.asarray(Image.open(tmp_path / "cat.png"))
    assert rocket.shape == (16, 16, 3)  # 8x8 latents through a VAE that upsamples twice
    assert not np.array_equal(rocket, cat)
    assert "full steps" in capsys.readouterr().out


def test_a_wan_prompt_with_its_negative_prompt_gives_an_animation(fp32_folders, wan_pipeline_folder, tmp_path):
    assert generate(fp32_folders["tiny-wan"], wan_pipeline_folder, "a dog", tmp_path / "dog.gif") == 0
    gif = Image.open(tmp_path / "dog.gif")  # video: an animated GIF
    assert gif.n_frames == 3 and gif.size == (16, 16)


def test_a_folder_that_is_not_a_pipeline_is_one_sentence(fp32_folders, tmp_path, capsys):
    assert generate(fp32_folders["tiny-flux"], tmp_path, "a cat", tmp_path / "x.png") == 2
    assert "is not a diffusers pipeline folder (no model_index.json)" in capsys.readouterr().err


def test_a_prompt_longer_than_the_folders_text_tokens_is_said_not_cut_silently(fp32_folders, flux_pipeline_folder):
    """The folder was built for 8 text tokens (the tiny models' default; FLUX.1-dev's pipeline feeds 512): the T5
    encoder keeps the first 8 of a longer prompt. That is said, with the --text-tokens that keeps all of it."""
    from tcpade_trt.runtime.runtime import Runtime
    from tcpade_trt.runtime.text_conditioning import PromptEncoder

    encoder = PromptEncoder(Runtime(fp32_folders["tiny-flux"]).model, flux_pipeline_folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode("fox")  # 3 letters and </s>: fits
    with pytest.warns(UserWarning, match=r"the prompt is 17 tokens long, but .* was built for 8: the text encoder "
                                         r"keeps the first 8. Rebuild with --text-tokens 17"):
        encoder.encode("a red fox jumps")
