"""EngineTransformer inside unmodified diffusers pipelines, against the same pipeline on the torch model."""

import pytest

from tcpade_trt.models import tiny_model
from tcpade_trt.runtime.dropin import EngineTransformer

from ..pipelines import PIPELINES


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", list(PIPELINES))
def test_engine_transformer_drops_into_the_pipeline(fp32_folders, name):
    reference = PIPELINES[name](tiny_model(name).transformer)()
    uncached = EngineTransformer(fp32_folders[name], cache="none", num_steps=20)
    assert rel(PIPELINES[name](uncached)(), reference) <= 1e-4
    cached = EngineTransformer(fp32_folders[name], cache="tcpade-fast", num_steps=20)
    out = PIPELINES[name](cached)()
    assert cached.stats()["full"] == 7 and rel(out, reference) < 0.1
