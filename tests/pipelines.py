"""Unmodified diffusers pipelines around tiny transformers (no text encoders: embeddings are passed in)."""

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiTPipeline,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    StableDiffusion3Pipeline,
    WanPipeline,
)


def flux_pipeline(transformer):
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    pipe = FluxPipeline(scheduler=scheduler, vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None,
                        tokenizer_2=None, transformer=transformer)
    gen = torch.Generator().manual_seed(0)
    embeds, pooled = torch.randn(1, 8, 32, generator=gen), torch.randn(1, 24, generator=gen)
    return _callable(pipe, lambda steps: pipe(
        prompt_embeds=embeds, pooled_prompt_embeds=pooled, height=64, width=64, num_inference_steps=steps,
        guidance_scale=3.5, output_type="latent", generator=torch.Generator().manual_seed(1)).images)


def wan_pipeline(transformer):
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    gen = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(1, 8, 32, generator=gen), torch.randn(1, 8, 32, generator=gen)
    return _callable(pipe, lambda steps: pipe(
        prompt_embeds=pos, negative_prompt_embeds=neg, height=64, width=64, num_frames=9, num_inference_steps=steps,
        guidance_scale=5.0, output_type="latent", generator=torch.Generator().manual_seed(1)).frames)


def dit_pipeline(transformer):
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                        norm_num_groups=4, layers_per_block=1)
    pipe = DiTPipeline(transformer=transformer, vae=vae.eval(),
                       scheduler=DDIMScheduler(beta_schedule="linear", clip_sample=False))
    return _callable(pipe, lambda steps: torch.as_tensor(pipe(
        class_labels=[1, 3], guidance_scale=4.0, num_inference_steps=steps, output_type="np",
        generator=torch.Generator().manual_seed(1)).images))


def sd3_pipeline(transformer):
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None,
                                    tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
    gen = torch.Generator().manual_seed(0)
    embeds, negative = torch.randn(1, 8, 32, generator=gen), torch.randn(1, 8, 32, generator=gen)
    pooled, negative_pooled = torch.randn(1, 24, generator=gen), torch.randn(1, 24, generator=gen)
    return _callable(pipe, lambda steps: pipe(
        prompt_embeds=embeds, negative_prompt_embeds=negative, pooled_prompt_embeds=pooled,
        negative_pooled_prompt_embeds=negative_pooled, height=64, width=64, num_inference_steps=steps,
        guidance_scale=7.0, output_type="latent", generator=torch.Generator().manual_seed(1)).images)


def _callable(pipe, run):
    """call(steps=20) runs the pipeline and returns its latents; call.pipe is the pipeline."""
    def call(steps: int = 20):
        return run(steps)

    call.pipe = pipe
    return call


PIPELINES = {"tiny-flux": flux_pipeline, "tiny-wan": wan_pipeline, "tiny-dit": dit_pipeline,
             "tiny-sd3": sd3_pipeline}
