"""The Triton model repository: requests judged like the HTTP server's, and a real tritonserver (the one
nvidia-pytriton bundles, unpacked by `make test`) serving an engine folder with dynamic batching."""

import ctypes.util
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import torch

from tcpade_trt.cli import main
from tcpade_trt.serve.request import GenerateRequest, RequestError
from tcpade_trt.serve.triton_model import request_body
from tcpade_trt.serve.triton_repo import find_tritonserver, tritonserver_command, write_repository


def text(value: str) -> torch.Tensor:
    return torch.tensor([list(value.encode())], dtype=torch.uint8)  # [1, n]


def test_request_tensors_become_the_http_servers_fields():
    tensors = {"class": torch.tensor([[3]]), "seed": torch.tensor([[7]]),
               "steps": torch.tensor([[6]], dtype=torch.int32), "guidance_scale": torch.tensor([[4.0]]),
               "cache": text("tcpade-fast"), "prompt": text("a red fox")}
    assert request_body(tensors) == {"class": 3, "seed": 7, "steps": 6, "guidance_scale": 4.0, "cache": "tcpade-fast",
                                     "prompt": "a red fox"}


@pytest.mark.parametrize("tensors,message", [
    ({"class": torch.tensor([[1], [2]])}, "send one image per request"),
    ({"prompt": torch.tensor([[255, 254]], dtype=torch.uint8)}, "prompt must be UTF-8 text"),
    ({"seed": torch.tensor([[1, 2]])}, "seed must hold one number"),
])
def test_bad_request_tensors_are_one_sentence(tensors, message):
    with pytest.raises(RequestError, match=message):
        request_body(tensors)


def test_the_repository_takes_the_folders_batch_range_and_never_overwrites(fp32_folders, tmp_path, capsys):
    repo = write_repository(fp32_folders["tiny-dit"], tmp_path / "repo", batch_wait_ms=5)
    config = (repo / "tcpade" / "config.pbtxt").read_text()
    assert "max_batch_size: 4" in config and "max_queue_delay_microseconds: 5000" in config
    assert str(fp32_folders["tiny-dit"].resolve()) in config
    assert main(["triton-repo", "--engines", str(fp32_folders["tiny-dit"]), "--out", str(repo)]) == 2
    assert "exists; give a new folder" in capsys.readouterr().err
    assert main(["triton-repo", "--engines", str(fp32_folders["tiny-flux"]), "--out", str(tmp_path / "f")]) == 2
    assert "conditioned by text: add --pipeline DIR" in capsys.readouterr().err and not (tmp_path / "f").exists()


