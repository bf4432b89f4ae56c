"""What a model takes in and gives out (runtime/model_io.ModelIO), the one answer the CLI, the server and the
benchmarks share."""

import pytest
import torch

from tcpade_trt.errors import ConfigError
from tcpade_trt.models.demo import weights_path
from tcpade_trt.models.registry import load_model
from tcpade_trt.runtime.images import latent_preview
from tcpade_trt.runtime.model_io import ModelIO

needs_demo = pytest.mark.skipif(not weights_path().is_file(), reason="the demo weights are not in this checkout")


def test_dit_takes_class_indices_and_guidance_and_previews_its_latents_without_a_vae(models):
    io = ModelIO(models["tiny-dit"])
    assert io.takes == "classes" and io.class_names is None and io.num_classes == models["tiny-dit"].family.num_classes
    assert io.class_label("3") == 3 and io.takes_guidance and io.guidance(None) == 4.0 and io.guidance(2.0) == 2.0
    with pytest.raises(ConfigError, match="whole numbers 0 to"):
        io.class_label("cat")
    cond, noise = io.seeded_inputs(2, 0, 8, 8)
    assert noise.shape[0] == 2 and cond["class_labels"].shape == (2,)
    pixels = io.to_pixels(noise, 8, 8)
    assert not io.decodes and torch.equal(pixels, latent_preview(io.family.spatial_latents(noise, 8, 8)))


def test_a_text_model_without_its_pipeline_takes_nothing_and_refuses_classes(models):
    io = ModelIO(models["tiny-wan"])
    assert io.takes == "nothing" and not io.takes_classes and not io.decodes
    with pytest.raises(ConfigError, match="conditioned by text"):
        io.class_label("1")
    assert not ModelIO(models["tiny-flux"]).takes_guidance  # FLUX's guidance is embedded: only through a pipeline


@needs_demo
def test_the_demo_models_take_their_class_names_and_decode_their_own_images():
    flux, dit = ModelIO(load_model("demo")), ModelIO(load_model("demo-dit"))
    assert flux.class_names == dit.class_names and flux.class_label(flux.class_names[2]) == 2
    assert flux.class_label("7") == 7
    with pytest.raises(ConfigError, match="unknown demo class 'unicorn'; choose one of"):
        flux.class_label("unicorn")
    assert not flux.takes_guidance and flux.guidance(3.0) is None  # trained without guidance
    assert dit.takes_guidance and dit.guidance(None) == 4.0  # trained for classifier-free guidance
    cond, noise = flux.seeded_inputs(3, 8, 16, 16)  # classes in turn: seed % 8
    pixels = flux.to_pixels(noise)
    assert flux.decodes and pixels.shape == (3, 3, 32, 32) and 0 <= pixels.min() and pixels.max() <= 1
    with pytest.raises(ConfigError, match="decodes its own images: leave it out"):
        ModelIO(load_model("demo"), pipeline="/nonexistent")
