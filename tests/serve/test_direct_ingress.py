"""`tcpade-trt serve --direct-ingress`: the replica answers on its own port as well as through the proxy.

Run as a user would: the command in its own process (it starts Ray with direct ingress turned on), then
requests to the printed replica URL and to --port, then Ctrl-C."""

import signal
import subprocess
import sys
import time

import pytest

from tcpade_trt.cli import main

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'tcpade-trt[serve]')")

from .test_http import call, free_port  # noqa: E402


def post(url, body: bytes):
    status, _, answer = call(url, raw=body, key=None)  # no API key: the server is on loopback without one
    return status, answer


def wait_for_line(process, prefix: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and process.poll() is not None:
            break
    pytest.fail(f"`tcpade-trt serve` printed no line starting {prefix!r} (exit code {process.poll()})")


def test_the_replica_answers_on_its_own_port_with_the_proxys_images(fp32_folders):
    port, direct = free_port(), free_port()
    command = [sys.executable, "-m", "tcpade_trt.cli", "serve", "--engines", str(fp32_folders["tiny-dit"]),
               "--device", "cpu", "--port", str(port), "--direct-ingress", "--direct-port", str(direct)]
    # the server as a user's terminal starts it: a suite run in the background (nohup, `&`) ignores SIGINT, and a
    # child inherits that, so Ctrl-C below would never arrive (the hang this test once showed only there)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = wait_for_line(process, "direct ingress", timeout_s=300)
        assert f"http://127.0.0.1:{direct}" in line

        body = b'{"class": 3, "seed": 5, "steps": 8, "cache": "tcpade-fast"}'
        status, through_replica = post(f"http://127.0.0.1:{direct}/v1/generate", body)
        assert status == 200 and through_replica.startswith(b"\x89PNG")
        assert post(f"http://127.0.0.1:{port}/v1/generate", body) == (200, through_replica)
        status, answer = post(f"http://127.0.0.1:{direct}/v1/generate", b'{"class": 3, "steps": 1000}')
        assert status == 400 and b"steps must be" in answer  # the same checks, one sentence
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 130  # Ctrl-C: the command line's interrupted exit, not a crash


def test_a_direct_port_outside_the_range_is_one_sentence(fp32_folders, capsys):
    assert main(["serve", "--engines", str(fp32_folders["tiny-dit"]), "--direct-ingress", "--direct-port", "80"]) == 2
    assert "--direct-port 80 is outside 1024-65534" in capsys.readouterr().err
