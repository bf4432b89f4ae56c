"""Run one `tcpade-trt` command as if TensorRT and a GPU were there: the test suite's TensorRT stand-in
(tests/fake_tensorrt.py) on its emulated GPU (tests/emulated_cuda.py), where "the GPU" is host memory.

    python scripts/with_tensorrt_standin.py build MODEL --out DIR --backend tensorrt --precision fp8

What runs is the toolkit's TensorRT path as on a GPU (the model loaded in the blocks' dtype, ModelOpt's recipe,
the export, the parser's checks, the plans checked against torch); a plan is its ONNX graph run by onnxruntime,
so its timings mean nothing. scripts/realsize.py uses it to build the TensorRT recipes at real width on a CPU.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402  (the stand-in is installed with pytest's monkeypatch, as in the tests)

from tcpade_trt.cli import main  # noqa: E402
from tests.fake_tensorrt import install  # noqa: E402

if __name__ == "__main__":
    patch = pytest.MonkeyPatch()
    install(patch)
    try:
        code = main(sys.argv[1:])
    finally:
        patch.undo()
    sys.exit(code)
