"""The shipped demo-dit model (a DiT of the same photographs): it has learned its classes, loads by its built-in
name everywhere a model name is taken, and its trainer writes a loadable diffusers folder."""

import json

import pytest
import torch

from research.class_fidelity import class_references, nearest_class
from tcpade_trt.models.demo import CLASSES
from tcpade_trt.models.demo_dit import latents_to_images, load_demo_dit, weights_folder
from tcpade_trt.models.registry import default_build_shape, load_model, model_family
from tcpade_trt.runtime.images import to_unit
from tcpade_trt.runtime.sampler import initial_noise, sample

shipped = pytest.mark.skipif(not (weights_folder() / "config.json").is_file(),
                             reason="the demo-dit weights are not in this checkout")


@shipped
def test_samples_are_recognisably_their_own_class():
    """At least 70% of 20-step DDIM samples (guidance 4) are closest, in colour histogram, to their class."""
    model = load_demo_dit()
    labels = torch.arange(len(CLASSES)).repeat_interleave(3)  # 24 samples, every class
    noise = initial_noise(model, model.geometry_for(len(labels)).shape, list(range(100, 100 + len(labels))))
    with torch.no_grad():
        result = sample(model, model.class_cond(labels), noise, num_steps=20, guidance_scale=4.0)
    predicted = nearest_class(to_unit(latents_to_images(result.latents)), class_references())
    accuracy = (predicted == labels).float().mean().item()
    assert accuracy >= 0.7, f"only {accuracy:.0%} of samples match their class"


@shipped
def test_builtin_name_loads_the_shipped_dit_with_its_calibration():
    model = load_model("demo-dit")
    assert model.name == "demo-dit" and type(model.transformer).__name__ == "DiTTransformer2DModel"
    assert model.latent_size == (16, 16, 1) and default_build_shape("demo-dit", model_family("demo-dit")) == (16, 16, 1)
    assert model.family.num_classes == len(CLASSES) and model.family.default_guidance == 4.0
    if (weights_folder() / "calibration.json").is_file():
        assert {(t, b) for t, b, _ in model.calibrated} >= {(20, 0.35), (20, 0.45)}


def test_trainer_writes_a_diffusers_folder_that_loads(tmp_path):
    """Two training steps: the folder is a plain diffusers DiT folder (config.json + fp16 safetensors) with
    its record and card, and loads as a model of the DiT family."""
    from research.train_demo_dit import train

    record = train(steps=2, batch=2, lr=1e-4, seed=0, out=tmp_path)
    assert record["steps"] == 2 and len(record["loss_curve"]) == 1
    assert {"config.json", "diffusion_pytorch_model.safetensors", "training.json", "MODEL_CARD.md"} <= \
        {p.name for p in tmp_path.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".saving-")]  # no temporary left
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == "DiTTransformer2DModel"
    model = load_demo_dit(tmp_path)
    assert model.dtype == torch.float32 and model.family.title == "DiT"
