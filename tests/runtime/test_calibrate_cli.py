"""`tcpade-trt calibrate`: schedules chosen for one model, kept in its engine folder or a file, and used."""

import json
import shutil

import pytest

from tcpade_trt.cli import main
from tcpade_trt.engines.manifest import read_manifest
from tcpade_trt.runtime.runtime import Runtime


def test_an_engine_folder_keeps_its_calibration_and_the_runtime_uses_it(fp32_folders, tmp_path, capsys):
    folder = tmp_path / "flux"
    shutil.copytree(fp32_folders["tiny-flux"], folder)  # the shared folder stays as built
    assert main(["calibrate", str(folder), "--steps", "10", "--budget", "0.4", "--runs", "2",
                 "--validation-seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "| 10 | 0.4 | 4 |" in out and "stored in" in out
    manifest = read_manifest(folder)  # still a valid folder: every hash matches
    ((steps, budget, full),) = manifest.calibrated_schedules()
    assert (steps, budget, len(full), full[0], full[-1]) == (10, 0.4, 4, 0, 9)
    runtime = Runtime(folder)
    policy = runtime.make_policy("tcpade-fast:budget=0.4")
    policy.reset(10)
    assert policy.anchors == frozenset(full)
    formula = runtime.make_policy("tcpade-fast:budget=0.4,calibration=false")
    formula.reset(10)
    assert formula.anchors == {0, 2, 7, 9}  # the formula: what a folder without calibration runs


def test_a_torch_model_writes_a_file_that_apply_cache_reads(tmp_path, capsys):
    from tcpade_trt.cache.calibrate import load_calibration

    out = tmp_path / "tiny.json"
    assert main(["calibrate", "tiny-dit", "--steps", "8", "--budget", "0.5", "--runs", "2",
                 "--validation-seeds", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["seeds"] == {"calibration": [100, 101], "validation": [200, 200]}
    (row,) = data["validation"]
    assert row["kept"] in ("calibrated", "formula") and len(load_calibration(out)[0][2]) == 4


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-wan"])
def test_every_family_calibrates(name, tmp_path):
    """FLUX (flow matching) and Wan (video, guidance) too; DiT above, the demo models in tests/demo."""
    from tcpade_trt.cache.calibrate import load_calibration

    out = tmp_path / f"{name}.json"
    assert main(["calibrate", name, "--steps", "6", "--budget", "0.5", "--runs", "1", "--validation-seeds", "1",
                 "--out", str(out)]) == 0
    ((steps, budget, full),) = load_calibration(out)
    assert (steps, budget, len(full), full[0], full[-1]) == (6, 0.5, 3, 0, 5)


@pytest.mark.parametrize("argv,message", [
    (["calibrate", "tiny-flux"], "pass --out FILE.json"),
    (["calibrate", "tiny-flux", "--budget", "0", "--out", "x.json"], r"--budget takes shares of full steps in"),
    (["calibrate", "tiny-flux", "--out", "x.txt"], "--out names the calibration file"),
    (["calibrate", "tiny-flux", "--steps", "20", "1", "--out", "x.json"], "--steps takes step counts of 2 or more"),
])
def test_wrong_requests_are_one_sentence(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    import re

    assert re.search(message, err), err


def test_a_guided_dit_folder_calibrates_with_the_default_runs_and_refuses_runs_beyond_its_batch(
        fp32_folders, tmp_path, capsys):
    """tiny-dit holds 4 rows per call and each guided run takes 2: the default 4 runs (one batch of 8 rows) failed
    after loading; now the default is what fits (2), and asking for more is one sentence up front."""
    folder = tmp_path / "dit"
    shutil.copytree(fp32_folders["tiny-dit"], folder)
    assert main(["calibrate", str(folder), "--runs", "3", "--steps", "6"]) == 2
    assert "--runs 3 does not fit" in capsys.readouterr().err
    assert main(["calibrate", str(folder), "--steps", "6", "--budget", "0.5"]) == 0
    assert read_manifest(folder).calibration["seeds"]["calibration"] == [100, 101]


def test_an_unwritable_folder_is_refused_before_the_runs(fp32_folders, tmp_path, capsys, monkeypatch):
    from tcpade_trt import paths
    from tcpade_trt.runtime import schedule_calibration as schedules

    folder = tmp_path / "flux"
    shutil.copytree(fp32_folders["tiny-flux"], folder)
    monkeypatch.setattr(paths, "_can_create_in", lambda where: False)  # a read-only mount (root ignores chmod)
    monkeypatch.setattr(schedules, "calibrate", lambda *a, **k: pytest.fail("the runs started"))
    assert main(["calibrate", str(folder), "--steps", "6", "--runs", "1"]) == 2
    assert "manifest.json cannot be written" in capsys.readouterr().err


def test_a_folder_rebuilt_while_calibrating_keeps_the_new_build_untouched(fp32_folders, tmp_path, capsys,
                                                                          monkeypatch):
    """`build --out` replacing the folder during the runs: the schedules were measured on the old engines, so
    they are not written into the new folder's manifest."""
    from tcpade_trt.runtime import schedule_calibration as schedules

    folder = tmp_path / "flux"
    shutil.copytree(fp32_folders["tiny-flux"], folder)
    real = schedules.calibrate

    def rebuilt_meanwhile(*args, **kwargs):
        result = real(*args, **kwargs)
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["created"] = "rebuilt"
        (folder / "manifest.json").write_text(json.dumps(manifest))
        return result

    monkeypatch.setattr(schedules, "calibrate", rebuilt_meanwhile)
    assert main(["calibrate", str(folder), "--steps", "6", "--budget", "0.5", "--runs", "1",
                 "--validation-seeds", "1"]) == 2
    assert "changed while calibrating" in capsys.readouterr().err
    assert json.loads((folder / "manifest.json").read_text())["calibration"] == {}
