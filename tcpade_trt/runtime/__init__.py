"""Running a model: the denoising loop (sampler.py) and its step (step.py), engines as a model's parts
(engine_parts.py; each backend's runners in engines/<backend>/), the production Runtime, the
eager hook for diffusers pipelines (hooks.py), the engine-backed drop-in transformer (dropin.py), what a model
takes in and gives out (model_io.py: classes or prompts in, pixels or the one latent preview out; for the CLI, the
server and the benchmarks alike), and writing images (images.py)."""
