"""The demo model's width is a training option: a wider model trains, and loads from its weights."""

import json

import torch

from research.train_demo import train
from tcpade_trt.models.demo import WEIGHTS_FILE, load_demo_model


def test_a_demo_model_trained_with_two_heads_loads_with_two_heads(tmp_path):
    record = train(steps=2, batch=4, lr=1e-3, seed=0, out=tmp_path, heads=2)
    assert record["transformer_config"]["num_attention_heads"] == 2
    assert json.loads((tmp_path / "training.json").read_text())["transformer_config"]["num_attention_heads"] == 2
    model = load_demo_model(tmp_path / WEIGHTS_FILE)  # hidden 64, read from the weights
    assert model.transformer.config.num_attention_heads == 2
    # stored as fp16 (half the checkout), run as fp32
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(str(tmp_path / WEIGHTS_FILE)).values()} == {torch.float16}
    assert {p.dtype for p in model.transformer.parameters()} == {torch.float32}
    cond = model.class_cond(torch.tensor([0, 5]))
    latents = torch.randn(2, 64, 48)
    out = model.parts.forward_unsplit(latents, torch.tensor([0.5, 0.5]), cond)
    assert out.shape == latents.shape and torch.isfinite(out).all()


def test_a_run_in_two_pieces_gives_the_weights_of_one_run(tmp_path):
    """--stop-after then --resume: model, optimizer, schedule, EMA and data generator all restored."""
    from safetensors.torch import load_file

    from research.train_demo import CHECKPOINT

    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    train(steps=4, batch=2, lr=1e-3, seed=0, out=whole, heads=1)
    assert train(steps=4, batch=2, lr=1e-3, seed=0, out=pieces, heads=1, stop_after=2) is None
    assert (pieces / CHECKPOINT).is_file() and not (pieces / WEIGHTS_FILE).exists()
    record = train(steps=4, batch=2, lr=1e-3, seed=0, out=pieces, heads=1, resume=True)
    assert not (pieces / CHECKPOINT).exists()
    a, b = load_file(str(whole / WEIGHTS_FILE)), load_file(str(pieces / WEIGHTS_FILE))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert record["loss_curve"] == json.loads((whole / "training.json").read_text())["loss_curve"]


def test_resuming_with_other_options_or_nothing_to_resume_is_one_sentence(tmp_path):
    import pytest

    from tcpade_trt.errors import ConfigError

    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        train(steps=4, batch=2, lr=1e-3, seed=0, out=tmp_path, heads=1, resume=True)
    train(steps=4, batch=2, lr=1e-3, seed=0, out=tmp_path, heads=1, stop_after=1)
    with pytest.raises(ConfigError, match="resume with the same options"):
        train(steps=4, batch=2, lr=1e-3, seed=1, out=tmp_path, heads=1, resume=True)


def test_a_weight_beyond_fp16s_range_is_refused_not_stored_as_inf(tmp_path):
    import pytest

    from research.train_demo import save_weights
    from tcpade_trt.errors import ConfigError

    with pytest.raises(ConfigError, match="exceed fp16's range"):
        save_weights({"transformer.w": torch.tensor([1.0, 7e4])}, tmp_path)
    assert not (tmp_path / WEIGHTS_FILE).exists()
