"""`tcpade-trt serve` refuses to expose an unauthenticated server before starting anything."""

import pytest

from tcpade_trt.cli import main
from tcpade_trt.cli.serve import is_loopback


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.com")


def test_another_address_needs_a_key_or_an_explicit_opt_out(fp32_folders, monkeypatch, capsys):
    monkeypatch.delenv("TCPADE_API_KEY", raising=False)
    assert main(["serve", "--engines", str(fp32_folders["tiny-dit"]), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "set TCPADE_API_KEY" in err and "--insecure-no-auth" in err and err.count("\n") == 1


def test_a_key_anyone_could_guess_is_refused_before_ray_starts(fp32_folders, monkeypatch, capsys):
    monkeypatch.setenv("TCPADE_API_KEY", "x")
    assert main(["serve", "--engines", str(fp32_folders["tiny-dit"]), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "TCPADE_API_KEY has 1 character(s); an API key needs at least 16" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,message", [
    (["serve"], "the following arguments are required: --engines"),
    (["serve", "--engines", "/nonexistent"], "is not an engine folder"),
])
def test_wrong_invocations_are_one_sentence(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_text_folder_without_its_pipeline_is_one_sentence_before_ray_starts(fp32_folders, capsys):
    assert main(["serve", "--engines", str(fp32_folders["tiny-flux"])]) == 2
    assert "conditioned by text: add --pipeline DIR" in capsys.readouterr().err
    assert main(["serve", "--engines", str(fp32_folders["tiny-dit"]), "--pipeline", "/tmp"]) == 2  # DiT: its VAE
    assert "/tmp is not a diffusers pipeline folder" in capsys.readouterr().err


def test_a_pipeline_that_is_not_a_pipeline_folder(fp32_folders, tmp_path, capsys):
    assert main(["serve", "--engines", str(fp32_folders["tiny-flux"]), "--pipeline", str(tmp_path)]) == 2
    assert "is not a diffusers pipeline folder (no model_index.json)" in capsys.readouterr().err


def test_replicas_ask_ray_for_a_gpu_each_when_the_folder_runs_on_one(fp32_folders, trt_folders, monkeypatch):
    """Ray places a replica on a GPU (its own CUDA_VISIBLE_DEVICES) only when it asks for num_gpus; with none
    asked, every replica of a node loaded onto GPU 0."""
    from tcpade_trt.engines.onnxruntime import sessions as ort_backend
    from tcpade_trt.serve.app import build_app

    def gpus(folder, **args):
        app = build_app({"folder": str(folder), **args})
        return app._bound_deployment.ray_actor_options["num_gpus"]

    assert gpus(trt_folders["tiny-dit"]) == 1  # TensorRT plans run on a GPU
    assert gpus(trt_folders["tiny-dit"], gpus_per_replica=0.5) == 0.5  # two replicas share one
    assert gpus(fp32_folders["tiny-dit"], device="cpu") == 0
    assert gpus(fp32_folders["tiny-dit"], device="cuda") == 1
    monkeypatch.setattr(ort_backend, "available_providers", lambda: ["CPUExecutionProvider"])
    assert gpus(fp32_folders["tiny-dit"]) == 0  # auto, CPU onnxruntime
    monkeypatch.setattr(ort_backend, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert gpus(fp32_folders["tiny-dit"]) == 1  # auto, onnxruntime-gpu


def test_a_port_out_of_range_or_in_use_is_one_sentence_before_ray_starts(fp32_folders, capsys):
    import socket

    folder = str(fp32_folders["tiny-dit"])
    assert main(["serve", "--engines", folder, "--port", "70000"]) == 2
    assert "must be a TCP port from 1 to 65535" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--engines", folder, "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "the port is in use" in err and err.count("\n") == 1
    assert main(["serve", "--engines", folder, "--host", "192.0.2.123", "--insecure-no-auth"]) == 2  # not ours
    assert "check --host and --port" in capsys.readouterr().err
    assert main(["serve", "--engines", folder, "--batch-wait-ms", "-5"]) == 2
    assert "--batch-wait-ms must be 0 or more" in capsys.readouterr().err
