"""The released checkpoints' own configs (tests/fixtures/released; where each file comes from is in its
SOURCES.md) as local model folders, the way a user has them after downloading, at reduced depth.

A folder holds the released transformer ``config.json`` itself - legacy class names and keys included -
with fewer blocks and one attention head (the per-head geometry stays as released: head size, RoPE axes,
qk-norm, patch, channels, text width), random weights saved by diffusers, and for pipelines the released
scheduler config and model index, tokenizers of the released lengths, and tiny random text encoders and
VAE of the widths the transformer expects.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import transformers

from .prompt_pipelines import clip_tokenizer, t5_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "released"
ONE_BLOCK = {"num_layers": 1, "num_attention_heads": 1}
# what each released config loses to fit a test: depth, and heads (width = one head)
REDUCED = {
    "DiT-XL-2-256": ONE_BLOCK,
    "DiT-XL-2-512": ONE_BLOCK,
    "FLUX.1-dev": {**ONE_BLOCK, "num_single_layers": 1},
    "FLUX.1-schnell": {**ONE_BLOCK, "num_single_layers": 1},
    "Wan2.1-T2V-1.3B-Diffusers": ONE_BLOCK,
    "Wan2.1-T2V-14B-Diffusers": ONE_BLOCK,
    # SD3.5's first 13 blocks have a second attention (dual attention): the reduced model keeps one of each kind
    "stable-diffusion-3.5-medium": {"num_layers": 2, "num_attention_heads": 1, "dual_attention_layers": [0],
                                    "caption_projection_dim": 64},
}


def released(name: str, path: str) -> dict:
    return json.loads((FIXTURES / name / path).read_text())


def reduced_config(name: str) -> dict:
    """The released transformer config with the reductions above (nothing else changed)."""
    return {**released(name, "transformer/config.json"), **REDUCED[name]}


def write_transformer(name: str, folder: Path) -> Path:
    """``folder`` (a transformer folder): random weights of the reduced config, saved by diffusers, then the
    released config.json (reduced) written over the one diffusers wrote."""
    import diffusers
    from diffusers.models.model_loading_utils import _fetch_remapped_cls_from_config

    config = reduced_config(name)
    cls = getattr(diffusers, config["_class_name"])
    if config["_class_name"] == "Transformer2DModel":  # what diffusers itself loads the legacy name as
        cls = _fetch_remapped_cls_from_config(config, cls)
    torch.manual_seed(0)
    cls.from_config(config).save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def model_folder(name: str, root: Path, pipeline: bool = True) -> Path:
    """A downloaded model: a pipeline folder (model_index.json, scheduler, transformer and, for text models, text
    encoders, tokenizers and VAE), or the transformer folder alone (``pipeline=False``)."""
    folder = root / name
    write_transformer(name, folder / "transformer" if pipeline else folder)
    if not pipeline:
        return folder
    (folder / "scheduler").mkdir()
    shutil.copy(FIXTURES / name / "scheduler" / "scheduler_config.json", folder / "scheduler")
    config = reduced_config(name)
    if name.startswith("FLUX"):
        _flux_text_and_vae(name, folder, config)
    elif name.startswith("Wan"):
        _wan_text_and_vae(name, folder, config)
    elif name.startswith("DiT"):
        _dit_vae(folder, config)
    index = FIXTURES / name / "model_index.json"
    if index.is_file():
        shutil.copy(index, folder / "model_index.json")
    else:  # DiT: the released index lists 1000 ImageNet labels this fixture does not carry
        (folder / "model_index.json").write_text(json.dumps({
            "_class_name": "DiTPipeline", "scheduler": ["diffusers", "DDIMScheduler"],
            "transformer": ["diffusers", "Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]}))
    return folder


def _max_length(name: str, tokenizer: str, default: int) -> int:
    path = FIXTURES / name / tokenizer / "tokenizer_config.json"
    return json.loads(path.read_text())["model_max_length"] if path.is_file() else default


def _flux_text_and_vae(name: str, folder: Path, config: dict) -> None:
    """CLIP of width pooled_projection_dim (768), T5 of width joint_attention_dim (4096), a VAE of in_channels / 4
    latent channels (16); tokenizers of the released lengths (77; T5 512, schnell's too)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    clip = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=60, hidden_size=config["pooled_projection_dim"], intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    t5 = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=40, d_model=config["joint_attention_dim"], d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        pad_token_id=0, eos_token_id=1))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=config["in_channels"] // 4,
                        block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, layers_per_block=1,
                        scaling_factor=0.3611, shift_factor=0.1159)  # FLUX.1's VAE normalisation
    clip.save_pretrained(folder / "text_encoder")
    t5.save_pretrained(folder / "text_encoder_2")
    vae.save_pretrained(folder / "vae")
    tokenizer = clip_tokenizer(folder / "src-clip")
    tokenizer.model_max_length = _max_length(name, "tokenizer", 77)
    tokenizer.save_pretrained(folder / "tokenizer")
    tokenizer_2 = t5_tokenizer(folder / "src-t5")
    tokenizer_2.model_max_length = _max_length(name, "tokenizer_2", 512)
    tokenizer_2.save_pretrained(folder / "tokenizer_2")


def _dit_vae(folder: Path, config: dict) -> None:
    """A tiny VAE of in_channels latent channels (4) with DiT's scaling factor (sd-vae-ft-ema's 0.18215)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=config["in_channels"], block_out_channels=(8, 8),
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  norm_num_groups=4, layers_per_block=1, scaling_factor=0.18215).save_pretrained(folder / "vae")


def _wan_text_and_vae(name: str, folder: Path, config: dict) -> None:
    """UMT5 of width text_dim (4096), a Wan VAE of in_channels latent channels (16)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    umt5 = transformers.UMT5EncoderModel(transformers.UMT5Config(
        vocab_size=40, d_model=config["text_dim"], d_kv=8, d_ff=32, num_layers=1, num_heads=2, pad_token_id=0,
        eos_token_id=1))
    channels = config["in_channels"]
    vae = AutoencoderKLWan(base_dim=8, z_dim=channels, dim_mult=[1, 1], num_res_blocks=1,
                           temperal_downsample=[False], latents_mean=[0.0] * channels, latents_std=[1.0] * channels)
    umt5.save_pretrained(folder / "text_encoder")
    vae.save_pretrained(folder / "vae")
    tokenizer = t5_tokenizer(folder / "src-t5")
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder / "tokenizer")
