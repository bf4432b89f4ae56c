"""Where a build computes, and in what precision.

    --device cpu    the model in fp32 in host memory (onnxruntime builds, small models)
    --device cuda   the model on the GPU in the dtype its block stack is built in: bf16 for bf16 / fp8 / int8
                    (NVIDIA's demo/Diffusion calibrates and exports FLUX in bf16 on the GPU), fp16, or fp32
    --device auto   cuda for a TensorRT build on a machine with a GPU, else cpu (the default)

The cheap parts (prepare, head, tail, the first block's modulation for TeaCache) are exported from a copy in
fp32 on the host that holds every module but the blocks after the first: they stay in full precision whatever
the blocks are built in, as in NVIDIA's recipes, and cost a small fraction of the model's memory.

A build the machine cannot do is refused before anything loads, from the size of the weights on disk: FP8 /
INT8 for TensorRT calibrates and exports a copy of the whole model, so on the CPU it needs an fp32 copy in host
memory (about 100 GB and hours of CPU calibration for FLUX.1-dev); on a GPU, the model in bf16 twice.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
import struct
from pathlib import Path

import torch
from torch import nn

from ..engines import gpu, registry
from ..errors import ConfigError
from ..models.model import Model

DEVICES = ("auto", "cpu", "cuda")
LOAD_DTYPE = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.bfloat16,
              "int8": torch.bfloat16}
# TensorRT recipes on the CPU above this many bytes of fp32 weights: refused (a few GB: hours of calibration)
CPU_QUANTIZATION_LIMIT = 8 << 30


def resolve_device(device: str, backend: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)} (got {device!r}).")
    if device == "auto":
        return "cuda" if registry.backend(backend).runs_on_gpu and gpu.available() else "cpu"
    if device == "cuda" and not gpu.available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to torch; build with --device cpu or on a GPU.")
    return device


def load_dtype(device: str, precision: str) -> torch.dtype:
    """fp32 on the host; on a GPU the dtype the block stack is built in (bf16 for the quantized recipes)."""
    return LOAD_DTYPE[precision] if device == "cuda" else torch.float32


def torch_device(device: str) -> torch.device:
    return gpu.torch_device() if device == "cuda" else torch.device("cpu")


def stored_weights(model_path: Path | None) -> tuple[int, float] | None:
    """(bytes, parameters) of the transformer's weight files in a local folder; None for built-in models. Parameters
    from the safetensors headers (a few KB read); a file without a readable one counts 2 bytes a weight (bf16, as
    FLUX and Wan are released; DiT's fp32 release then reads as twice its size: the checks err on the safe side)."""
    if model_path is None:
        return None
    folder = model_path / "transformer" if (model_path / "transformer").is_dir() else model_path
    files = [*folder.glob("*.safetensors"), *folder.glob("*.bin")]
    if not files:
        return None
    size = sum(f.stat().st_size for f in files)
    parameters = 0.0
    for f in files:
        counted = _safetensors_parameters(f) if f.suffix == ".safetensors" else None
        parameters += counted if counted is not None else f.stat().st_size / 2
    return size, parameters


def _safetensors_parameters(path: Path) -> int | None:
    """Elements of every tensor a safetensors file holds, from its header (8 bytes of length, then JSON)."""
    try:
        with open(path, "rb") as f:
            length = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(length)) if 0 < length < (100 << 20) else None
    except (OSError, ValueError, struct.error):
        return None
    if not isinstance(header, dict):
        return None
    return sum(math.prod(info["shape"]) for name, info in header.items() if name != "__metadata__")


BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


def check_fits(model_path: Path | None, device: str, backend: str, precision: str, out: Path | None = None) -> None:
    """Refuse, before anything loads, a build this machine cannot do, saying what it needs."""
    weights = stored_weights(model_path)
    if weights is None:
        return
    stored, parameters = weights
    gib = lambda n: f"{n / (1 << 30):.0f} GB"
    engines = registry.backend(backend)
    recipe = engines.runs_on_gpu and precision in ("fp8", "int8", "bf16", "fp16")
    if device == "cpu" and recipe and 4 * parameters > CPU_QUANTIZATION_LIMIT:
        raise ConfigError(f"a {engines.title} {precision} build of {model_path.name} ({gib(stored)} of weights) on "
                          f"the CPU would calibrate and export an fp32 copy ({gib(4 * parameters)} of host memory, "
                          "hours of CPU time): build it on the GPU with --device cuda (about "
                          f"{gib(2 * 2 * parameters)} of GPU memory for the bf16 model and its quantized copy).")
    if device == "cuda":
        need = 2 * parameters * (2 if recipe and precision in ("fp8", "int8") else 1) * 1.2  # + activations
        have = gpu.memory_bytes() or 0
        if need > have:
            raise ConfigError(f"building {model_path.name} ({gib(stored)} of weights) in {precision} on the GPU needs "
                              f"about {gib(need)} of GPU memory; this GPU has {gib(have)}. Use a larger GPU.")
    if out is not None:  # last: what the machine cannot do at all comes first
        # the blocks' graph and its plan, and for a recipe the exporter's scratch copy in the loaded dtype
        blocks = BYTES_PER_WEIGHT[precision] * parameters
        scratch = load_dtype(device, precision).itemsize * parameters if precision in ("fp8", "int8") else 0
        need = 1.1 * (blocks * (2 if engines.writes_engines else 1) + scratch)
        where = next(p for p in (Path(out).resolve(), *Path(out).resolve().parents) if p.exists())
        free = shutil.disk_usage(where).free
        if need > free:
            raise ConfigError(f"building {model_path.name} in {precision} writes about {gib(need)} under {where} "
                              f"(the graphs{', the engines' if engines.writes_engines else ''} and the exporter's "
                              f"scratch copy); {gib(free)} are free there. Free space, or pass another --out.")


@contextlib.contextmanager
def _first_blocks_only(transformer: nn.Module):
    """The transformer with each stack of blocks (a ModuleList child: transformer_blocks, single_transformer_blocks,
    Wan's blocks) cut to its first block, for the duration of the block."""
    stacks = {name: child for name, child in transformer.named_children()
              if isinstance(child, nn.ModuleList) and len(child) > 1}
    for name, child in stacks.items():
        setattr(transformer, name, nn.ModuleList(list(child)[:1]))
    try:
        yield
    finally:
        for name, child in stacks.items():
            setattr(transformer, name, child)


def cheap_parts_model(model: Model) -> Model:
    """``model`` itself when it is in fp32 on the host, else an fp32 host copy of what prepare, head, tail and the
    modulation read (every module but the blocks after the first)."""
    if model.dtype == torch.float32 and torch.device(model.device).type == "cpu":
        return model
    with _first_blocks_only(model.transformer):
        transformer = copy.deepcopy(model.transformer)
    transformer.to(device="cpu", dtype=torch.float32)
    family = copy.copy(model.family)
    family.device, family.dtype = torch.device("cpu"), torch.float32
    return Model(model.name, family, type(model.parts)(transformer, family), conditioner=model.conditioner,
                 latent_size=model.latent_size, calibrated=model.calibrated)
