"""The check every engine passes before a folder is sealed: an engine that answers NaN fails it, wherever the
NaN sits (max() keeps a number over a NaN that comes after it)."""

import numpy as np
import pytest

from tcpade_trt.export.onnx_export import ExportError, check_part, worst_error
from tcpade_trt.export.parts import BuildShape, PartModule


@pytest.mark.parametrize("errors,worst", [([0.1, 0.3], 0.3), ([0.0, float("nan")], None), ([float("nan"), 1.0], None)])
def test_the_worst_error_is_nan_when_any_is(errors, worst):
    got = worst_error(errors)
    assert got == worst if worst is not None else got != got


class ExactButOneOutputNaN:
    """An engine that computes the part exactly, except that one output is all NaN."""

    def __init__(self, model, part, shape, nan_output):
        self.module, self.nan_output = PartModule(model, part).eval(), nan_output

    def run(self, names, feeds):
        import torch

        with torch.no_grad():
            out = self.module(*(torch.from_numpy(feeds[n]) for n in self.module.input_names))
        return [np.full(o.shape, np.nan, np.float32) if n == self.nan_output else o.numpy()
                for n, o in zip(self.module.output_names, out)]


def test_an_engine_with_a_nan_output_fails_the_check(models):
    model, shape = models["tiny-dit"], BuildShape(8, 8)
    outputs = PartModule(model, "blocks").output_names
    assert len(outputs) == 2  # x_out, residual: the NaN in the second one used to be dropped by max()
    check_part(ExactButOneOutputNaN(model, "blocks", shape, None), model, "blocks", shape, 1e-5)
    with pytest.raises(ExportError, match="differs from torch by nan"):
        check_part(ExactButOneOutputNaN(model, "blocks", shape, outputs[-1]), model, "blocks", shape, 1e-5)
