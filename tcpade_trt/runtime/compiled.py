"""A model whose block stack runs under torch.compile, with the cache policies left eager.

    fast = compiled_blocks(model, autocast=torch.bfloat16)   # a Model sharing model's weights
    sample(fast, cond, noise, policy=make_policy("tcpade-fast"))

The step (runtime/step.py) calls ``parts.blocks`` / ``parts.blocks_with_residual`` whatever they are, so caching
composes with compilation: only full steps run the compiled graph, and the policy's Python (its decisions, its
history) is never traced, so the graph is compiled once per input shape instead of once per step. This is how
``apply_cache(..., compile=True)`` and the torch.compile peers of `tcpade-trt bench` compile.
"""

from __future__ import annotations

import copy

import torch

from ..models.model import Model

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16}  # the precisions a compiled block stack runs in (CPU autocast)


def compiled_blocks(model: Model, autocast: torch.dtype | None = None, **compile_options) -> Model:
    """``model`` with its block stack compiled (inductor), optionally under ``autocast`` (bf16 on a CPU), its
    outputs back in the model's dtype. ``model`` itself stays eager (a shallow copy of its parts is changed)."""
    parts = copy.copy(model.parts)
    eager_blocks = type(model.parts).blocks.__get__(model.parts)  # the class's method: the copy's is replaced
    device_type = torch.device(model.device).type

    def blocks_with_residual(step):
        # x_in, x_out, residual: [B, tokens, hidden]
        if autocast is None:
            x_out = eager_blocks(step)
        else:
            with torch.autocast(device_type, dtype=autocast):
                x_out = eager_blocks(step)
            x_out = x_out.to(step["hidden_states"].dtype)
        return x_out, x_out - step["hidden_states"]

    compiled = torch.compile(blocks_with_residual, **compile_options)
    parts.blocks_with_residual = compiled
    parts.blocks = lambda step: compiled(step)[0]
    fast = copy.copy(model)
    fast.parts = parts
    return fast
