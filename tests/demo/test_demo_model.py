"""The shipped demo model has learned its classes, and the demo produces its table, JSON and pictures."""

import json

import pytest
import torch

from research.class_fidelity import class_references, nearest_class
from tcpade_trt.models.demo import CLASSES, latents_to_images, load_demo_model, weights_path
from tcpade_trt.runtime.images import to_unit
from tcpade_trt.runtime.sampler import initial_noise, sample

pytestmark = pytest.mark.skipif(not weights_path().is_file(), reason="the demo weights are not in this checkout")


def test_samples_are_recognisably_their_own_class():
    """At least 80% of 20-step samples are closest, in colour histogram, to their own class's crops."""
    model = load_demo_model()
    per_class = 4
    labels = torch.arange(len(CLASSES)).repeat_interleave(per_class)  # 32 samples, every class
    noise = initial_noise(model, model.geometry_for(len(labels)).shape, list(range(100, 100 + len(labels))))
    with torch.no_grad():
        result = sample(model, model.class_cond(labels), noise, num_steps=20)
    images = to_unit(latents_to_images(result.latents))
    predicted = nearest_class(images, class_references())
    accuracy = (predicted == labels).float().mean().item()
    assert accuracy >= 0.8, f"only {accuracy:.0%} of samples match their class"


def test_demo_writes_table_json_and_pictures(tmp_path, capsys):
    from tcpade_trt.cli import main

    out = tmp_path / "demo-out"
    code = main(["demo", "--out", str(out), "--seeds", "2", "--repeats", "1", "--steps", "6",
                 "--caches", "none", "tcpade-fast", "reuse"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "tcpade-fast" in printed and "onnxruntime" in printed and "machine:" in printed
    results = json.loads((out / "results.json").read_text())
    keys = {"backend", "precision", "cache", "steps", "full_steps", "latency_s", "speedup", "psnr_db", "ssim"}
    assert len(results["runs"]) == 3 * 3  # torch fp32, onnxruntime fp32, onnxruntime int8 x 3 caches
    for run in results["runs"]:
        assert keys <= set(run)
    assert {r["backend"] for r in results["runs"]} == {"torch", "onnxruntime"}
    assert (out / "samples.png").stat().st_size > 1000 and (out / "speed_vs_quality.png").stat().st_size > 1000
    # the demo's engine folder through generate: what the model does not take is refused in one sentence before the
    # work (the demo model was trained without guidance, on classes; both were silently ignored once)
    folder = next((out / "engines").glob("*fp32*"))
    image = tmp_path / "cat.png"
    for extra, words in ((["--guidance-scale", "3"], "takes no guidance"),
                         (["--negative-prompt", "blurry"], "is class-conditional")):
        assert main(["generate", "--engines", str(folder), "--class", CLASSES[0], "--steps", "2", "--out", str(image),
                     *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and not image.exists()
    assert main(["generate", "--engines", str(folder), "--class", CLASSES[0], "--steps", "2", "--out", str(image)]) == 0
    assert image.stat().st_size > 100
