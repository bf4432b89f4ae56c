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
    assert main(["serve", "--engines", str(fp32_folders["tiny-dit"]), "--pipeline", "/tmp"]) == 2
    assert "class-conditional: leave out --pipeline" in capsys.readouterr().err


def test_a_pipeline_that_is_not_a_pipeline_folder(fp32_folders, tmp_path, capsys):
    assert main(["serve", "--engines", str(fp32_folders["tiny-flux"]), "--pipeline", str(tmp_path)]) == 2
    assert "is not a diffusers pipeline folder (no model_index.json)" in capsys.readouterr().err
