"""What the TorchScript exporter needs to trace diffusers' transformers into graphs that take any batch.

ModelOpt's fake quantization does not pass torch.export, so quantized block stacks are traced. A tracer
records Python-side shapes as constants, so every step that turns the example's batch into a constant has to
be written so that it stays a graph computation; the arithmetic is the same.

- ``aten::rms_norm`` has no ONNX symbolic in the TorchScript exporter: x / sqrt(mean(x^2) + eps) * weight.
- FLUX's rotary embedding reshapes with ``x.reshape(*x.shape[:-1], -1, 2)``: the batch becomes a constant.
- Wan's attention writes its rotary embedding into a strided slice (``out[..., 0::2] = ...``), traced as an
  Expand to the example's shape (onnxruntime: "invalid expand shape" at another batch).

    with traceable(module):
        torch.onnx.export(module, ..., dynamo=False)
"""

from __future__ import annotations

import contextlib

import torch


def _rms_norm_symbolic(g, x, normalized_shape, weight, eps):
    """aten::rms_norm for the TorchScript exporter: x / sqrt(mean(x^2, last axis) + eps) * weight, computed in
    float32 and cast back to x's dtype, as torch computes it for bf16 / fp16 (its "opmath" type), at any opset
    (from 18 on ReduceMean takes its axes as an input, not an attribute)."""
    from torch.onnx import symbolic_helper as sh

    eps_value = None if sh._is_none(eps) else sh._maybe_get_const(eps, "f")
    eps_value = 1e-6 if eps_value is None else float(eps_value)
    dtype = x.type().dtype() or torch.float32
    onnx_float = 1  # TensorProto.FLOAT
    reduced = dtype in (torch.bfloat16, torch.float16)
    x32 = g.op("Cast", x, to_i=onnx_float) if reduced else x
    square = g.op("Mul", x32, x32)
    if g.opset >= 18:
        mean_square = g.op("ReduceMean", square, g.op("Constant", value_t=torch.tensor([-1])), keepdims_i=1)
    else:
        mean_square = g.op("ReduceMean", square, axes_i=[-1], keepdims_i=1)
    eps_constant = g.op("Constant", value_t=torch.tensor(eps_value, dtype=torch.float32 if reduced else dtype))
    y = g.op("Div", x32, g.op("Sqrt", g.op("Add", mean_square, eps_constant)))
    if not sh._is_none(weight):
        y = g.op("Mul", y, g.op("Cast", weight, to_i=onnx_float) if reduced else weight)
    return g.op("Cast", y, to_i={torch.bfloat16: 16, torch.float16: 10}[dtype]) if reduced else y  # TensorProto


def _rotary_emb_traceable(x, freqs_cis, use_real=True, use_real_unbind_dim=-1, sequence_dim=2):
    """diffusers' apply_rotary_emb (the FLUX case) without ``x.reshape(*x.shape[:-1], -1, 2)``, which the
    TorchScript tracer records with the example's batch size as a constant; unflatten keeps the batch
    dynamic. The same arithmetic."""
    if not use_real or use_real_unbind_dim != -1:
        from diffusers.models.embeddings import apply_rotary_emb

        return apply_rotary_emb(x, freqs_cis, use_real, use_real_unbind_dim, sequence_dim)
    cos, sin = freqs_cis
    index = (None, None, slice(None), slice(None)) if sequence_dim == 2 else (None, slice(None), None, slice(None))
    cos, sin = cos[index].to(x.device), sin[index].to(x.device)
    x_real, x_imag = x.unflatten(-1, (-1, 2)).unbind(-1)
    x_rotated = torch.stack([-x_imag, x_real], dim=-1).flatten(3)
    return (x.float() * cos + x_rotated.float() * sin).to(x.dtype)


@contextlib.contextmanager
def traceable_rope():
    import diffusers.models.transformers.transformer_flux as flux

    original = flux.apply_rotary_emb
    flux.apply_rotary_emb = _rotary_emb_traceable
    try:
        yield
    finally:
        flux.apply_rotary_emb = original


class TraceableWanAttnProcessor:
    """diffusers' WanAttnProcessor for text-to-video attention, with the rotary embedding as a stack of its
    even and odd halves instead of a strided in-place write. The same arithmetic."""

    def __init__(self, original):
        self.original = original

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        from diffusers.models.transformers import transformer_wan as wan

        if attn.add_k_proj is not None:  # image-to-video's extra context: not a family this toolkit splits
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        query, key, value = wan._get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))  # [B, S, heads, D]
        if rotary_emb is not None:
            query, key = (_wan_rotary(t, *rotary_emb) for t in (query, key))
        out = wan.dispatch_attention_fn(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
                                        backend=getattr(self.original, "_attention_backend", None))
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def _wan_rotary(x, freqs_cos, freqs_sin):
    """x [B, S, heads, D]: pairs (x1, x2) rotated by (cos, sin) of their even / odd frequency columns."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).type_as(x)


@contextlib.contextmanager
def traceable(module: torch.nn.Module):
    """The exporter's rms_norm symbolic, FLUX's traceable rotary embedding and Wan's traceable attention on
    ``module`` for the duration of an export; everything restored afterwards."""
    for opset in range(9, 26):  # the symbolic is looked up per opset
        torch.onnx.register_custom_op_symbolic("aten::rms_norm", _rms_norm_symbolic, opset)
    swapped = []
    for sub in module.modules():
        processor = getattr(sub, "processor", None)
        if type(processor).__name__ == "WanAttnProcessor":
            swapped.append((sub, processor))
            sub.processor = TraceableWanAttnProcessor(processor)
    try:
        with traceable_rope():
            yield
    finally:
        for sub, processor in swapped:
            sub.processor = processor
