"""FP8 linear layers for the GPU benchmark: E4M3 weights with a per-tensor scale, activations
quantized per tensor on the fly, multiplied with torch's scaled matmul (Hopper / Ada tensor cores).

On a machine without FP8 matmul support (CPU, pre-Ada GPUs) the same quantization is simulated:
values are rounded through float8 and multiplied in the activation dtype, so the accuracy can be
checked anywhere; the speed cannot.
"""

from __future__ import annotations

import torch
from torch import nn

E4M3_MAX = 448.0


def _to_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor scaled cast to float8_e4m3fn; returns (fp8 tensor, float32 scale)."""
    scale = (x.abs().amax().float() / E4M3_MAX).clamp(min=1e-12)
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn), scale


def fp8_matmul_supported(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


class FP8Linear(nn.Module):
    """Drop-in for nn.Linear with FP8 weights and activations."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight, scale = _to_fp8(linear.weight.detach())
        self.register_buffer("weight_fp8", weight)  # [out, in], row-major: .t() is column-major for _scaled_mm
        self.register_buffer("weight_scale", scale)
        self.bias = linear.bias
        self.out_features, self.in_features = linear.out_features, linear.in_features
        self.native = fp8_matmul_supported(linear.weight.device) and self.in_features % 16 == 0 \
            and self.out_features % 16 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        a, a_scale = _to_fp8(x.reshape(-1, shape[-1]))
        if self.native:
            out = torch._scaled_mm(a, self.weight_fp8.t(), scale_a=a_scale, scale_b=self.weight_scale,
                                   bias=self.bias, out_dtype=x.dtype)
        else:  # simulated: the same rounding, multiplied in the activation dtype
            w = self.weight_fp8.to(x.dtype) * self.weight_scale.to(x.dtype)
            out = nn.functional.linear(a.to(x.dtype) * a_scale.to(x.dtype), w, self.bias)
        return out.reshape(*shape[:-1], self.out_features)


def convert_blocks_to_fp8(transformer: nn.Module,
                          block_lists=("transformer_blocks", "single_transformer_blocks")) -> int:
    """Replace every nn.Linear inside the block stacks by FP8Linear (embedders and output head stay
    in their dtype, as the ModelOpt recipe does). Returns the number of layers converted."""
    count = 0
    for attr in block_lists:
        for block in getattr(transformer, attr, []):
            for _, module in list(block.named_modules()):
                for child_name, child in list(module.named_children()):
                    if isinstance(child, nn.Linear):
                        setattr(module, child_name, FP8Linear(child))
                        count += 1
    return count