BINARY = find_tritonserver()
STUB_PYTHON = ctypes.util.find_library(f"python{sys.version_info.major}.{sys.version_info.minor}")
needs_triton = pytest.mark.skipif(BINARY is None or STUB_PYTHON is None, reason=(
    "no tritonserver (make test unpacks the one nvidia-pytriton bundles: scripts/fetch_tritonserver.py)"
    if BINARY is None else "Triton's Python stub needs the shared libpython of this Python version"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GRPC: dict = {}  # the module's server's gRPC port


@pytest.fixture(scope="module")
def triton(fp32_folders, tmp_path_factory):
    """tritonserver serving tiny-dit (class-conditional, CFG) from a repository `triton-repo` wrote (its HTTP URL;
    gRPC on GRPC["port"])."""
    repo = write_repository(fp32_folders["tiny-dit"], tmp_path_factory.mktemp("triton") / "repo", device="cpu",
                            max_steps=12, batch_wait_ms=300)
    port = free_port()
    GRPC["port"] = free_port()
    log = open(repo.parent / "tritonserver.log", "w")
    server = subprocess.Popen(tritonserver_command(BINARY, repo, port, GRPC["port"], metrics=False), stdout=log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2).status == 200:
                    break
            except OSError:
                assert server.poll() is None, (repo.parent / "tritonserver.log").read_text()[-3000:]
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def infer(url, inputs: dict):
    """POST /v2/models/tcpade/infer with JSON tensors -> (status, {output: list} or {"error": ...})."""
    body = {"inputs": [{"name": name, "shape": [1, len(values)], "datatype": dtype, "data": values}
                       for name, (dtype, values) in inputs.items()]}
    request = urllib.request.Request(f"{url}/v2/models/tcpade/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, {o["name"]: o["data"] for o in json.loads(r.read())["outputs"]}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def dit_inputs(label, seed):
    return {"class": ("INT64", [label]), "seed": ("INT64", [seed]), "steps": ("INT32", [6]),
            "guidance_scale": ("FP32", [4.0]), "cache": ("UINT8", list(b"tcpade-fast"))}


@needs_triton
def test_triton_batches_requests_and_each_gets_the_image_it_gets_alone(triton, fp32_folders):
    from tcpade_trt.serve.worker import Generator

    answers = [None] * 3

    def send(i):
        answers[i] = infer(triton, dit_inputs(i + 1, 30 + i))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(status == 200 for status, _ in answers), answers
    alone = Generator(fp32_folders["tiny-dit"], device="cpu").generate(
        [GenerateRequest(i + 1, 30 + i, 6, "tcpade-fast", 4.0, "png") for i in range(3)])
    for (_, outputs), own in zip(answers, alone):
        assert bytes(outputs["image"]) == own.image  # the same PNG
        assert outputs["full_steps"][0] + outputs["predicted_steps"][0] == 6


@needs_triton
def test_a_bad_request_is_one_sentence_and_the_model_keeps_serving(triton):
    status, answer = infer(triton, {**dit_inputs(1, 1), "class": ("INT64", [5000])})
    assert status == 400 and "class must be an index from 0 to" in answer["error"]
    status, answer = infer(triton, {**dit_inputs(1, 1), "steps": ("INT32", [50])})
    assert status == 400 and "steps must be a whole number from 2 to 12" in answer["error"]
    status, answer = infer(triton, {})  # no input to read the batch size from: Triton's own refusal, not a crash
    assert status == 400 and answer["error"]
    assert infer(triton, dit_inputs(2, 2))[0] == 200


@needs_triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_nvidias_own_client_calls_the_model_over_http_and_grpc(triton, fp32_folders, protocol):
    """tritonclient, as Triton's users call it: the image of a request is the HTTP server's for the same fields,
    and a bad one raises the client's InferenceServerException with the server's sentence."""
    import numpy as np

    client_module = pytest.importorskip(f"tritonclient.{protocol}",
                                        reason="tritonclient is not installed (pip install -e '.[dev]')")
    from tritonclient.utils import InferenceServerException

    from tcpade_trt.serve.worker import Generator

    url = triton.removeprefix("http://") if protocol == "http" else f"127.0.0.1:{GRPC['port']}"
    client = client_module.InferenceServerClient(url)
    assert client.is_server_ready() and client.is_model_ready("tcpade")

    def tensors(**fields):
        made = []
        for name, (dtype, value) in fields.items():
            array = np.asarray([value], dtype={"INT64": np.int64, "INT32": np.int32, "FP32": np.float32,
                                               "UINT8": np.uint8}[dtype]).reshape(1, -1)
            made.append(client_module.InferInput(name, list(array.shape), dtype))
            made[-1].set_data_from_numpy(array)
        return made

    result = client.infer("tcpade", tensors(**{"class": ("INT64", 2), "seed": ("INT64", 9), "steps": ("INT32", 6),
                                               "guidance_scale": ("FP32", 4.0),
                                               "cache": ("UINT8", list(b"tcpade-fast"))}))
    image = result.as_numpy("image").tobytes()
    own = Generator(fp32_folders["tiny-dit"], device="cpu").generate(
        [GenerateRequest(2, 9, 6, "tcpade-fast", 4.0, "png")])[0]
    assert image == own.image and int(result.as_numpy("full_steps")[0, 0]) == own.full_steps
    with pytest.raises(InferenceServerException, match="class must be an index from 0 to"):
        client.infer("tcpade", tensors(**{"class": ("INT64", 5000)}))
    assert client.is_model_ready("tcpade")
