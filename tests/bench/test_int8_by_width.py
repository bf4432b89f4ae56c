"""The scripts behind choosing the demo model's width (INT8 gain by width, speed of a wider model) run."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "int8_by_width.py"


def test_it_times_fp32_and_int8_blocks_of_a_given_width(tmp_path):
    spec = importlib.util.spec_from_file_location("int8_by_width", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fp32_ms, int8_ms = module.time_width(32, tokens=16, folder=tmp_path, runs=3)
    assert fp32_ms > 0 and int8_ms > 0
    assert {p.name for p in tmp_path.iterdir()} == {"block32.onnx", "block32-int8.onnx"}


def test_the_width_projection_builds_and_times_a_narrow_model(tmp_path):
    spec = importlib.util.spec_from_file_location("width_projection", SCRIPT.with_name("width_projection.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folders = module.build_folders(heads=1, root=tmp_path, batch_max=1)
    [row] = module.time_batches(*folders, batches=[1], repeats=1, steps=4)
    assert row["batch"] == 1 and row["int8_gain"] > 0 and row["vs_fp32"] > 0 and row["vs_torch"] > 0
