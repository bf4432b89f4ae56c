"""Ordering a caller's CUDA work and the engines' stream without host syncs."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def on_stream(stream):
    """Run the block on ``stream`` (the engines' stream; None on CPU: nothing to order): it starts after the
    caller's queued work, and the caller's next work waits for it (device-side waits, no host sync).
    Yields ``keep(tensor)``: call it on what leaves the block, so that the allocator does not hand its
    memory out again while the caller's queued work still reads it."""
    if stream is None:
        yield lambda tensor: tensor
        return
    caller = torch.cuda.current_stream()
    stream.wait_stream(caller)

    def keep(tensor):
        if isinstance(tensor, torch.Tensor):
            tensor.record_stream(caller)  # made on the engines' stream, used on the caller's
        return tensor

    with torch.cuda.stream(stream):
        yield keep
    caller.wait_stream(stream)
