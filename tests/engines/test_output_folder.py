"""Where a build may write: what it may replace, and what killed builds leave behind (and who removes it)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcpade_trt.builder.output_folder import (
    MARKER,
    building_folder,
    check_destination,
    foreign_files,
    remove_stale_builds,
)
from tcpade_trt.errors import ConfigError


def fake_engine_folder(path, extra=()):
    """A folder shaped like one this tool writes: a manifest that lists its files."""
    path.mkdir(parents=True)
    (path / "blocks.onnx").write_bytes(b"x")
    manifest = {"format": "tcpade-trt-engines", "format_version": 3, "parts": {"blocks": {"file": "blocks.onnx"}},
                "extras": {}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    for name in extra:
        (path / name).write_text("mine")
    return path


def test_what_a_build_may_replace(tmp_path):
    assert foreign_files(fake_engine_folder(tmp_path / "engines")) is None
    (tmp_path / "empty").mkdir()
    assert foreign_files(tmp_path / "empty") is None
    extra = fake_engine_folder(tmp_path / "with-notes", extra=["notes.txt"])
    assert "notes.txt" in foreign_files(extra)
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"format": "someone-else"}')
    assert "not a tcpade-trt manifest" in foreign_files(other)
    for ok in ("engines", "empty", "new"):
        check_destination(tmp_path / ok)
    with pytest.raises(ConfigError, match="holds files its manifest does not list: notes.txt"):
        check_destination(extra)
    check_destination(extra, force=True)  # asked for explicitly


def test_force_never_replaces_the_model_or_what_holds_it(tmp_path):
    model = tmp_path / "models" / "flux"
    (model / "transformer").mkdir(parents=True)
    for out in (model, model / "transformer", tmp_path / "models"):
        with pytest.raises(ConfigError, match="would replace the source model's files"):
            check_destination(out, model_path=model, force=True)
    check_destination(model / "engines", model_path=model)  # a new folder inside it is fine


def test_a_finished_build_replaces_the_old_folder_and_leaves_no_marker(tmp_path):
    out = fake_engine_folder(tmp_path / "engines")
    with building_folder(out) as tmp:
        assert (tmp / MARKER).is_file()
        (tmp / "manifest.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engines"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftover(parent, out, pid, kind="building", tag="deadbeef"):
    folder = parent / f".{out.name}.{kind}-{tag}"
    folder.mkdir()
    (folder / "blocks.onnx").write_bytes(b"gigabytes")
    (folder / MARKER).write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "out": str(out.resolve())}))
    return folder


def test_stale_folders_are_removed_by_their_marker_never_by_name(tmp_path, caplog):
    out = tmp_path / "engines"
    dead = _leftover(tmp_path, out, _dead_pid())
    replaced = _leftover(tmp_path, out, _dead_pid(), kind="old")
    running = _leftover(tmp_path, out, os.getpid(), tag="0feed000")  # a build still in progress
    unmarked = tmp_path / f".{out.name}.building-cafe0000"  # named like ours, but not made by us
    unmarked.mkdir()
    elsewhere = _leftover(tmp_path, tmp_path / "other", _dead_pid())
    with caplog.at_level("WARNING", logger="tcpade_trt"):
        removed = remove_stale_builds(out)
    assert sorted(removed) == sorted([dead, replaced])
    assert running.exists() and unmarked.exists() and elsewhere.exists()
    assert "left by a build to" in caplog.text and "that was killed" in caplog.text


@pytest.mark.parametrize("name", ["eng[1]", "v[ab]"])
def test_a_name_with_glob_characters_is_a_name(tmp_path, name):
    """`--out 'eng[1]'`: the pattern [1] matches "eng1", never "eng[1]", so its leftovers were never removed."""
    out = tmp_path / name
    dead = _leftover(tmp_path, out, _dead_pid())
    assert remove_stale_builds(out) == [dead] and not dead.exists()


def test_a_killed_manifest_rewrite_leaves_an_engine_folder_a_build_may_replace(fp32_folders, tmp_path):
    """`calibrate` killed while rewriting the manifest leaves .manifest.partial-XXXXXXXX.json (paths.atomic_path):
    ours, so the next build may still replace the folder."""
    import shutil

    folder = tmp_path / "engines"
    shutil.copytree(fp32_folders["tiny-dit"], folder)
    (folder / ".manifest.partial-1234abcd.json").write_text("{")
    assert foreign_files(folder) is None
    (folder / "holiday.jpg").write_text("a user's")
    assert "holiday.jpg" in foreign_files(folder)


def test_a_mount_point_is_refused_before_the_build(tmp_path):
    with pytest.raises(ConfigError, match="is a mount point"):
        check_destination(Path("/proc"), force=True)  # the finished build's rename would fail there


def _start_build(tmp_path, out):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tcpade_trt.cli", "build", "tiny-dit", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until it is writing engine files into its temporary folder
        if any(tmp.glob("*.onnx") for tmp in tmp_path.glob(f".{out.name}.building-*")):
            return proc
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the build did not start writing engines in 120 s")


@pytest.mark.slow
def test_sigterm_stops_a_build_like_ctrl_c(tmp_path):
    out = tmp_path / "engines"
    proc = _start_build(tmp_path, out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "terminated" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither the engine folder nor its temporary folder


@pytest.mark.slow
def test_a_killed_build_is_cleaned_up_by_the_next_build_to_the_same_folder(tmp_path, caplog):
    out = tmp_path / "engines"
    proc = _start_build(tmp_path, out)
    proc.send_signal(signal.SIGKILL)  # no handler runs: the temporary folder stays
    proc.communicate(timeout=60)
    left = list(tmp_path.glob(f".{out.name}.building-*"))
    assert len(left) == 1 and (left[0] / MARKER).is_file()
    with caplog.at_level("WARNING", logger="tcpade_trt"), building_folder(out) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not left[0].exists() and "was killed" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engines"]
