"""Print pip constraints for the packages NVIDIA built into this image, at the versions it has: installing the
requirements with them (-c) fails loudly instead of swapping NVIDIA's torch or TensorRT for a PyPI wheel."""

import importlib.metadata as metadata

BUILT_BY_NVIDIA = ("torch", "torchvision", "torchaudio", "triton", "pytorch-triton", "tensorrt", "tensorrt_cu13",
                   "tensorrt_cu12", "torch_tensorrt", "transformer_engine", "flash_attn", "numpy")

for name in BUILT_BY_NVIDIA:
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
