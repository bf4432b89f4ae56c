"""How much onnxruntime's dynamic INT8 linears gain over FP32 as a transformer gets wider, on this CPU.

    .venv/bin/python scripts/int8_by_width.py [--widths 128 256 512] [--tokens 1088]

Times an MLP-like block (x -> Linear 4w -> tanh-GELU -> Linear w, plus a Linear 3w as a fused QKV
projection would be) exported to ONNX and quantized the way `tcpade-trt build --precision int8`
quantizes the block stack (per-channel S8 weights, activations quantized at run time), FP32 and
INT8 alternating, median of 30 runs after a warm-up. It answers "how wide must the demo model be for
INT8 to pay here?": the linears' share of a block stack and their INT8 gain both grow with width.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from tcpade_trt.engines.onnxruntime.int8_dynamic import quantize_int8_dynamic
from tcpade_trt.engines.onnxruntime.sessions import create_session


class LinearBlock(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.up, self.down, self.qkv = (torch.nn.Linear(width, 4 * width), torch.nn.Linear(4 * width, width),
                                        torch.nn.Linear(width, 3 * width))

    def forward(self, x):
        mlp = self.down(torch.nn.functional.gelu(self.up(x), approximate="tanh"))
        return mlp + self.qkv(x)[..., : x.shape[-1]]


def time_width(width: int, tokens: int, folder: Path, runs: int = 30) -> tuple[float, float]:
    """(FP32 ms, INT8 ms) for one block on [1, tokens, width]."""
    torch.manual_seed(0)
    x = torch.randn(1, tokens, width)
    fp32, int8 = folder / f"block{width}.onnx", folder / f"block{width}-int8.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(LinearBlock(width).eval(), (x,), str(fp32), input_names=["x"], dynamo=False,
                          opset_version=17)
    quantize_int8_dynamic(fp32, int8, external=False)
    sessions = [create_session(f, ["CPUExecutionProvider"]) for f in (fp32, int8)]
    feeds = {"x": x.numpy()}
    for s in sessions:
        for _ in range(5):
            s.run(None, feeds)
    times = [[], []]
    for _ in range(runs):
        for i, s in enumerate(sessions):
            start = time.perf_counter()
            s.run(None, feeds)
            times[i].append(time.perf_counter() - start)
    return tuple(1000 * statistics.median(t) for t in times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--tokens", type=int, default=16 * 68, help="rows of the matmuls (demo: 16 images x 68 tokens)")
    args = p.parse_args()
    print("| width | FP32 | INT8 | INT8 gain |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:
            fp32_ms, int8_ms = time_width(width, args.tokens, Path(tmp))
            print(f"| {width} | {fp32_ms:.2f} ms | {int8_ms:.2f} ms | {fp32_ms / int8_ms:.2f}x |")


if __name__ == "__main__":
    main()
