"""`tcpade-trt inspect DIR --profile`: where an engine's time goes, by operator type."""

import pytest

from tcpade_trt.cli import main
from tcpade_trt.engines.onnxruntime.profile import profile_part
from tcpade_trt.errors import ConfigError


def test_the_block_stack_profile_names_its_matmuls_and_sums_to_one(fp32_folders):
    shares = profile_part(fp32_folders["tiny-flux"], "blocks", batch=2, runs=3, warmup=1)
    ops = [op for op, _, _ in shares]
    assert any("MatMul" in op for op in ops)
    assert abs(sum(share for _, share, _ in shares) - 1) < 1e-6
    assert all(ms >= 0 for _, _, ms in shares) and shares == sorted(shares, key=lambda s: -s[1])


def test_inspect_prints_the_profile_and_names_a_missing_part(fp32_folders, capsys):
    assert main(["inspect", str(fp32_folders["tiny-dit"]), "--profile", "tail", "--batch", "1"]) == 0
    assert "profile    tail:" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="has no 'prepare' part"):
        profile_part(fp32_folders["tiny-dit"], "prepare")
