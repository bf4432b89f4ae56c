"""Measured compute of a run: multiply-accumulates of every linear layer inside the transformer's blocks.

    counter = BlockMacs(model.transformer)
    with counter.counting():
        sample(...)
    counter.macs      # summed over the run's block-stack work, whatever ran of it

Full steps alone undercount methods that skip only part of a step: diffusers' TaylorSeer hook predicts the
attention outputs but still runs every feed-forward, norm and AdaLN projection; FirstBlockCache and
cache-dit run their first block(s) on every step. Counting the linears that actually execute (every
F.linear call on a block linear's weight, rows x in_features x out_features) charges each method for what it
computes. Attention's score and value products (tokens^2 x dims) are not linears and are left out: 2-4% of a
block at the demo models' 64-68 tokens. Divided by the MACs of one uncached step, this is the run's compute in
full steps.
"""

from __future__ import annotations

import contextlib

from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks", "blocks")


class BlockMacs(TorchFunctionMode):
    """Counts F.linear calls on the block linears' weights (rows x in_features x out_features each) while
    active: a call is counted where the product really runs, so a hook that replaces a linear's forward with a
    prediction (diffusers' TaylorSeer on FLUX's single-stream ``proj_out``) is not charged for it, as a forward
    hook on the module would be."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.linears = [m for name in BLOCK_LISTS for block in getattr(transformer, name, None) or ()
                        for m in block.modules() if isinstance(m, nn.Linear)]
        self._weights = {id(m.weight) for m in self.linears}
        self.macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and len(args) > 1 and id(args[1]) in self._weights:
            x, weight = args[0], args[1]
            self.macs += (x.numel() // x.shape[-1]) * weight.shape[0] * weight.shape[1]
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def counting(self):
        """Count the block linears' MACs of the runs inside the block (from zero)."""
        self.macs = 0
        with self:
            yield self


def measured(counter: BlockMacs, run) -> tuple[object, int]:
    """(run(), its block MACs)."""
    with counter.counting():
        result = run()
    return result, counter.macs


