"""`tcpade-trt bench` end to end on a small grid, and diffusers' hooks as peers."""

import json

import torch

from tcpade_trt.bench.peers import PEERS, run_peer
from tcpade_trt.cli import main
from tcpade_trt.models import tiny_model
from tcpade_trt.runtime.sampler import initial_noise, sample

from ..conftest import make_inputs


def test_bench_writes_json_table_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "tiny-flux", "--out", str(out), "--batches", "1", "2", "--repeats", "1", "--steps", "6",
                 "--caches", "none", "tcpade-fast", "--peers", "diffusers-fbcache", "--precisions", "int8",
                 "--compiled", "--markdown", str(tmp_path / "benchmarks.md")]) == 0
    results = json.loads((out / "bench.json").read_text())
    keys = {"backend", "precision", "cache", "batch", "steps", "full_steps", "latency_s", "throughput_img_s",
            "speedup", "psnr_db", "ssim", "peak_mem_mb"}
    assert len(results["runs"]) == 2 * (2 + 1 + 2)  # batches x (torch caches + peer + int8 caches)
    assert all(keys <= set(r) for r in results["runs"]) and "cpu" in results["machine"]
    assert "Orthogonal speedups" in (tmp_path / "benchmarks.md").read_text()
    assert (out / "throughput.png").stat().st_size > 1000 and (out / "speed_vs_quality.png").stat().st_size > 1000
    assert "INT8 + tcpade-fast" in capsys.readouterr().out


def test_peers_skip_steps_and_leave_the_model_as_it_was():
    model = tiny_model("tiny-flux")
    _, cond = make_inputs(model, 1, 8, 8)
    noise = initial_noise(model, model.family.geometry(1, 8, 8).shape, [0])
    reference = sample(model, cond, noise, num_steps=20)
    for peer in PEERS:
        result = run_peer(model, peer, cond, noise, 20)
        assert 0 < result.full_steps < 20, peer
        assert torch.isfinite(result.latents).all()
    assert torch.equal(sample(model, cond, noise, num_steps=20).latents, reference.latents)


def test_bench_on_a_tiny_model_with_guidance_builds_its_engines_and_scores_latents(tmp_path):
    out = tmp_path / "bench-wan"
    assert main(["bench", "tiny-wan", "--out", str(out), "--batches", "1", "--repeats", "1", "--steps", "6",
                 "--caches", "none", "tcpade-fast", "--peers", "diffusers-fbcache", "--precisions", "int8",
                 "--compiled"]) == 0
    results = json.loads((out / "bench.json").read_text())
    assert results["model"] == "tiny-wan" and results["guidance_scale"] == 5.0
    cells = {(r["backend"], r["precision"], r["cache"]): r for r in results["runs"]}
    assert set(cells) == {("torch", "fp32", "none"), ("torch", "fp32", "tcpade-fast"),
                          ("diffusers-hook", "fp32", "diffusers-fbcache"), ("onnxruntime", "int8", "none"),
                          ("onnxruntime", "int8", "tcpade-fast")}
    assert cells["onnxruntime", "int8", "tcpade-fast"]["psnr_vs_reference_db"] > 10  # latents near the eager ones
    assert cells["torch", "fp32", "tcpade-fast"]["ssim"] is None  # 8x8 latents: too small for SSIM's window
    assert (out / "engines" / "tiny-wan-int8" / "manifest.json").is_file()


def test_compiled_peers_and_another_backend_sit_in_the_same_table(tmp_path):
    """torch.compile (fp32, bf16 autocast) as the CPU user's baseline, cached with the same policies, next to the
    engine variants of every installed CPU backend; the page says whether the fastest variant beats compiled bf16."""
    import importlib.util

    variants = ["fp32", *(["openvino:fp32"] if importlib.util.find_spec("openvino") else [])]
    out = tmp_path / "bench-compiled"
    assert main(["bench", "tiny-dit", "--out", str(out), "--batches", "1", "--repeats", "1", "--steps", "6",
                 "--caches", "none", "tcpade-fast", "--peers", "--precisions", *variants,
                 "--compiled", "fp32", "bf16"]) == 0
    results = json.loads((out / "bench.json").read_text())
    cells = {(r["backend"], r["precision"], r["cache"]): r for r in results["runs"]}
    assert cells["torch.compile", "fp32", "none"]["psnr_vs_reference_db"] > 60  # the same numbers, compiled
    assert 20 < cells["torch.compile", "bf16", "none"]["psnr_vs_reference_db"] < 100  # bf16 differs a little
    assert cells["torch.compile", "bf16", "tcpade-fast"]["full_steps"] < 6  # caching composes with compilation
    if len(variants) > 1:
        assert cells["openvino", "fp32", "none"]["psnr_vs_reference_db"] > 60
    assert "torch.compile bf16" in (out / "bench.md").read_text()


