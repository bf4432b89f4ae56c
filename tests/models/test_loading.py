"""Loading by name or local folder, and the sentences users get for mistakes."""

import json

import pytest
import torch
from torch import nn

from tcpade_trt.errors import ModelNotFoundError, ShapeError, UnsupportedModelError
from tcpade_trt.models import load_model, split_model

from ..conftest import make_inputs


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-wan", "tiny-dit"])
def test_builtin_tiny_models_are_reproducible(name):
    a, b = load_model(name), load_model(name)
    assert a.family.name == name.split("-")[1]
    for pa, pb in zip(a.transformer.parameters(), b.transformer.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("layout", ["pipeline_root", "transformer_folder"])
def test_local_diffusers_folder(tmp_path, models, layout):
    src = models["tiny-dit"].transformer
    folder = tmp_path / "transformer" if layout == "pipeline_root" else tmp_path
    src.save_pretrained(folder)
    if layout == "pipeline_root":
        (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "DiTPipeline"}))
    loaded = load_model(tmp_path)
    assert loaded.family.name == "dit"
    for pa, pb in zip(src.parameters(), loaded.transformer.parameters()):
        assert torch.equal(pa, pb)


def test_hub_id_without_network_says_to_download():
    with pytest.raises(ModelNotFoundError, match="never downloads.*local folder"):
        load_model("black-forest-labs/FLUX.1-dev")


def test_unknown_name_lists_builtins():
    with pytest.raises(ModelNotFoundError, match="neither a local folder nor a built-in model") as raised:
        load_model("no-such-model")
    assert all(name in str(raised.value) for name in ("tiny-flux", "tiny-wan", "tiny-dit", "demo"))


def test_folder_without_config_is_explained(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither a diffusers pipeline"):
        load_model(tmp_path)


def test_unsupported_class_names_supported_families(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(UnsupportedModelError, match="supported families are") as raised:
        load_model(tmp_path)
    assert all(name in str(raised.value) for name in ("FLUX.1", "Wan2.1", "DiT"))
    with pytest.raises(UnsupportedModelError, match="Linear is not supported"):
        split_model(nn.Linear(2, 2))


def test_wrong_input_shape_names_tensor_and_shapes(models):
    model = models["tiny-flux"]
    latents, cond = make_inputs(model, 2, 8, 8)
    cond["pooled_projections"] = cond["pooled_projections"][:, :5]
    with pytest.raises(ShapeError, match=r"'pooled_projections' has shape \[2, 5\] but \[2, 24\]"):
        model.parts.prepare(latents, cond)
    with pytest.raises(ShapeError, match="not divisible by the patch size"):
        wan = models["tiny-wan"]
        latents, cond = make_inputs(wan, 1, 8, 8, 1)
        wan.parts.prepare(latents[..., :7], cond)
