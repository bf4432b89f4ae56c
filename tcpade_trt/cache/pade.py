"""The TC-Padé / TSI math, written once in torch and exported from here to ONNX (the Padé engines).

Three small graphs, so that a predicted step pays only for what changes per step:

    PadeFit(variant)(r1, r2, r3, fit_params) -> (base, scale, damping [B, S, D], magnitude [2])
    PadeEval()(base, scale, damping, k, x_in) -> x_out = x_in + base + scale * k / (1 + damping * k)
    TrajectoryStability()(r1, r2, r3)        -> tsi [B]

The fit depends only on the residual history, so a run of predicted steps between two full steps
fits once and evaluates per step (6 elementwise ops instead of the fit's ~20 and four reductions);
the TSI, also a function of the history alone, is computed once per fit and only when the gate is
on. The fit's magnitude bounds every prediction it can make (the policy's non-finite guard, one
host transfer per fit), and the evaluation returns the block stack's predicted output itself: the
runtime's loop does no arithmetic of its own on a predicted step.

r1, r2, r3: the most recent, second and third most recent residuals in the history, [B, S, D].
fit_params [7] float32, set on the host (one graph serves every step, phase and setting):
    k2, k3           offsets of r2 and r3 from r1's time (< 0; the sampler's time or the step index)
    c_pade, c1, c2   phase mixing: prediction = c_pade * core + c1 * r1 + c2 * r2
                     early (1 - paper's 0.7T): (0, alpha1, alpha2); middle: (1, 0, 0);
                     late: (1, beta/d, -beta/d)  i.e. core + beta (r1 - r2) / d, d = steps from r2 to r1
    lam              lambda of the stability factor sigma (paper, reference)
    c_max            largest damping of the rational variant (the config's c_max / the history's span)
k [1] float32: offset of the predicted step from r1's time (> 0).
Variants of the core (see TCPADE.md and the tcpade module for why each exists):
    rational  [1/1] Padé in the time offset fitted per element to r1, r2, r3 at their real times:
              core(k) = r1 + a k / (1 + c k), c clamped to [0, c_max] (damping only). Reproduces
              linear sequences exactly (c = 0) and saturating ones better than any polynomial.
    paper     the paper's equations: global stability factor sigma per sample,
              core = sigma (2 r1 - r2) / (1 + (sigma / lambda) r3), unit step spacing.
    reference the released code: elementwise sigma, core = sigma (2 r1 - r2) / (1 - 0.1 sigma),
              deviation from m = 0.6 r1 + 0.4 r2 clamped, blended back towards m, non-finite
              values replaced by r1 + 0.5 (r1 - r2).
    paper and reference do not depend on k: their fit returns the prediction as ``base`` with
    scale = damping = 0 (they refit every step anyway, since their predictions join the history).
TSI (trajectory stability indicator), per sample, in the paper's scale: u_i = (r_i - r_{i+1}) / ||r_i - r_{i+1}||,
tsi = ||u_1 + u_2|| in [0, 2]: 2 = the residual keeps moving in one direction, 0 = it reverses. The paper
predicts a step when tsi >= theta (0.7 fast, 1.0, 1.3 slow).
"""

from __future__ import annotations

import torch
from torch import nn

VARIANTS = ("rational", "paper", "reference")
FIT_PARAMS = ("k2", "k3", "c_pade", "c1", "c2", "lam", "c_max")
_EPS = 1e-12


def trajectory_stability(r1: torch.Tensor, r2: torch.Tensor, r3: torch.Tensor) -> torch.Tensor:
    """TSI per sample [B] from three residuals [B, S, D] (most recent first)."""
    d1 = (r1 - r2).flatten(1)
    d2 = (r2 - r3).flatten(1)
    u1 = d1 / (d1.norm(dim=1, keepdim=True) + _EPS)
    u2 = d2 / (d2.norm(dim=1, keepdim=True) + _EPS)
    return (u1 + u2).norm(dim=1)


def rational_fit(r1, r2, r3, k2, k3, c_max):
    """(a, c) of the [1/1] Padé f(k) = r1 + a k / (1 + c k) through (0, r1), (k2, r2), (k3, r3), per element.

    Written for few passes over the [B, S, D] tensors (each op is one pass in the exported graph,
    the whole graph runs once per run of predicted steps): about 16 elementwise ops.
    """
    d2, d3 = r2 - r1, r3 - r1
    # from a k_i / (1 + c k_i) = d_i for i = 2, 3:  c = (d3 - d2 k3 / k2) / (k3 (d2 - d3))
    den = k3 * (d2 - d3)
    c = torch.where(den == 0, 0.0, (d3 - d2 * (k3 / k2)) / den)  # equal differences: a straight line (c = 0)
    # damping only: growth saturates, never reaches a pole; a huge c (den ~ 0 but not 0) saturates at c_max
    c = torch.minimum(c.clamp(min=0.0), c_max)
    return d2 * (c + 1 / k2), c  # a = d2 (1 + c k2) / k2


