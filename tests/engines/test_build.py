"""`build_engines`: what a folder holds, quantized builds, and the sentences for everything that can go wrong."""

import json
import shutil

import pytest
import torch

from tcpade_trt.builder import BuildOptions, TensorRTOptions, build_engines, parts_stage
from tcpade_trt.engines.manifest import ManifestError, read_manifest, sha256_file
from tcpade_trt.errors import BuildError, ConfigError
from tcpade_trt.export.parts import BuildShape

from ..conftest import SHAPES


@pytest.mark.parametrize("name", list(SHAPES))
def test_fp32_folder_holds_checked_parts_and_a_valid_manifest(fp32_folders, name):
    manifest = read_manifest(fp32_folders[name])
    expected = {"head", "blocks", "tail", "modulated", "pade-fit-rational", "pade-fit-paper", "pade-fit-reference",
                "pade-eval", "tsi"}
    expected |= set() if name == "tiny-dit" else {"prepare"}  # DiT has nothing prompt-only to precompute
    assert set(manifest.parts) == expected
    for part in ("head", "blocks", "tail"):
        assert manifest.parts[part].check_error <= 1e-4
    assert manifest.model["family"] == name.split("-")[1] and len(manifest.model["weights_sha256"]) == 64
    assert manifest.versions["onnxruntime"] and manifest.backend == "onnxruntime"
    assert {x["stage"] for x in manifest.build_log} >= {"export blocks", "check blocks against torch", "hash files"}
    blocks_in = manifest.parts["blocks"].inputs[0]
    assert blocks_in["name"] == "hidden_states" and blocks_in["shape"][0] == "batch"


@pytest.mark.parametrize("precision,mode,tolerance", [("int8", "dynamic", 0.1), ("int8", "static", 0.1),
                                                      ("fp8", "static", 0.2)])
def test_quantized_blocks_are_checked_against_torch(fp32_folders, tmp_path, precision, mode, tolerance):
    options = BuildOptions(shape=SHAPES["tiny-flux"], precision=precision, int8_mode=mode,
                           reuse_onnx_from=fp32_folders["tiny-flux"])
    manifest = build_engines("tiny-flux", tmp_path / "q", options, progress=False)
    assert 0 < manifest.parts["blocks"].check_error <= tolerance
    assert manifest.parts["blocks"].precision == precision and manifest.parts["head"].precision == "fp32"
    assert "blocks only" in manifest.quantization["scope"]


def test_static_calibration_is_reproducible(fp32_folders, tmp_path):
    options = BuildOptions(shape=SHAPES["tiny-flux"], precision="int8", int8_mode="static",
                           reuse_onnx_from=fp32_folders["tiny-flux"])
    a = build_engines("tiny-flux", tmp_path / "a", options, progress=False)
    b = build_engines("tiny-flux", tmp_path / "b", options, progress=False)
    assert a.parts["blocks"].sha256 == b.parts["blocks"].sha256
    assert a.quantization["calibration"]["feeds"] == 20  # one feed per denoising step


def copy(folder, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_missing_file_is_named(fp32_folders, tmp_path):
    folder = copy(fp32_folders["tiny-dit"], tmp_path)
    (folder / "tail.onnx").unlink()
    with pytest.raises(ManifestError, match="lacks tail.onnx.*rebuild"):
        read_manifest(folder)


def test_modified_file_fails_its_hash(fp32_folders, tmp_path):
    folder = copy(fp32_folders["tiny-dit"], tmp_path)
    data = bytearray((folder / "blocks.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "blocks.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="does not match the hash"):
        read_manifest(folder)


def test_corrupt_onnx_with_a_matching_hash_is_refused_by_the_loader(fp32_folders, tmp_path):
    from tcpade_trt.runtime.runtime import Runtime

    folder = copy(fp32_folders["tiny-dit"], tmp_path)
    (folder / "head.onnx").write_bytes(b"not an onnx model")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["parts"]["head"]["sha256"] = sha256_file(folder / "head.onnx")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="cannot load .*head.onnx.*rebuild"):
        Runtime(folder)


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.pop("parts"), "is not a valid manifest \\(parts: Field required\\)"),
    (lambda m: m.update(format_version=99), "manifest format 99"),
    (lambda m: m.update(format="something-else"), "not a tcpade-trt manifest"),
])
def test_tampered_manifest_is_explained(fp32_folders, tmp_path, edit, message):
    folder = copy(fp32_folders["tiny-dit"], tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=message):
        read_manifest(folder)


def test_not_json_and_not_a_folder(tmp_path):
    (tmp_path / "manifest.json").write_text("{ nope")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "missing")


