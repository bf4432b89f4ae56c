"""A Triton Inference Server model repository serving an engine folder through the Python backend.

    tcpade-trt triton-repo --engines engines/demo-int8 --out triton-repo
    tritonserver --model-repository triton-repo --http-address 127.0.0.1     # then POST /v2/models/tcpade/infer

The repository holds one model, ``tcpade``: ``config.pbtxt`` (inputs and outputs, dynamic batching up to
the folder's batch range, the engine folder's path as a parameter) and ``1/model.py``, which puts the
environment tcpade-trt is installed in on the path of Triton's Python stub and hands over to
serve/triton_model.py. The repository names the engine folder by its absolute path: build it where the
server runs, or mount the folder at the same path.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import sys
import sysconfig
import tempfile
from pathlib import Path

from ..errors import ConfigError

MODEL = "tcpade"

MODEL_PY = '''# Written by `tcpade-trt triton-repo`. Triton's Python backend runs this file in its own Python
# (the stub's); the environment tcpade-trt is installed in goes first on its path (site.addsitedir also reads
# its .pth files, which is where an editable install lives), then the model is tcpade_trt's. Its compiled
# packages (torch, numpy) only load in the Python version they were installed for.
import site
import sys

if sys.version_info[:2] != {version!r}:
    raise RuntimeError(f"this repository was written for Python {version[0]}.{version[1]} (its packages are built "
                       f"for it) but Triton's Python stub runs {{sys.version.split()[0]}}: write the repository with "
                       "tcpade-trt installed in the stub's Python, or point EXECUTION_ENV_PATH at a matching one.")
before = list(sys.path)
for folder in {site_dirs!r}:
    site.addsitedir(folder)
sys.path[:] = [p for p in sys.path if p not in before] + before  # ahead of the stub's own packages

from tcpade_trt.serve.triton_model import TritonPythonModel  # noqa: E402,F401
'''


def _config(batch_max: int, batch_wait_us: int, parameters: dict[str, str]) -> str:
    # all optional, as the HTTP server's fields are; the Python backend reads a request's batch size from its
    # first input, so a request must carry at least one (Triton refuses an empty one with its own message)
    inputs = [("seed", "TYPE_INT64", "[ 1 ]"), ("class", "TYPE_INT64", "[ 1 ]"), ("steps", "TYPE_INT32", "[ 1 ]"),
              ("guidance_scale", "TYPE_FP32", "[ 1 ]"), ("prompt", "TYPE_UINT8", "[ -1 ]"),
              ("negative_prompt", "TYPE_UINT8", "[ -1 ]"), ("cache", "TYPE_UINT8", "[ -1 ]")]
    # text of different lengths may share a batch: the Python backend gets every request's tensors apart
    ragged = lambda dims: " allow_ragged_batch: true" if dims == "[ -1 ]" else ""
    lines = [f'name: "{MODEL}"', 'backend: "python"', f"max_batch_size: {batch_max}", "input ["]
    lines += [",\n".join(f'  {{ name: "{n}" data_type: {t} dims: {d} optional: true{ragged(d)} }}'
                         for n, t, d in inputs)]
    lines += ["]", "output ["]
    lines += [",\n".join(f'  {{ name: "{n}" data_type: {t} dims: {d} }}' for n, t, d in
                         (("image", "TYPE_UINT8", "[ -1 ]"), ("full_steps", "TYPE_INT32", "[ 1 ]"),
                          ("predicted_steps", "TYPE_INT32", "[ 1 ]"), ("compute_s", "TYPE_FP32", "[ 1 ]"),
                          ("batch", "TYPE_INT32", "[ 1 ]")))]
    lines += ["]", f"dynamic_batching {{ max_queue_delay_microseconds: {batch_wait_us} }}",
              # one instance: the model places itself (CPU, or the GPU the engine folder was built for)
              "instance_group [ { kind: KIND_MODEL count: 1 } ]", "parameters ["]
    lines += [",\n".join(f'  {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in parameters.items())]
    lines += ["]"]
    return "\n".join(lines) + "\n"


def write_repository(engines: str | Path, out: str | Path, *, pipeline: str | Path | None = None,
                     device: str = "auto", max_steps: int = 100, batch_wait_ms: float = 10.0) -> Path:
    """Write the repository to ``out`` (a new folder: an existing one is never overwritten)."""
    from ..engines.manifest import read_manifest
    from ..runtime.model_io import check_pipeline

    engines, out = Path(engines).resolve(), Path(out)
    manifest = read_manifest(engines)  # a wrong folder is one sentence here, not a failed model load in Triton
    pipeline = Path(pipeline).resolve() if pipeline is not None else None
    check_pipeline(manifest, pipeline)
    if out.exists():
        raise ConfigError(f"{out} exists; give a new folder for the repository (nothing was overwritten).")
    for value in (str(engines), str(pipeline or "")):
        if any(c in value for c in '"\\\n\r'):
            raise ConfigError(f"{value!r}: a path with quotes, backslashes or line breaks cannot go into "
                              "config.pbtxt; move it.")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N (got {device!r}).")
    parameters = {"engines": str(engines), "pipeline": str(pipeline or ""), "device": device,
                  "max_steps": str(max_steps)}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:  # written aside and renamed: an interrupted write leaves no repository that looks complete
        (staging / MODEL / "1").mkdir(parents=True)
        (staging / MODEL / "config.pbtxt").write_text(
            _config(manifest.shape["batch_max"], round(batch_wait_ms * 1000), parameters))
        (staging / MODEL / "1" / "model.py").write_text(
            MODEL_PY.format(site_dirs=site_dirs(), version=tuple(sys.version_info[:2])))
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def site_dirs() -> list[str]:
    """Where this environment's packages (and tcpade_trt itself) are found."""
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    dirs.append(str(Path(__file__).resolve().parents[2]))  # the tcpade_trt that wrote the repository, installed or not
    return list(dict.fromkeys(dirs))


def find_tritonserver() -> Path | None:
    """A tritonserver binary: $TCPADE_TRITONSERVER, the one `make test` unpacks from nvidia-pytriton into the
    virtual environment (scripts/fetch_tritonserver.py), an installed nvidia-pytriton's, or one on PATH."""
    candidates = [os.environ.get("TCPADE_TRITONSERVER"),
                  Path(sys.prefix) / "opt" / "pytriton" / "tritonserver" / "bin" / "tritonserver"]
    try:
        import importlib.util

        spec = importlib.util.find_spec("pytriton")
        if spec is not None and spec.submodule_search_locations:
            candidates.append(Path(list(spec.submodule_search_locations)[0]) / "tritonserver" / "bin" / "tritonserver")
    except (ImportError, ValueError):
        pass
    candidates.append(shutil.which("tritonserver"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def tritonserver_command(binary: Path, repository: Path, http_port: int = 8000, grpc_port: int = 8001,
                         host: str = "127.0.0.1", metrics: bool = True) -> list[str]:
    """The command line that serves ``repository`` with ``binary`` (its backends next to it, as bundled)."""
    command = [str(binary), "--model-repository", str(repository),
               "--backend-directory", str(Path(binary).resolve().parent.parent / "backends"),
               "--http-address", host, "--http-port", str(http_port), "--grpc-address", host,
               "--grpc-port", str(grpc_port)]
    return command + ([] if metrics else ["--allow-metrics", "false"])
