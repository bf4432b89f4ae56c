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
    assert main(["bench", "--out", str(out), "--batches", "1", "2", "--repeats", "1", "--steps", "6",
                 "--caches", "none", "tcpade-fast", "--peers", "diffusers-fbcache", "--precisions", "int8",
                 "--markdown", str(tmp_path / "benchmarks.md")]) == 0
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
    noise = initial_noise(model, model.geometry(1, 8, 8).shape, [0])
    reference = sample(model, cond, noise, num_steps=20)
    for peer in PEERS:
        result = run_peer(model, peer, cond, noise, 20)
        assert 0 < result.full_steps < 20, peer
        assert torch.isfinite(result.latents).all()
    assert torch.equal(sample(model, cond, noise, num_steps=20).latents, reference.latents)
