"""The released checkpoints the README names, from their own configs (tests/fixtures/released, sources in its
SOURCES.md; tests/released_models.py makes the folders at reduced depth): each loads, builds and generates
through the public commands, with the pipeline settings that matter - the released scheduler, and as many text
tokens as the released pipeline feeds the transformer."""

import json

import pytest

from tcpade_trt.cli import main
from tcpade_trt.engines.manifest import read_manifest
from tcpade_trt.models.registry import default_text_tokens, load_model, model_family

from ..released_models import FIXTURES, model_folder, released

# name, family, as a pipeline folder, latent size flags, text tokens its pipeline feeds the transformer, generate flags
CASES = [
    ("DiT-XL-2-256", "dit", True, ["--height", "8", "--width", "8"], None, ["--class", "207"]),
    ("DiT-XL-2-512", "dit", False, ["--height", "8", "--width", "8"], None, ["--class", "360"]),
    ("FLUX.1-dev", "flux", True, ["--height", "8", "--width", "8"], 512, ["--prompt", "a red fox"]),
    ("FLUX.1-schnell", "flux", True, ["--height", "8", "--width", "8"], 256, ["--prompt", "a red fox"]),
    ("Wan2.1-T2V-1.3B-Diffusers", "wan", True, ["--height", "8", "--width", "8", "--frames", "2"], 512,
     ["--prompt", "a red fox"]),
    ("Wan2.1-T2V-14B-Diffusers", "wan", False, ["--height", "8", "--width", "8", "--frames", "2"], 512, []),
    ("stable-diffusion-3.5-medium", "sd3", False, ["--height", "8", "--width", "8"], 77 + 256, []),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,family,pipeline,size,text_tokens,generate", CASES, ids=[c[0] for c in CASES])
def test_a_released_config_builds_and_generates(name, family, pipeline, size, text_tokens, generate, tmp_path,
                                                capsys):
    folder = model_folder(name, tmp_path, pipeline=pipeline)
    assert model_family(folder).name == family  # DiT's legacy class name Transformer2DModel included
    if text_tokens is not None:
        assert default_text_tokens(folder) == text_tokens
    engines = tmp_path / "engines"
    assert main(["build", str(folder), "--out", str(engines), *size, "--batch-max", "2"]) == 0, capsys.readouterr()
    manifest = read_manifest(engines)
    if text_tokens is not None:
        assert manifest.shape["text_tokens"] == text_tokens
    if pipeline:  # the pipeline's own scheduler travels with the engines
        assert manifest.model["scheduler"] == released(name, "scheduler/scheduler_config.json")
    out = tmp_path / ("out.gif" if family == "wan" else "out.png")
    # prompts through the pipeline's text encoders; DiT's classes decoded by its pipeline's VAE
    flags = [*generate, "--pipeline", str(folder)] if pipeline and generate else generate
    assert main(["generate", "--engines", str(engines), "--steps", "3", "--out", str(out), *flags]) == 0, \
        capsys.readouterr()
    assert out.stat().st_size > 0
    if pipeline and family == "dit":  # pixels through the VAE (8x8 latents, the tiny VAE's 2x), not a preview
        assert pytest.importorskip("PIL.Image").open(out).size == (16, 16)


def test_schnell_samples_with_its_own_scheduler_not_devs(tmp_path):
    """FLUX.1-schnell ships shift 1.0 without dynamic shifting; the family's reference (dev's) shifts by the
    image size. A schnell folder's generations use schnell's."""
    import numpy as np

    schnell = load_model(model_folder("FLUX.1-schnell", tmp_path))
    geometry = schnell.family.geometry(1, 64, 64)
    timesteps = schnell.family.make_scheduler(4, geometry).timesteps.numpy()
    np.testing.assert_allclose(timesteps, 1000 * np.linspace(1.0, 0.25, 4), rtol=1e-6)  # unshifted
    schnell.family.scheduler_config = None  # the reference scheduler (dev's)
    assert not np.allclose(schnell.family.make_scheduler(4, geometry).timesteps.numpy(), timesteps)


def test_the_fixtures_say_where_they_come_from():
    sources = (FIXTURES / "SOURCES.md").read_text()
    for name, *_ in CASES:
        assert f"## {name.replace('-Diffusers', '')}" in sources or name in sources
        json.loads((FIXTURES / name / "transformer" / "config.json").read_text())
