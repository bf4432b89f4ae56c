"""The GPU benchmark's code path on CPU with a tiny FLUX config; and FP8 linears' accuracy."""

import warnings

import torch

from tcpade_trt.bench.fp8_linear import FP8Linear, convert_blocks_to_fp8
from tcpade_trt.bench.gpu_bench import count_sync_warnings, markdown, run_gpu_bench
from tcpade_trt.models import tiny_model


def test_gpu_bench_runs_every_mode_with_and_without_tcpade_on_cpu():
    results = run_gpu_bench("tiny", resolution=64, steps=10, text_tokens=8, device="cpu", dtype=torch.float32,
                            modes=("eager", "fp8"), caches=("none", "tcpade-fast"), repeats=1, progress=lambda *a: None)
    runs = {(r["mode"], r["cache"]): r for r in results["runs"]}
    assert set(runs) == {("eager", "none"), ("eager", "tcpade-fast"), ("fp8", "none"), ("fp8", "tcpade-fast")}
    assert runs["eager", "tcpade-fast"]["full_steps"] < 10 and runs["eager", "tcpade-fast"]["predicted_step_ms"] > 0
    assert runs["eager", "none"]["rel_l2_vs_first"] == 0 and 0 < runs["fp8", "none"]["rel_l2_vs_first"] < 0.1
    assert "| fp8 | tcpade-fast |" in markdown(results)
    assert all(r["host_syncs"] is None for r in results["runs"])  # on CPU there is no device to wait for


def test_host_syncs_are_counted_from_torchs_sync_debug_warnings():
    """What torch's sync debug mode raises on CUDA for each call that waits for the device."""
    def run():
        for _ in range(3):  # the same line thrice: each call counts
            warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert count_sync_warnings(run) == 3


def test_fp8_linear_matches_the_float_layer_within_fp8_rounding():
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(3, 5, 64)
    err = (FP8Linear(layer)(x) - layer(x)).norm() / layer(x).norm()
    assert 0 < err < 0.1
    model = tiny_model("tiny-flux")
    assert convert_blocks_to_fp8(model.transformer) > 0
    assert isinstance(model.transformer.transformer_blocks[0].attn.to_q, FP8Linear)
    assert isinstance(model.transformer.x_embedder, torch.nn.Linear)  # embedders stay unquantized


def test_gpu_bench_times_engine_folders_in_the_same_table(fp32_folders):
    """Built offline (TensorRT plans on a GPU machine; here an onnxruntime folder), timed per cache."""
    results = run_gpu_bench("tiny", resolution=64, steps=10, text_tokens=8, device="cpu", dtype=torch.float32,
                            modes=("eager",), caches=("none", "tcpade-fast"), repeats=1, progress=lambda *a: None,
                            engines=[fp32_folders["tiny-flux"]])
    engine_rows = [r for r in results["runs"] if r["mode"] == "engines onnxruntime fp32"]
    assert [r["cache"] for r in engine_rows] == ["none", "tcpade-fast"]
    assert engine_rows[1]["full_steps"] < 10 and engine_rows[1]["predicted_step_ms"] > 0
    assert all(r["rel_l2_vs_first"] is None for r in engine_rows)  # other weights: no quality figure
    assert "| engines onnxruntime fp32 | tcpade-fast |" in markdown(results)
