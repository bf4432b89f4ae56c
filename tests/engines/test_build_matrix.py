"""Every family x backend x precision the README lists builds, passes its checks and generates: onnxruntime
FP32 / INT8 (dynamic, static) / FP8, and TensorRT FP32 / BF16 / FP16 / INT8 / FP8 through the TensorRT stand-in
on the emulated GPU (plans built, checked against torch, then run). What the README does not list is refused
before any work, with a sentence."""

import onnx
import pytest
import torch

from tcpade_trt.builder import BuildOptions, build_engines
from tcpade_trt.errors import ConfigError
from tcpade_trt.runtime.runtime import Runtime

from ..conftest import SHAPES
from ..fake_tensorrt import install
from ..runtime.test_engine_runtime import inputs

pytestmark = pytest.mark.slow
FAMILIES = list(SHAPES)  # tiny-flux, tiny-wan, tiny-dit, tiny-sd3
GUIDANCE = {"tiny-flux": None, "tiny-wan": 5.0, "tiny-dit": 4.0, "tiny-sd3": 7.0}
CALIBRATION = dict(calibration_samples=1, calibration_steps=3)  # seconds, not minutes: what is tested is the path


def matmul_output_types(model: onnx.ModelProto) -> set[int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    return {types.get(n.output[0]) for n in inferred.graph.node if n.op_type == "MatMul"}


def generates(folder, name):
    _, cond, noise = inputs(name, batch=1)
    result = Runtime(folder).generate(cond, noise, cache="tcpade-fast", steps=4, guidance_scale=GUIDANCE[name])
    assert torch.isfinite(result.latents.cpu()).all()


@pytest.mark.parametrize("precision,mode", [("int8", "dynamic"), ("int8", "static"), ("fp8", "dynamic")],
                         ids=["int8-dynamic", "int8-static", "fp8"])
@pytest.mark.parametrize("name", FAMILIES)
def test_onnxruntime(name, precision, mode, fp32_folders, tmp_path):
    options = BuildOptions(precision=precision, int8_mode=mode, shape=SHAPES[name],
                           reuse_onnx_from=fp32_folders[name], **CALIBRATION)
    manifest = build_engines(name, tmp_path / "q", options, progress=False)
    assert manifest.parts["blocks"].precision == precision and manifest.parts["blocks"].check_error is not None
    generates(tmp_path / "q", name)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "int8", "fp8"])
@pytest.mark.parametrize("name", FAMILIES)
def test_tensorrt(name, precision, unfused_folders, tmp_path, monkeypatch):
    trt = install(monkeypatch)  # a GPU is there: the model loads "on it" in the blocks' dtype (builder/device.py)
    reuse = unfused_folders[name] if precision == "fp32" else None  # the fp32 export reused where it is the same
    options = BuildOptions(backend="tensorrt", precision=precision, shape=SHAPES[name], reuse_onnx_from=reuse,
                           **CALIBRATION)
    manifest = build_engines(name, tmp_path / "trt", options, progress=False)
    assert {p.file for p in manifest.parts.values()} == {f"{n}.plan" for n in manifest.parts}
    assert all(p.check_error is not None for p in manifest.parts.values())  # every plan ran against torch
    assert manifest.parts["blocks"].precision == precision
    blocks = onnx.load(str(tmp_path / "trt" / manifest.parts["blocks"].extra_files[0]))
    ops = {n.op_type for n in blocks.graph.node}
    if precision in ("int8", "fp8"):  # standard Q/DQ, no custom (trt::) op left, no onnxruntime kernel
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops and not {"TRT_FP8QuantizeLinear", "FastGelu"} & ops
        # quantized on "the GPU" in bf16: the network between the quantized GEMMs stays bf16 (ModelOpt's INT8 export
        # left every op after the first Q/DQ in fp32 unless told the model's dtype)
        assert matmul_output_types(blocks) == {onnx.TensorProto.BFLOAT16}
    if precision in ("bf16", "fp16"):  # the graph carries its precision (strongly typed)
        half = {"bf16": onnx.TensorProto.BFLOAT16, "fp16": onnx.TensorProto.FLOAT16}[precision]
        assert blocks.graph.input[0].type.tensor_type.elem_type == half
    generates(tmp_path / "trt", name)
    assert trt.plan_launches > 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_on_onnxruntime_is_refused_up_front(precision, tmp_path):
    with pytest.raises(ConfigError, match=f"{precision} blocks need a GPU engine: use --backend tensorrt"):
        build_engines("tiny-dit", tmp_path / "x", BuildOptions(precision=precision, shape=SHAPES["tiny-dit"]),
                      progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_quantized_plan_is_judged_against_what_its_recipe_costs(tmp_path, monkeypatch):
    """INT8 error grows with depth (28 blocks in DiT-XL/2): the plan is allowed what the fake-quantized torch blocks
    differ from the model by, measured on the same inputs, plus a kernel margin; a fixed figure below that cost
    (here zero) would stop every sound build."""
    from tcpade_trt.builder import blocks_stage
    from tcpade_trt.engines.tensorrt import plan_check

    install(monkeypatch)
    monkeypatch.setitem(plan_check.PLAN_TOLERANCE, "int8", 0.0)
    options = BuildOptions(backend="tensorrt", precision="int8", shape=SHAPES["tiny-dit"], **CALIBRATION)
    manifest = build_engines("tiny-dit", tmp_path / "trt", options, progress=False)
    cost = manifest.quantization["quantization_error"]
    assert 0 < cost <= blocks_stage.QUANTIZATION_LIMIT["int8"]
    assert manifest.parts["blocks"].check_error <= cost + blocks_stage.KERNEL_MARGIN


def test_a_recipe_that_costs_too_much_is_refused_in_one_sentence(tmp_path, monkeypatch):
    from tcpade_trt.builder import blocks_stage
    from tcpade_trt.errors import TcpadeError

    install(monkeypatch)
    monkeypatch.setitem(blocks_stage.QUANTIZATION_LIMIT, "int8", 1e-9)
    options = BuildOptions(backend="tensorrt", precision="int8", shape=SHAPES["tiny-dit"], **CALIBRATION)
    with pytest.raises(TcpadeError, match=r"the int8 recipe changes the blocks' output by .* more than the 1e-09 a "
                                          r"usable quantization keeps; build this model at fp8 or bf16 instead\.") as e:
        build_engines("tiny-dit", tmp_path / "trt", options, progress=False)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_the_standin_plan_of_an_int8_recipe_computes_as_written(tmp_path, monkeypatch):
    """The stand-in's plans run Q/DQ as written, as TensorRT does, not through onnxruntime's integer kernels (which
    lose accuracy on AVX2 CPUs): its int8 blocks plan differs from torch by what the fake-quantized blocks do,
    within rounding, so a plan check on it judges the toolkit, not the stand-in."""
    install(monkeypatch)
    options = BuildOptions(backend="tensorrt", precision="int8", shape=SHAPES["tiny-dit"], **CALIBRATION)
    manifest = build_engines("tiny-dit", tmp_path / "trt", options, progress=False)
    cost = manifest.quantization["quantization_error"]
    assert manifest.parts["blocks"].check_error == pytest.approx(cost, rel=0.05)
