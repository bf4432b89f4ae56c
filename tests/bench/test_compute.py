"""Measured compute: what a run's block linears really executed, in full steps."""

import torch

from research.compute import BlockMacs, measured
from tcpade_trt.cache import make_policy
from tcpade_trt.runtime.sampler import initial_noise, sample

from ..conftest import make_inputs


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
    # diffusers' TaylorSeer hook predicting attention only: the feed-forwards still run on predicted steps
    peer, macs = measured(counter, lambda: run_peer(model, "diffusers-taylorseer", cond, noise, 10, 4.0, interval=3,
                                                    mode="attention"))
    assert macs / per_step > peer.full_steps + 0.5 * (10 - peer.full_steps)
    assert counter.linears and not any(m._forward_hooks for m in counter.linears)  # hooks removed


def test_a_linear_whose_output_a_hook_predicts_is_not_charged(models):
    """diffusers' TaylorSeer predicting attention and feed-forward replaces the forward of FLUX's single-stream
    proj_out / proj_mlp linears themselves: on predicted steps their products never run, so they cost nothing
    (a forward hook on the module fired anyway and charged them as computed)."""
    from tcpade_trt.bench.peers import run_peer

    model = models["tiny-flux"]
    _, cond = make_inputs(model, 1, 8, 8)
    noise = initial_noise(model, model.family.geometry(1, 8, 8).shape, [0])
    counter = BlockMacs(model.transformer)
    _, uncached = measured(counter, lambda: sample(model, cond, noise, num_steps=10))
    peer, macs = measured(counter, lambda: run_peer(model, "diffusers-taylorseer", cond, noise, 10,
                                                    mode="attention+ff", interval=3, warmup=1))
    assert peer.full_steps < 10
    # what still runs on a predicted step: the AdaLN projections, one row per sample (under 5% of a step here)
    assert peer.full_steps <= macs / (uncached / 10) < peer.full_steps + 0.05 * (10 - peer.full_steps)