def evaluate(base, scale, damping, k):
    """base + scale * k / (1 + damping * k): the predicted residual k steps after r1's step."""
    return base + scale * (k / (1 + damping * k))


def fit_magnitude(base: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[max |base|, max |scale|] as float32 [2]; NaN when any element of either is NaN or infinite.

    The fit clamps damping to >= 0, so k / (1 + damping k) <= k and every prediction of a fit over
    0 < k <= T is bounded by magnitude[0] + T magnitude[1]. A max alone would not do as a NaN
    detector: onnxruntime's ReduceMax skips NaNs that are not the first element; a float32 sum
    cannot, so 0 * sum (0, or NaN for any NaN or Inf) is added to both entries.
    """
    nonfinite = 0.0 * (base.sum(dtype=torch.float32) + scale.sum(dtype=torch.float32))
    largest = torch.stack([base.abs().flatten().max(), scale.abs().flatten().max()]).float()
    return largest + nonfinite


def paper_core(r1, r2, r3, lam):
    sigma = torch.exp(-lam * (r1 - r2).flatten(1).norm(dim=1) / ((r1 + r2).flatten(1).norm(dim=1) + _EPS))
    sigma = sigma[:, None, None]
    return sigma * (2 * r1 - r2) / (1 + (sigma / lam) * r3)


def reference_core(r1, r2, lam):
    sigma = torch.exp(-lam * (r1 - r2).abs() / (r1.abs() + r2.abs() + _EPS))
    r = sigma * (2 * r1 - r2) / (1 - 0.1 * sigma)
    m = 0.6 * r1 + 0.4 * r2
    bound = torch.maximum(0.5 * (r1 - r2).abs(), 0.1 * (r1.abs() + r2.abs()) / 2)
    r = m + torch.maximum(torch.minimum(r - m, bound), -bound)
    r = (0.7 * sigma + 0.3) * r + (0.7 - 0.7 * sigma) * m
    return torch.where(torch.isfinite(r), r, r1 + 0.5 * (r1 - r2))


class PadeFit(nn.Module):
    """(r1, r2, r3, fit_params [7]) -> (base, scale, damping, magnitude): the variant's prediction as
    a function of k, and the bound of its size (see fit_magnitude)."""

    def __init__(self, variant: str = "rational"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown TC-Padé variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.variant = variant

    def forward(self, r1: torch.Tensor, r2: torch.Tensor, r3: torch.Tensor, fit_params: torch.Tensor):
        k2, k3, c_pade, c1, c2, lam, c_max = (fit_params[i] for i in range(len(FIT_PARAMS)))
        if self.variant == "rational":
            a, c = rational_fit(r1, r2, r3, k2, k3, c_max)
            # c_pade (r1 + a k / (1 + c k)) + c1 r1 + c2 r2 = ((c_pade + c1) r1 + c2 r2) + (c_pade a) k / (1 + c k)
            base, scale, damping = (c_pade + c1) * r1 + c2 * r2, c_pade * a, c
        else:
            core = paper_core(r1, r2, r3, lam) if self.variant == "paper" else reference_core(r1, r2, lam)
            base, scale, damping = c_pade * core + (c1 * r1 + c2 * r2), torch.zeros_like(r1), torch.zeros_like(r1)
        return base, scale, damping, fit_magnitude(base, scale)


class PadeEval(nn.Module):
    """(base, scale, damping [B, S, D], k [1], x_in [B, S, D]) -> x_out = x_in + prediction [B, S, D]."""

    def forward(self, base, scale, damping, k, x_in):
        return x_in + evaluate(base, scale, damping, k)


class TrajectoryStability(nn.Module):
    """(r1, r2, r3) -> tsi [B]."""

    def forward(self, r1, r2, r3):
        return trajectory_stability(r1, r2, r3)


class PadePredictor:
    """The eager Padé math behind the interface the runtime's engines also implement:
    fit(r1, r2, r3, fit_params) -> (base, scale, damping, magnitude),
    eval(base, scale, damping, k, x_in) -> x_out, tsi(r1, r2, r3) -> [B]."""

    def __init__(self, variant: str = "rational"):
        self.fit, self.eval, self.tsi = PadeFit(variant), PadeEval(), TrajectoryStability()
