"""Engine folders built once per test session (a build takes seconds per tiny model)."""

import pytest

from tcpade_trt.engines.build import BuildOptions, build_engines
from tcpade_trt.export.parts import BuildShape

SHAPES = {
    "tiny-flux": BuildShape(height=8, width=8, batch_max=4),
    "tiny-wan": BuildShape(height=8, width=8, frames=3, batch_max=4),
    "tiny-dit": BuildShape(height=8, width=8, batch_max=4),
}


@pytest.fixture(scope="session")
def fp32_folders(tmp_path_factory):
    """onnxruntime fp32 engine folders of the three tiny families."""
    root = tmp_path_factory.mktemp("engines")
    return {name: build_engines(name, root / name, BuildOptions(shape=shape), progress=False) and root / name
            for name, shape in SHAPES.items()}
