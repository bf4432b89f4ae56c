import pytest
import torch

from tcpade_trt.models import example_cond, tiny_model

# (family model, latent height, width, frames) cases the split must reproduce exactly
RESOLUTIONS = {
    "tiny-flux": [(8, 8, 1), (12, 16, 1)],
    "tiny-wan": [(8, 8, 1), (8, 12, 3)],
    "tiny-dit": [(8, 8, 1), (16, 16, 1)],
}


@pytest.fixture(scope="session")
def models():
    """One seeded tiny model per family, shared by the tests (they never modify weights)."""
    return {name: tiny_model(name) for name in RESOLUTIONS}


def make_inputs(model, batch, height, width, frames=1, seed=0):
    """(noise latents, conditioning) for one tiny generation."""
    gen = torch.Generator().manual_seed(seed)
    geometry = model.geometry(batch, height, width, frames)
    latents = torch.randn(geometry.shape, generator=gen)
    return latents, example_cond(model, geometry, height=height, width=width, generator=gen)
