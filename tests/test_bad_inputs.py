"""The reliability suite: ordinary mistakes, tried as a user would, through the public CLI and API.

Every case must end in exit status 2 (for the API: a TcpadeError) with one line ``error: ...``, no
traceback, and must leave every file it could touch as it was: a sandbox with a user's folder, a
plain file, a local model folder and an engine folder is fingerprinted before and after each case.
The README states how many cases this table holds (test_readme_states_the_count).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tcpade_trt.cli import main
from tcpade_trt.errors import TcpadeError
from tcpade_trt.models import tiny_model

README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass
class Sandbox:
    root: Path
    engines: Path  # a tiny-dit engine folder this tool wrote
    user_dir: Path  # a folder of a user's own files
    plain_file: Path
    model_dir: Path  # a local diffusers model folder (tiny DiT saved with save_pretrained)
    image: Path  # an image of the user's
    links: Path  # outside the sandbox: a symlink loop (loop1 <-> loop2) and a dangling link (dangling)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, fp32_folders):
    import shutil

    root = tmp_path_factory.mktemp("sandbox")
    engines = root / "engines-dit"
    shutil.copytree(fp32_folders["tiny-dit"], engines)
    user_dir = root / "my-photos"
    user_dir.mkdir()
    (user_dir / "holiday.txt").write_text("not a model")
    plain_file = root / "notes.txt"
    plain_file.write_text("a user's file")
    model_dir = root / "models" / "dit"
    tiny_model("tiny-dit").transformer.save_pretrained(model_dir)
    image = root / "photo.png"
    image.write_bytes(b"\x89PNG a user's picture")
    links = tmp_path_factory.mktemp("links")  # fingerprint() would follow the loop: kept out of the sandbox
    (links / "loop1").symlink_to(links / "loop2")
    (links / "loop2").symlink_to(links / "loop1")
    (links / "dangling").symlink_to(links / "nothing-here")
    return Sandbox(root, engines, user_dir, plain_file, model_dir, image, links)


def fingerprint(root: Path) -> dict[str, str]:
    """Every file and folder under root, with a hash of each file's bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def cli(*args: str) -> Callable[[Sandbox], tuple[str, ...]]:
    """A command line; {engines}, {user_dir}, {plain_file}, {model_dir}, {root}, {image}, {links} are filled from
    the sandbox."""
    return lambda s: tuple(a.format(engines=s.engines, user_dir=s.user_dir, plain_file=s.plain_file,
                                    model_dir=s.model_dir, root=s.root, image=s.image, links=s.links) for a in args)


@dataclass
class Case:
    name: str
    run: Callable  # Sandbox -> argv tuple (CLI) or a callable (API) that should raise TcpadeError
    message: str  # a regex the one line must match
    api: bool = False


def _runtime_call(make_cond, noise=None):
    def call(s: Sandbox):
        from tcpade_trt.runtime.runtime import Runtime

        rt = Runtime(s.engines)
        latents = torch.randn(1, 4, 8, 8) if noise is None else noise
        rt.generate(make_cond(), latents, cache="none", steps=2)
    return call


def _engine_transformer_into_flux(s: Sandbox):
    from tcpade_trt.runtime.dropin import EngineTransformer

    from .pipelines import PIPELINES

    call = PIPELINES["tiny-flux"](tiny_model("tiny-flux").transformer)
    EngineTransformer(s.engines, cache="none").into(call.pipe)


def _engine_transformer_assigned_into_flux(s: Sandbox):
    from tcpade_trt.runtime.dropin import EngineTransformer

    from .pipelines import PIPELINES

    call = PIPELINES["tiny-flux"](tiny_model("tiny-flux").transformer)
    call.pipe.transformer = EngineTransformer(s.engines, cache="none", num_steps=20)
    call()


def _apply_cache_with_contradicting_steps(s: Sandbox):
    from tcpade_trt.runtime.hooks import apply_cache

    from .pipelines import PIPELINES

    call = PIPELINES["tiny-flux"](tiny_model("tiny-flux").transformer)
    handle = apply_cache(call.pipe, "tcpade-fast", num_steps=20)
    try:
        call(steps=10)
    finally:
        handle.remove()


def _generate_with(**changes):
    """Runtime.generate on the sandbox's DiT folder with one argument made wrong."""
    def call(s: Sandbox):
        from tcpade_trt.runtime.runtime import Runtime

        arguments = {"cond": {"class_labels": torch.tensor([1])}, "latents": torch.randn(1, 4, 8, 8), "steps": 2,
                     "cache": "none", **changes}
        Runtime(s.engines).generate(**arguments)
    return call


