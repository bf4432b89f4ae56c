"""Local diffusers pipeline folders with tiny random text encoders, tokenizers and VAEs, saved the way a
downloaded one is (``save_pretrained``): what ``--pipeline DIR`` reads for the tiny text-conditioned families."""

import json

import torch
import transformers

from tcpade_trt.models import tiny_model

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def clip_tokenizer(folder):
    """A character-level CLIP BPE tokenizer (no merges): every word becomes its letters."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in LETTERS:
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def t5_tokenizer(folder):
    """A character-level T5 tokenizer (unigram over single letters)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(c, -3.0) for c in LETTERS]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return transformers.T5TokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>", extra_ids=0)


def flux_pipeline_folder(root):
    """FluxPipeline.save_pretrained with tiny CLIP (pooled 24) and T5 (width 32) encoders matching tiny-flux."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline

    torch.manual_seed(0)
    clip = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=60, hidden_size=24, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    t5 = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=40, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2, pad_token_id=0, eos_token_id=1))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, layers_per_block=1, scaling_factor=0.36, shift_factor=0.11)
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True), vae=vae,
                        text_encoder=clip.eval(), tokenizer=clip_tokenizer(root / "src-clip"),
                        text_encoder_2=t5.eval(), tokenizer_2=t5_tokenizer(root / "src-t5"),
                        transformer=tiny_model("tiny-flux").transformer)
    pipe.save_pretrained(root / "pipeline")
    return root / "pipeline"


def wan_pipeline_folder(root):
    """WanPipeline.save_pretrained with a tiny UMT5 (width 32) and a tiny Wan VAE (4 latent channels)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline

    torch.manual_seed(0)
    umt5 = transformers.UMT5EncoderModel(transformers.UMT5Config(
        vocab_size=40, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2, pad_token_id=0, eos_token_id=1))
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1], num_res_blocks=1, temperal_downsample=[False],
                           latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    pipe = WanPipeline(tokenizer=t5_tokenizer(root / "src-t5"), text_encoder=umt5.eval(), vae=vae.eval(),
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                       transformer=tiny_model("tiny-wan").transformer)
    pipe.save_pretrained(root / "pipeline")
    return root / "pipeline"