def test_reusing_another_models_onnx_is_refused(fp32_folders, tmp_path):
    options = BuildOptions(shape=SHAPES["tiny-flux"], precision="int8", reuse_onnx_from=fp32_folders["tiny-dit"])
    with pytest.raises(ConfigError, match="other weights or for another shape"):
        build_engines("tiny-flux", tmp_path / "x", options, progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_build_leaves_nothing_and_keeps_the_previous_folder(fp32_folders, tmp_path, monkeypatch,
                                                                           interruption):
    out = copy(fp32_folders["tiny-dit"], tmp_path)
    before = sorted(p.name for p in out.iterdir())

    def explode(*args, **kwargs):
        raise interruption("stopped")

    monkeypatch.setattr(parts_stage, "export_pade", explode)
    # an interruption goes through as it is; an unforeseen error becomes one sentence naming the stage
    expected = (interruption, "") if interruption is KeyboardInterrupt else (
        BuildError, "the build failed at 'export pade-fit-rational': RuntimeError: stopped")
    with pytest.raises(expected[0], match=expected[1]):
        build_engines("tiny-dit", out, BuildOptions(shape=SHAPES["tiny-dit"]), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temporary folder left
    assert sorted(p.name for p in out.iterdir()) == before
    read_manifest(out)  # the previous folder is intact


@pytest.mark.parametrize("options,message", [
    (dict(backend="bogus"), "backend must be one of onnxruntime, openvino, tensorrt"),
    (dict(precision="int4"), "precision must be one of"),
    (dict(precision="bf16"), "need a GPU engine"),
    (dict(int8_mode="smooth"), "int8 mode must be"),
    # TensorRT's builder knobs on a build that makes no plans: refused, not ignored
    (dict(tensorrt=TensorRTOptions(refittable=True)), "--refittable is a TensorRT builder option"),
    (dict(tensorrt=TensorRTOptions(optimization_level=5, timing_cache="t")), "--opt-level, --timing-cache are"),
])
def test_bad_build_options_are_explained(options, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        build_engines("tiny-dit", tmp_path / "x", BuildOptions(**options), progress=False)
    assert not (tmp_path / "x").exists()


def test_fp8_blocks_hold_fp8_weights_in_standard_qdq_that_onnxruntime_checks(fp32_folders, tmp_path):
    """NVIDIA's FP8 recipe (ModelOpt, per-tensor max), rewritten from TensorRT's custom ops to standard
    Q/DQ: weights stored as float8e4m3fn, the adaLN modulation linears kept in full precision."""
    import onnx

    pytest.importorskip("modelopt.torch.quantization", reason="nvidia-modelopt is not installed")
    options = BuildOptions(shape=SHAPES["tiny-flux"], precision="fp8", reuse_onnx_from=fp32_folders["tiny-flux"],
                           calibration_samples=2, calibration_steps=4)
    manifest = build_engines("tiny-flux", tmp_path / "fp8", options, progress=False)
    graph = onnx.load(str(tmp_path / "fp8" / "blocks.onnx")).graph
    fp8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT8E4M3FN and t.dims]
    modulation = [t for t in graph.initializer if "norm1.linear" in t.name or "norm.linear" in t.name]
    assert len(fp8_weights) >= 10 and all(t.data_type == onnx.TensorProto.FLOAT for t in modulation)
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}
    assert "ModelOpt FP8" in manifest.quantization["method"] and manifest.parts["blocks"].check_error < 0.05


def test_a_part_exported_earlier_is_reused_only_for_the_same_model(tmp_path):
    """Parts exported earlier in the process are reused by builds of the same model; two DiTs of equal weights whose
    configs differ (sample_size: the position table is a buffer, not a weight) each get their own export."""
    import diffusers

    from tcpade_trt.models.families.dit import DiTFamily
    from tcpade_trt.models.registry import split_model

    def dit(sample_size):
        torch.manual_seed(0)
        config = {**DiTFamily.tiny_config, "sample_size": sample_size}
        # one name for both: only the config tells them apart
        return split_model(diffusers.DiTTransformer2DModel(**config).eval(), name="dit")

    shape = BuildShape(8, 8, batch_max=2)
    for size in (8, 16):  # the second build fails its check if it takes the first one's head
        build_engines(dit(size), tmp_path / str(size), BuildOptions(shape=shape), progress=False)
    assert (tmp_path / "8" / "head.onnx").read_bytes() != (tmp_path / "16" / "head.onnx").read_bytes()


def test_calibration_is_conditioned_as_the_model_is_used(fp32_folders, flux_pipeline_folder, tmp_path):
    """DiT: a spread of classes with classifier-free guidance (the null class's rows are half of what its blocks
    see); a text model built from its pipeline folder: prompts through its text encoders, not random embeddings."""
    from tcpade_trt.builder.quantization_inputs import collect_block_inputs
    from tcpade_trt.models import tiny_model

    feeds, described = collect_block_inputs(tiny_model("tiny-dit"), SHAPES["tiny-dit"], samples=3, steps=2)
    assert feeds[0]["class_labels"].shape == (6,) and list(feeds[0]["class_labels"][3:]) == [1000] * 3  # null rows
    assert len(set(feeds[0]["class_labels"][:3])) == 3 and "classifier-free guidance 4.0" in described
    options = BuildOptions(precision="fp8", shape=SHAPES["tiny-flux"], reuse_onnx_from=fp32_folders["tiny-flux"],
                           calibration_samples=2, calibration_steps=3)
    manifest = build_engines(str(flux_pipeline_folder), tmp_path / "fp8", options, progress=False)
    assert manifest.quantization["calibration"]["conditioning"] == "2 prompts through pipeline's text encoders"
