"""The demo model's width is a training option: a wider model trains, and loads from its weights."""

import json

import torch

from tcpade_trt.models.demo import WEIGHTS_FILE, load_demo_model
from tcpade_trt.models.train_demo import train


def test_a_demo_model_trained_with_two_heads_loads_with_two_heads(tmp_path):
    record = train(steps=2, batch=4, lr=1e-3, seed=0, out=tmp_path, heads=2)
    assert record["transformer_config"]["num_attention_heads"] == 2
    assert json.loads((tmp_path / "training.json").read_text())["transformer_config"]["num_attention_heads"] == 2
    model = load_demo_model(tmp_path / WEIGHTS_FILE)  # hidden 64, read from the weights
    assert model.transformer.config.num_attention_heads == 2
    cond = model.class_cond(torch.tensor([0, 5]))
    latents = torch.randn(2, 64, 48)
    out = model.forward_unsplit(latents, torch.tensor([0.5, 0.5]), cond)
    assert out.shape == latents.shape and torch.isfinite(out).all()
