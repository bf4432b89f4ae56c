"""Which conditioning a served folder takes, checked before a server starts."""

from __future__ import annotations

from pathlib import Path


def check_conditioning(manifest, pipeline: Path | None) -> None:
    """A text-conditioned folder needs --pipeline and a class-conditional one takes none: one sentence
    before a server starts (its model would refuse the same, later and in the server's log)."""
    from ..errors import ConfigError
    from ..models.registry import DEMO_MODELS, is_text_conditioned

    text = is_text_conditioned(manifest.model["class"], manifest.model["name"])
    if text and pipeline is None:
        raise ConfigError(f"{manifest.model['name']} is conditioned by text: add --pipeline DIR, a local diffusers "
                          "pipeline folder holding its text encoders and VAE (tcpade-trt never downloads).")
    dit = manifest.model["class"] == "DiTTransformer2DModel" and manifest.model["name"] not in DEMO_MODELS
    if not text and pipeline is not None and not dit:  # DiT takes its pipeline's VAE
        raise ConfigError(f"{manifest.model['name']} is class-conditional and decodes its own images: leave out "
                          "--pipeline.")
    if pipeline is not None and not (pipeline / "model_index.json").is_file():
        raise ConfigError(f"{pipeline} is not a diffusers pipeline folder (no model_index.json).")