def _apply_cache_to_a_string(s: Sandbox):
    from tcpade_trt import apply_cache

    apply_cache("a string", num_steps=20)


def _calibration_file(row):
    """apply_cache(calibration=FILE) with a hand-edited row in the file `tcpade-trt calibrate --out` writes."""
    def call(s: Sandbox):
        import json

        from tcpade_trt import apply_cache

        path = s.links / "calibration.json"
        path.write_text(json.dumps({"schedules": [row]}))
        apply_cache(tiny_model("tiny-dit").transformer, "tcpade-fast", num_steps=20, calibration=path)
    return call


def _edited_manifest(edit):
    """inspect (and so every command) on a copy of the engine folder whose manifest.json was edited by hand."""
    def call(s: Sandbox):
        import json
        import shutil

        folder = s.links / f"edited-{abs(hash(edit.__code__))}"
        if not folder.exists():
            shutil.copytree(s.engines, folder)
        data = json.loads((s.engines / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps(edit(data)))
        return ("inspect", str(folder))
    return call


def _with_part_file(data, name):
    data["parts"]["head"]["file"] = name
    return data


def _with_schedule(data, row):
    data["calibration"] = {"schedules": [row]}
    return data


NAN = float("nan")
CASES = [
    # -- data loss: build may replace only an engine folder it wrote ------------------------------
    Case("build over a user's folder", cli("build", "tiny-dit", "--out", "{user_dir}"),
         "exists and is not an engine folder this tool wrote .*--force"),
    Case("build over the source model", cli("build", "{model_dir}", "--out", "{model_dir}"),
         "would replace the source model's files"),
    Case("build over the source model, forced", cli("build", "{model_dir}", "--out", "{model_dir}", "--force"),
         "would replace the source model's files"),
    Case("build over a parent of the model, forced", cli("build", "{model_dir}", "--out", "{root}/models", "--force"),
         "would replace the source model's files"),
    Case("build over a plain file", cli("build", "tiny-dit", "--out", "{plain_file}"),
         "is a file; a build writes a folder"),
    Case("build --out .", cli("build", "tiny-dit", "--out", "."), "is the current folder or one above it"),
    Case("build --out under a plain file", cli("build", "tiny-dit", "--out", "{plain_file}/sub"),
         "cannot be created: .* is a file"),
    Case("build --out in /sys", cli("build", "tiny-dit", "--out", "/sys/tcpade-engines"), "cannot be written"),
    # -- tracebacks on ordinary input ---------------------------------------------------------------
    Case("generate --out unwritable", cli("generate", "--engines", "{engines}", "--out", "/sys/x.png"),
         "cannot be written"),
    Case("generate --out a folder", cli("generate", "--engines", "{engines}", "--out", "{user_dir}/"), "is a folder"),
    Case("generate --out without extension", cli("generate", "--engines", "{engines}", "--out", "{root}/noext"),
         "needs one of the extensions"),
    Case("generate --out under a plain file", cli("generate", "--engines", "{engines}", "--out", "{plain_file}/x.png"),
         "is a file, not a folder"),
    Case("generate DiT --class bogus", cli("generate", "--engines", "{engines}", "--class", "bogus"),
         "classes are the whole numbers 0 to 999"),
    Case("generate --seed too large", cli("generate", "--engines", "{engines}", "--seed", "99999999999999999999"),
         "--seed: must be a whole number from 0 to 2\\*\\*63 - 1"),
    Case("generate --batch -1", cli("generate", "--engines", "{engines}", "--batch", "-1"), "--batch: must be .* >= 1"),
    Case("generate --steps abc", cli("generate", "--engines", "{engines}", "--steps", "abc"),
         "--steps: must be a whole"),
    Case("generate --guidance-scale nan", cli("generate", "--engines", "{engines}", "--guidance-scale", "nan"),
         "must be a finite number"),
    Case("generate --cache bogus", cli("generate", "--engines", "{engines}", "--cache", "bogus"),
         "unknown cache preset"),
    Case("generate from a plain file", cli("generate", "--engines", "{plain_file}"),
         "not an engine folder .*is a file"),
    Case("build --height -2", cli("build", "tiny-dit", "--out", "{root}/new", "--height", "-2"), "--height: must be"),
    Case("build --height 7 on DiT", cli("build", "tiny-dit", "--out", "{root}/new", "--height", "7"),
         "must be square and a multiple of the patch size"),
    Case("build an unknown model", cli("build", "no-such-model", "--out", "{root}/new"), "neither a local folder"),
    Case("build a hub id", cli("build", "black-forest-labs/FLUX.1-dev", "--out", "{root}/new"), "never downloads"),
    Case("build from a plain file", cli("build", "{plain_file}", "--out", "{root}/new"), "is a file; pass a diffusers"),
    Case("build --opt-level 9", cli("build", "tiny-dit", "--out", "{root}/new", "--opt-level", "9"), "--opt-level"),
    Case("sample --batch -2", cli("sample", "tiny-dit", "--batch", "-2"), "--batch: must be"),
    Case("inspect a plain file", cli("inspect", "{plain_file}"), "not an engine folder \\(it is a file\\)"),
    Case("an unknown option", cli("generate", "--engines", "{engines}", "--colour", "red"), "unrecognized arguments"),
    Case("EngineTransformer(DiT).into(FluxPipeline)", _engine_transformer_into_flux, "expects a FluxTransformer2DModel",
         api=True),
    Case("EngineTransformer(DiT) assigned into a FluxPipeline", _engine_transformer_assigned_into_flux,
         "folder's model \\(dit, DiTTransformer2DModel\\) does not have", api=True),
    Case("Runtime.generate without class_labels", _runtime_call(lambda: {}), "cond lacks 'class_labels'", api=True),
    Case("Runtime.generate with NaN noise",
         _runtime_call(lambda: {"class_labels": torch.tensor([1])}, torch.full((1, 4, 8, 8), NAN)),
         "initial noise .* hold NaN or Inf", api=True),
    Case("Runtime.generate with a negative class", _runtime_call(lambda: {"class_labels": torch.tensor([-1])}),
         "class_labels must be whole numbers from 0 to 999", api=True),
    Case("build --backend tensorrt without TensorRT",
         cli("build", "tiny-dit", "--out", "{root}/new", "--backend", "tensorrt"), "needs TensorRT"),
    Case("bench --caches bogus", cli("bench", "tiny-dit", "--out", "{root}/bench", "--caches", "bogus"),
         "unknown cache preset"),
    # -- silent substitutions, refused ----------------------------------------------------------
    Case("build --height 0", cli("build", "tiny-dit", "--out", "{root}/new", "--height", "0"), "--height: must be"),
    Case("generate --batch 0", cli("generate", "--engines", "{engines}", "--batch", "0"), "--batch: must be"),
    Case("generate DiT --class -1", cli("generate", "--engines", "{engines}", "--class", "-1"), "0 to 999"),
    Case("generate DiT --class 1000 (the null class)", cli("generate", "--engines", "{engines}", "--class", "1000"),
         "0 to 999"),
    *[Case(f"cache spec {spec}", cli("sample", "tiny-dit", "--cache", spec),
           f"{field}( \\(.*\\))? must be a finite number")
      for spec, field in [("tcpade-fast:alpha1=nan", "alpha1"), ("tcpade-fast:beta=inf", "beta"),
                          ("tcpade-fast:input_delta=nan", "input_delta"), ("tcpade-fast:lam=inf", "lam"),
                          ("tcpade-fast:c_max=nan", "c_max"), ("teacache:threshold=inf", "threshold")]],
    Case("cache spec teacache:coefficients=nan", cli("sample", "tiny-dit", "--cache", "teacache:coefficients=nan"),
         "coefficients must be finite numbers"),
    Case("apply_cache(pipe, num_steps=20) on a 10-step call", _apply_cache_with_contradicting_steps,
         "num_steps=20 was given but the pipeline runs 10 steps", api=True),
    # -- issue 26's probe: outputs checked before the work --------------------------------------------
    Case("generate --out onto an existing image", cli("generate", "--engines", "{engines}", "--out", "{image}"),
         "exists; add --force to replace it"),
    Case("generate --out through a symlink loop", cli("generate", "--engines", "{engines}", "--out",
                                                      "{links}/loop1/x.png"), "symbolic link that leads nowhere"),
    Case("generate --out a name near 255 bytes", cli("generate", "--engines", "{engines}", "--out",
                                                     "{root}/" + "a" * 250 + ".png"), "is 254 bytes; names may have"),
    Case("build --out a name near 255 bytes", cli("build", "tiny-dit", "--out", "{root}/" + "b" * 240),
         "is 240 bytes; names may have"),
    Case("generate --scale 100000", cli("generate", "--engines", "{engines}", "--scale", "100000"),
         "--scale must be at most 64"),
    Case("generate --class more often than --batch", cli("generate", "--engines", "{engines}", "--class", "1",
                                                          "--class", "2", "--class", "3", "--batch", "2"),
         "3 --class values for --batch 2"),
    Case("generate DiT --negative-prompt", cli("generate", "--engines", "{engines}", "--class", "1",
                                               "--negative-prompt", "blurry"), "--negative-prompt is for text"),
    Case("triton-repo --batch-wait-ms -5", cli("triton-repo", "--engines", "{engines}", "--out", "{root}/tr",
                                               "--batch-wait-ms", "-5"), "--batch-wait-ms: must be >= 0"),
    Case("triton-repo --out under a file", cli("triton-repo", "--engines", "{engines}", "--out", "{plain_file}/r"),
         "is a file, not a folder"),
    Case("triton-repo --out a dangling symlink", cli("triton-repo", "--engines", "{engines}", "--out",
                                                     "{links}/dangling"), "symbolic link that leads nowhere"),
    Case("bench --out a file", cli("bench", "tiny-dit", "--out", "{plain_file}"), "is a file; give a folder"),
    Case("bench --markdown a folder", cli("bench", "tiny-dit", "--out", "{root}/b", "--markdown", "{user_dir}"),
         "--markdown .* is a folder"),
    Case("demo --out a file", cli("demo", "--out", "{plain_file}"), "is a file; give a folder"),
    Case("gpu-bench --resolution 7", cli("gpu-bench", "--resolution", "7", "--out", "{root}/g.json"),
         "--resolution must be a multiple of 16"),
    Case("gpu-bench --device tpu", cli("gpu-bench", "--device", "tpu", "--out", "{root}/g.json"),
         "--device must be cuda, cuda:N or cpu"),
    Case("build DiT --frames 5", cli("build", "tiny-dit", "--out", "{root}/new", "--frames", "5"),
         "--frames is for video models"),
    Case("sample DiT --frames 5", cli("sample", "tiny-dit", "--frames", "5"), "--frames is for video models"),
    Case("cache spec with a field twice", cli("sample", "tiny-dit", "--cache", "tcpade-fast:budget=0.9,budget=0.1"),
         "budget is given twice"),
    Case("Runtime.generate(guidance_scale=nan)", _generate_with(guidance_scale=NAN),
         "guidance_scale must be a finite number", api=True),
    Case("Runtime.generate(steps=True)", _generate_with(steps=True), "num_steps must be a whole number", api=True),
    Case("Runtime.generate with int64 noise", _generate_with(latents=torch.zeros(1, 4, 8, 8, dtype=torch.int64)),
         "latents must be floating-point noise", api=True),
    Case("Runtime.generate with numpy noise", _generate_with(latents=torch.randn(1, 4, 8, 8).numpy()),
         "latents must be a torch.Tensor", api=True),
    Case("Runtime.generate with meta noise", _generate_with(latents=torch.empty(1, 4, 8, 8, device="meta")),
         "on the meta device", api=True),
    Case("a WebP image beyond WebP's 16383 pixels", lambda s: __import__("tcpade_trt.runtime.images").runtime.images
         .save_images(torch.rand(1, 3, 8, 8), s.root / "wide.webp", 2100), "more than .webp files hold", api=True),
    Case("Runtime.generate with an extra conditioning key",
         _generate_with(cond={"class_labels": torch.tensor([1]), "prompt_embeds": torch.zeros(1, 4)}),
         "cond has 'prompt_embeds', which a dit model does not take", api=True),
    Case("a calibration file with the steps as a string", _calibration_file(["20", 0.35, [0, 9, 19]]),
         "row 0 .* is not \\[steps >= 2", api=True),
    Case("a calibration file with a NaN budget", _calibration_file([20, NAN, [0, 9, 19]]), "row 0 .* is not",
         api=True),
    Case("apply_cache('a string')", _apply_cache_to_a_string, "takes a diffusers pipeline or its transformer",
         api=True),
    # -- hand-edited manifests: one schema (engines/manifest_schema.py) ---------------------------
    Case("manifest []", _edited_manifest(lambda d: []), "is not a tcpade-trt manifest"),
    Case("manifest shape {}", _edited_manifest(lambda d: {**d, "shape": {}}), "shape.height: Field required"),
    Case("manifest batch_max '4'", _edited_manifest(lambda d: {**d, "shape": {**d["shape"], "batch_max": "4"}}),
         "shape.batch_max: Input should be a valid integer"),
    Case("manifest precision int3", _edited_manifest(lambda d: {**d, "precision": "int3"}), "precision: Input"),
    Case("manifest of an unknown model class", _edited_manifest(lambda d: {**d, "model": {**d["model"],
                                                                                          "class": "Bogus"}}),
         "'Bogus' is not a model class"),
    Case("manifest with a NaN budget", _edited_manifest(lambda d: _with_schedule(d, [20, NAN, [0, 19]])),
         "calibration.schedules: row 0"),
    Case("manifest with a short calibration row", _edited_manifest(lambda d: _with_schedule(d, [20, 0.3])),
         "calibration.schedules: row 0"),
    Case("manifest naming ../outside.onnx", _edited_manifest(lambda d: _with_part_file(d, "../outside.onnx")),
         "'../outside.onnx' is not a file name inside the folder"),
]


def run_case(case: Case, sandbox: Sandbox, capsys) -> tuple[int, str]:
    capsys.readouterr()
    if case.api:
        try:
            case.run(sandbox)
        except TcpadeError as exc:
            return 2, f"error: {exc}\n"
        return 0, ""
    code = main(list(case.run(sandbox)))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_input_is_one_sentence_and_loses_nothing(case, sandbox, capsys, monkeypatch):
    import sys

    monkeypatch.chdir(sandbox.root)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # this machine has no TensorRT, whatever is installed
    before = fingerprint(sandbox.root)
    code, err = run_case(case, sandbox, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit status {code}, stderr: {err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert re.search(case.message, lines[0]), lines[0]
    assert fingerprint(sandbox.root) == before  # nothing deleted, nothing half-written


def test_validation_comes_before_the_work(sandbox, capsys, monkeypatch):
    """TensorRT missing and a bad cache spec are found before a model is loaded or an engine built."""
    import sys

    from tcpade_trt.bench import runner
    from tcpade_trt.models import registry

    def must_not_run(*args, **kwargs):
        raise AssertionError("validation came after the work started")

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(registry, "load_model", must_not_run)
    monkeypatch.setattr(runner, "run_bench", must_not_run)
    assert main(["build", "tiny-dit", "--out", str(sandbox.root / "x"), "--backend", "tensorrt"]) == 2
    assert main(["bench", "--out", str(sandbox.root / "b"), "--caches", "none", "bogus"]) == 2
    assert main(["sample", "tiny-dit", "--cache", "tcpade-fast:lam=nan"]) == 2


def test_nothing_asked_prints_the_help_and_is_not_a_success(capsys):
    assert main([]) == 2
    printed = capsys.readouterr()
    assert "COMMAND" in printed.err and printed.out == ""


def test_a_non_finite_generation_is_reported_and_no_image_is_written(sandbox, capsys, monkeypatch):
    from tcpade_trt.runtime import runtime as runtime_module
    from tcpade_trt.runtime.sampler import SampleResult

    def nan_generation(self, cond, latents, **kwargs):
        return SampleResult(torch.full_like(latents, NAN), 2, 0, [True, True])

    monkeypatch.setattr(runtime_module.Runtime, "generate", nan_generation)
    out = sandbox.root / "nan.png"
    assert main(["generate", "--engines", str(sandbox.engines), "--class", "1", "--steps", "2", "--out", str(out)]) == 2
    assert "produced NaN or Inf values, so no image was written" in capsys.readouterr().err
    assert not out.exists() and not list(sandbox.root.glob(".nan*"))


def test_readme_states_the_count():
    stated = re.search(r"(\d+) bad inputs tried", README.read_text())
    assert stated, "the README should say how many bad inputs the reliability suite tries"
    assert int(stated.group(1)) == len(CASES)


def test_a_full_disk_is_one_sentence_and_leaves_nothing(sandbox, capsys, monkeypatch):
    """ENOSPC while a build writes: one sentence (it was a traceback) and no temporary folder left behind."""
    import errno

    from tcpade_trt.engines.manifest import Manifest

    def disk_full(self, folder):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "manifest.json"))

    monkeypatch.setattr(Manifest, "write", disk_full)
    out = sandbox.root / "full"
    before = fingerprint(sandbox.root)
    assert main(["build", "tiny-dit", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "free some space" in err and "Traceback" not in err
    assert fingerprint(sandbox.root) == before  # no engine folder, no temporary one
