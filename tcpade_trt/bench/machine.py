"""The hardware and software a figure was measured on: every result names it."""

from __future__ import annotations

import os
import platform

import torch

from ..engines import gpu


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    from ..engines import registry
    from ..errors import TcpadeError

    for backend in registry.backends().values():  # each installed backend's runtime version
        if backend.available():
            try:
                info.update(backend.versions())
            except TcpadeError:  # installed but unusable here (TensorRT without a GPU)
                pass
    info.update(gpu.identity())
    from ..engines.onnxruntime.sessions import EXACT_INT8_FLAGS, cpu_flags

    flags = cpu_flags()
    info["cpu_features"] = sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                                           "amx_int8"})
    info["int8_vnni"] = bool(flags & set(EXACT_INT8_FLAGS))  # INT8 dot products in hardware
    return info


def describe(info: dict) -> str:
    gpu = f", {info['gpu']}" if "gpu" in info else ""
    return f"{info['cpu']} ({info['cores']} cores, {info['torch_threads']} torch threads){gpu}, torch {info['torch']}"
