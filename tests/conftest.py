import pytest
import torch

from tcpade_trt.builder import BuildOptions, build_engines
from tcpade_trt.export.parts import BuildShape
from tcpade_trt.models import tiny_model

# (family model, latent height, width, frames) cases the split must reproduce exactly
RESOLUTIONS = {
    "tiny-flux": [(8, 8, 1), (12, 16, 1)],
    "tiny-wan": [(8, 8, 1), (8, 12, 3)],
    "tiny-dit": [(8, 8, 1), (16, 16, 1)],
    "tiny-sd3": [(8, 8, 1), (8, 12, 1)],
}


@pytest.fixture(scope="session")
def models():
    """One seeded tiny model per family, shared by the tests (they never modify weights)."""
    return {name: tiny_model(name) for name in RESOLUTIONS}


def make_inputs(model, batch, height, width, frames=1, seed=0):
    """(noise latents, conditioning) for one tiny generation."""
    gen = torch.Generator().manual_seed(seed)
    geometry = model.family.geometry(batch, height, width, frames)
    latents = torch.randn(geometry.shape, generator=gen)
    return latents, model.family.example_cond(geometry, height=height, width=width, generator=gen)


# what the shared engine folders are built for
SHAPES = {
    "tiny-flux": BuildShape(height=8, width=8, batch_max=4),
    "tiny-wan": BuildShape(height=8, width=8, frames=3, batch_max=4),
    "tiny-dit": BuildShape(height=8, width=8, batch_max=4),
    "tiny-sd3": BuildShape(height=8, width=8, batch_max=4),
}


@pytest.fixture(scope="session")
def fp32_folders(tmp_path_factory):
    """onnxruntime fp32 engine folders of the tiny families, built once per test session."""
    root = tmp_path_factory.mktemp("engines")
    for name, shape in SHAPES.items():
        build_engines(name, root / name, BuildOptions(shape=shape), progress=False)
    return {name: root / name for name in SHAPES}


@pytest.fixture(scope="session")
def unfused_flux_folder(tmp_path_factory):
    """tiny-flux built with standard ops only (--no-ort-fusions): what TensorRT builds may reuse."""
    folder = tmp_path_factory.mktemp("unfused") / "tiny-flux"
    build_engines("tiny-flux", folder, BuildOptions(shape=SHAPES["tiny-flux"], ort_fusions=False), progress=False)
    return folder


@pytest.fixture(scope="session")
def flux_pipeline_folder(tmp_path_factory):
    """A saved FluxPipeline with tiny CLIP / T5 text encoders and VAE matching tiny-flux (tests/prompt_pipelines)."""
    pytest.importorskip("transformers")
    from .prompt_pipelines import flux_pipeline_folder as make

    return make(tmp_path_factory.mktemp("flux-pipeline"))


@pytest.fixture(scope="session")
def wan_pipeline_folder(tmp_path_factory):
    """A saved WanPipeline with a tiny UMT5 text encoder and Wan VAE matching tiny-wan (tests/prompt_pipelines)."""
    pytest.importorskip("transformers")
    from .prompt_pipelines import wan_pipeline_folder as make

    return make(tmp_path_factory.mktemp("wan-pipeline"))


@pytest.fixture(autouse=True)
def _no_unordered_device_memory_access(monkeypatch):
    """After every test that ran on the emulated GPU (tests/emulated_cuda.py): no stream read or wrote memory out
    of order. A test that provokes a race on purpose asserts it and clears ``races``."""
    yield
    from . import emulated_cuda

    if emulated_cuda.ACTIVE is not None:
        emulated_cuda.ACTIVE.assert_no_races()


@pytest.fixture(scope="session")
def trt_folders(tmp_path_factory, unfused_flux_folder):
    """TensorRT fp32 folders of tiny-flux and tiny-dit, built once through the TensorRT stand-in on an emulated
    GPU (tests/fake_tensorrt.py); a test opens them after its own ``install`` (the same stand-in version)."""
    from .fake_tensorrt import install

    root = tmp_path_factory.mktemp("trt")
    with pytest.MonkeyPatch.context() as patch:
        install(patch)
        build_engines("tiny-flux", root / "tiny-flux", BuildOptions(backend="tensorrt", shape=SHAPES["tiny-flux"],
                                                                     reuse_onnx_from=unfused_flux_folder),
                      progress=False)
        build_engines("tiny-dit", root / "tiny-dit", BuildOptions(backend="tensorrt", shape=SHAPES["tiny-dit"]),
                      progress=False)
    return {name: root / name for name in ("tiny-flux", "tiny-dit")}


@pytest.fixture(scope="session")
def unfused_folders(tmp_path_factory, unfused_flux_folder):
    """Every tiny family built with standard ops only (what TensorRT builds reuse), once per session."""
    root = tmp_path_factory.mktemp("unfused-all")
    folders = {"tiny-flux": unfused_flux_folder}
    for name, shape in SHAPES.items():
        if name not in folders:
            folders[name] = root / name
            build_engines(name, folders[name], BuildOptions(shape=shape, ort_fusions=False), progress=False)
    return folders
