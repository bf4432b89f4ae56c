"""Measured compute: what a run's block linears really executed, in full steps."""

import torch

from research.compute import BlockMacs, measured
from tcpade_trt.cache import make_policy
from tcpade_trt.runtime.sampler import initial_noise, sample


def test_cached_runs_are_charged_their_full_steps_and_partial_skips_their_parts(models):
    from tcpade_trt.bench.peers import run_peer

    model = models["tiny-dit"]
    cond = model.class_cond(torch.tensor([1, 2]))
    noise = initial_noise(model, model.family.geometry(2, 8, 8).shape, [0, 1])
    counter = BlockMacs(model.transformer)
    run = lambda policy=None: sample(model, cond, noise, num_steps=10, guidance_scale=4.0, policy=policy)
    _, uncached = measured(counter, run)
    result, cached = measured(counter, lambda: run(make_policy("tcpade-fast")))
    # predicted steps run no block but DiT's tail, which reads block 0's (timestep, class) embedder: ~2% of a step
    per_step = uncached / 10
    assert result.full_steps <= cached / per_step <= result.full_steps + 0.05 * result.predicted_steps
    # diffusers' TaylorSeer hook predicts attention only: its feed-forwards still run on predicted steps
    peer, macs = measured(counter, lambda: run_peer(model, "diffusers-taylorseer", cond, noise, 10, 4.0, interval=3))
    assert macs / per_step > peer.full_steps + 0.5 * (10 - peer.full_steps)
    assert counter.linears and not any(m._forward_hooks for m in counter.linears)  # hooks removed
