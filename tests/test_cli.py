"""The console script: help, version, and one-sentence errors instead of tracebacks."""

import subprocess
import sys

import tcpade_trt
from tcpade_trt.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tcpade_trt.cli", *args], capture_output=True, text=True)


def test_version_and_help(capsys):
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"tcpade-trt {tcpade_trt.__version__}"
    assert main([]) == 2  # nothing asked is not a success
    printed = capsys.readouterr()
    assert "demo" in printed.err and printed.out == ""


def test_user_mistake_is_one_sentence_and_exit_2():
    out = run_cli("sample", "someone/some-model")
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert "never downloads" in out.stderr


def test_import_pulls_no_gpu_only_package():
    code = ("import sys, tcpade_trt, tcpade_trt.models, tcpade_trt.cache, tcpade_trt.runtime.sampler; "
            "bad = [m for m in ('tensorrt', 'polygraphy', 'modelopt', 'cuda') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sample_command_runs_end_to_end(capsys):
    assert main(["sample", "tiny-dit", "--steps", "4", "--height", "8", "--width", "8"]) == 0
    out = capsys.readouterr().out
    assert "full steps 4/4" in out and "0.00e+00" in out


def test_a_reader_that_leaves_early_gets_no_traceback(fp32_folders, monkeypatch, capsys):
    """`tcpade-trt inspect FOLDER | head -2`: the pipe closes under the writer; the command ends quietly with the
    status a shell reports for SIGPIPE, not with a BrokenPipeError traceback."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    stdout = open(write_end, "w", buffering=1)  # line-buffered: the first print reaches the pipe
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(["inspect", str(fp32_folders["tiny-dit"])]) == 141
    finally:
        stdout.close()
    assert "Traceback" not in capsys.readouterr().err
