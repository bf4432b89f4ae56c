"""Measured compute of a run: multiply-accumulates of every linear layer inside the transformer's blocks.

    counter = BlockMacs(model.transformer)
    with counter.counting():
        sample(...)
    counter.macs      # summed over the run's block-stack work, whatever ran of it

Full steps alone undercount methods that skip only part of a step: diffusers' TaylorSeer hook predicts the
attention outputs but still runs every feed-forward, norm and AdaLN projection; FirstBlockCache and
cache-dit run their first block(s) on every step. Counting the linears that actually execute (forward
hooks, rows x in_features x out_features per call) charges each method for what it computes. Attention's
score and value products (tokens^2 x dims) are not linears and are left out: 2-4% of a block at the demo
models' 64-68 tokens. Divided by the MACs of one uncached step, this is the run's compute in full steps.
"""

from __future__ import annotations

import contextlib

from torch import nn

BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks", "blocks")


class BlockMacs:
    def __init__(self, transformer: nn.Module):
        self.linears = [m for name in BLOCK_LISTS for block in getattr(transformer, name, None) or ()
                        for m in block.modules() if isinstance(m, nn.Linear)]
        self.macs = 0

    def _count(self, module: nn.Linear, inputs, output) -> None:
        x = inputs[0]
        self.macs += (x.numel() // x.shape[-1]) * module.in_features * module.out_features

    @contextlib.contextmanager
    def counting(self):
        """Count the block linears' MACs of the runs inside the block (from zero)."""
        self.macs = 0
        handles = [m.register_forward_hook(self._count) for m in self.linears]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


def measured(counter: BlockMacs, run) -> tuple[object, int]:
    """(run(), its block MACs)."""
    with counter.counting():
        result = run()
    return result, counter.macs