def test_bench_on_engine_folders_alone_uses_the_fp32_folder_as_reference(tmp_path, fp32_folders, capsys):
    out = tmp_path / "bench-folders"
    assert main(["bench", "--engines", str(fp32_folders["tiny-flux"]), "--out", str(out), "--batches", "1", "2",
                 "--repeats", "1", "--steps", "6", "--caches", "none", "tcpade-fast"]) == 0
    results = json.loads((out / "bench.json").read_text())
    assert results["reference"] == "onnxruntime FP32 uncached" and {r["backend"] for r in results["runs"]} == {
        "onnxruntime"}
    assert all(r["speedup_vs_reference"] is None for r in results["runs"])
    printed = capsys.readouterr().out
    assert "no eager torch backend" in printed and "Orthogonal" not in printed


def test_bench_refuses_a_model_and_folders_together(tmp_path, capsys):
    assert main(["bench", "tiny-dit", "--engines", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "either a MODEL or --engines" in capsys.readouterr().err


def test_the_results_page_says_where_the_cpu_targets_hold_and_where_not():
    """Both references per batch, and a verdict per target computed from the same latencies."""
    from tcpade_trt.bench.runner import markdown

    def run(backend, precision, cache, batch, latency):
        return {"backend": backend, "precision": precision, "cache": cache, "batch": batch, "full_steps": 7,
                "latency_per_image_s": latency, "throughput_img_s": 1 / latency, "speedup": 1.0,
                "speedup_vs_reference": 1.0, "psnr_db": 40.0, "psnr_vs_reference_db": 40.0, "ssim": 0.99,
                "ssim_vs_reference": 0.99, "peak_mem_mb": 1.0}

    runs = []
    for batch, int8_fast in ((1, 0.2), (2, 0.3)):  # torch 1.2 s, ORT FP32 1.0 s uncached per image
        runs += [run("torch", "fp32", "none", batch, 1.2), run("onnxruntime", "fp32", "none", batch, 1.0),
                 run("onnxruntime", "int8", "none", batch, 0.5), run("onnxruntime", "fp32", "tcpade-fast", batch, 0.4),
                 run("onnxruntime", "int8", "tcpade-fast", batch, int8_fast)]
    page = markdown({"batches": [1, 2], "steps": 20, "repeats": 1, "runs": runs,
                     "machine": {"cpu": "test CPU", "cores": 2, "torch": "x"}})
    assert "| 1 | onnxruntime FP32 uncached | 2.00x | 2.50x | 5.00x | 40.00 dB |" in page
    assert "| 2 | eager torch FP32 uncached | 2.40x | 3.00x | 4.00x | 40.00 dB |" in page
    assert "than onnxruntime FP32 uncached: not met at batch 2 (3.33x); 3.33-5.00x over batches 1, 2." in page
    assert "than eager torch FP32 uncached: not met at batch 2 (4.00x); 4.00-6.00x over batches 1, 2." in page


def test_a_peer_knob_that_does_not_exist_is_one_sentence_before_any_run():
    import pytest

    model = tiny_model("tiny-flux")
    with pytest.raises(ValueError, match="diffusers-fbcache has no knob interval; its knobs are threshold"):
        run_peer(model, "diffusers-fbcache", None, None, 20, interval=3)
    with pytest.raises(ValueError, match="mode 'ff' is not one of attention, attention\\+ff, output"):
        run_peer(model, "diffusers-taylorseer", None, None, 20, mode="ff")
