"""Locality, checked on the source: a cache method lives in its own file of cache/methods/, and nothing else in the
package names it (the registry finds it)."""

import ast
from pathlib import Path

from tcpade_trt.cache import registry

PACKAGE = Path(__file__).resolve().parent.parent / "tcpade_trt"


def string_constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_cache_method_is_named_outside_its_own_file():
    # "none" is an ordinary word of the CLI; "tcpade" is the project's name as well as its method's
    names = {n for m in registry.methods().values() for n in (m.name, *m.presets)} - {"none", "tcpade"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("cache/methods/"):
            continue
        found += [f"{relative}:{line} {value!r}" for line, value in string_constants(path)
                  if value.split(":")[0] in names]
    assert not found, "cache methods named outside cache/methods/: " + ", ".join(found)


def test_no_backend_is_named_outside_its_own_folder():
    """A backend is a folder of engines/ behind engines/backend.Backend; the build, the runtime, the server and the
    benchmarks ask the registry (or the backend) and never compare a backend's name."""
    from tcpade_trt.engines import registry as backends

    names = set(backends.names())
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("engines/"):
            continue
        found += [f"{relative}:{line} {value!r}" for line, value in string_constants(path) if value in names]
    assert not found, "backends named outside engines/: " + ", ".join(found)


def test_every_backend_folder_declares_one_backend():
    from tcpade_trt.engines import registry as backends

    folders = sorted(p.parent.name for p in (PACKAGE / "engines").glob("*/__init__.py"))
    assert sorted(backends.names()) == folders


def test_every_method_file_declares_one_method():
    files = sorted(p.stem for p in (PACKAGE / "cache" / "methods").glob("*.py") if p.stem != "__init__")
    assert sorted(registry.methods()) == files


def test_serving_imports_nothing_from_the_benchmarks():
    """serve/ is production code: what it needs of images (to_unit) lives in runtime/images.py."""
    found = []
    for path in sorted((PACKAGE / "serve").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module if node.level else node.module.removeprefix("tcpade_trt.")
                if module.split(".")[0] == "bench":
                    found.append(f"{path.name}:{node.lineno}")
    assert not found, "serve/ imports bench/ at " + ", ".join(found)


def test_the_package_holds_no_research_or_training_code():
    """The method study, its compute accounting, cache-dit as a peer and the demo models' trainers live in research/
    (run from the repository root, tested from here); the installed package is what users run."""
    modules = {p.stem for p in PACKAGE.rglob("*.py")}
    assert not modules & {"method_study", "compute", "cachedit_peer", "class_fidelity", "train_demo",
                          "train_demo_dit"}


def test_the_demo_models_are_told_apart_only_by_the_models_room():
    """The shipped demo models' class names and decoders come from models/registry.trained_classes: the CLI, the
    server and the benchmarks never name demo-dit (in a comparison, a tuple, a lookup: any string constant)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("models/"):
            continue
        found += [f"{relative}:{line}" for line, value in string_constants(path) if value == "demo-dit"]
    assert not found, "demo-dit named outside models/: " + ", ".join(found)


def test_what_a_model_takes_and_gives_is_decided_in_one_place():
    """Which conditioning a model takes and how its latents become pixels is runtime/model_io.ModelIO's: the CLI,
    the server (and Triton through it) and the benchmarks ask it; none of them reads the demo models' classes or
    decoders itself, calls a VAE, or draws a latent preview."""
    owners = {"runtime/model_io.py", "runtime/images.py", "runtime/text_conditioning.py"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("models/") or relative in owners:
            continue
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        found += [f"{relative}: {name}" for name in ("trained_classes", "latent_preview", "save_latent_preview",
                                                     "pipeline_vae", "PromptEncoder", "prompt_conditioning")
                  if name in names]
    assert not found, "model I/O decided outside runtime/model_io.py: " + ", ".join(found)
