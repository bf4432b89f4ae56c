"""What the toolkit asks of the machine's CUDA GPU, in one place: whether there is one, what it is, how much
memory it has. Tests replace these functions to emulate a GPU (tests/emulated_cuda.py) without making torch
itself believe in one."""

from __future__ import annotations

import contextlib
import gc

import torch


def available() -> bool:
    return torch.cuda.is_available()


def torch_device() -> torch.device:
    """Where torch puts a model that should be on the GPU."""
    return torch.device("cuda", 0)


def capability() -> tuple[int, int] | None:
    """Compute capability of GPU 0, or None without a GPU."""
    return tuple(torch.cuda.get_device_capability(0)) if available() else None


def identity() -> dict:
    """Name and compute capability of GPU 0, or {} without a GPU."""
    if not available():
        return {}
    major, minor = capability()
    return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}


def memory_bytes() -> int | None:
    """Total memory of GPU 0, or None without a GPU."""
    return torch.cuda.mem_get_info(0)[1] if available() else None


def release_cached_memory() -> None:
    """Hand torch's cached, unused blocks back to the driver, for allocators outside torch (TensorRT's builder)."""
    if available():
        torch.cuda.empty_cache()


def peak_allocated_bytes() -> int | None:
    """torch's peak allocation on GPU 0 so far, or None without a GPU."""
    return torch.cuda.max_memory_allocated() if available() else None


@contextlib.contextmanager
def model_off_the_gpu(model):
    """While TensorRT builds the plans (its builder allocates outside torch), the torch model waits in host memory
    and torch's cached blocks (the quantized copy's, freed) go back to the driver: a 12B model in bf16 and that cache
    would leave the builder a third of an H100. It comes back for the plan check."""
    device = torch.device(model.device)
    if device != torch_device():
        yield
        return
    model.transformer.to("cpu")
    gc.collect()
    release_cached_memory()
    try:
        yield
    finally:
        model.transformer.to(device)
