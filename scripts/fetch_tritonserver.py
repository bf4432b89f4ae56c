"""Unpack the Triton Inference Server that nvidia-pytriton bundles (a CPU-capable tritonserver binary, its
Python backend and stubs) into the virtual environment, for the Triton tests and `tritonserver` runs:

    python scripts/fetch_tritonserver.py          # -> $VIRTUAL_ENV/opt/pytriton/tritonserver/bin/tritonserver

Only the server is unpacked, not the pytriton package: it pins numpy < 2, which this environment does not
use (tcpade_trt/serve/triton_model.py passes tensors by DLPack instead). Linux x86_64 only; anything else,
or no registry, prints why and leaves the tests that need the server to skip.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "0.7.0"
KEEP = ("pytriton/tritonserver/", "nvidia_pytriton.libs/")


def main() -> int:
    target = Path(sys.prefix) / "opt"
    server = target / "pytriton" / "tritonserver"
    if (server / "bin" / "tritonserver").is_file():
        print(f"tritonserver already unpacked in {server}")
        return 0
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        print("tritonserver: nvidia-pytriton bundles it for Linux x86_64 only; the Triton tests will skip.")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        download = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                                   f"nvidia-pytriton=={VERSION}"], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("nvidia_pytriton-*.whl"))
        if download.returncode != 0 or not wheels:
            print(f"tritonserver: could not download nvidia-pytriton=={VERSION}; the Triton tests will skip.\n"
                  + download.stderr[-500:])
            return 0
        staging = Path(tempfile.mkdtemp(prefix=".opt.", dir=target.parent))
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                wheel.extractall(staging, [n for n in wheel.namelist() if n.startswith(KEEP)])
            unpacked = staging / "pytriton" / "tritonserver"
            for binary in [unpacked / "bin" / "tritonserver", *unpacked.glob("python_backend_stubs/*/*stub")]:
                binary.chmod(0o755)
            # the Python backend starts the stub built for the Python it will run the model in: this one's
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            stub = unpacked / "python_backend_stubs" / version / "triton_python_backend_stub"
            if not stub.is_file():
                print(f"tritonserver: nvidia-pytriton {VERSION} has no Python {version} stub; the Triton tests will "
                      "skip.")
                return 0
            shutil.copy2(stub, unpacked / "backends" / "python" / "triton_python_backend_stub")
            target.mkdir(exist_ok=True)
            for entry in staging.iterdir():
                shutil.rmtree(target / entry.name, ignore_errors=True)
                entry.rename(target / entry.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    print(f"tritonserver unpacked in {server}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
