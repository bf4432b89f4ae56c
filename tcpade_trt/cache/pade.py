"""The TC-Padé / TSI math, written once in torch and exported from here to ONNX (the Padé engine).

    PadeTSI(variant)(r1, r2, r3, params) -> (prediction [B, S, D], tsi [B])

r1, r2, r3: the most recent, second and third most recent residuals in the history, [B, S, D].
params [8] float32, computed on the host per step (so one graph serves every step, phase and setting):
    k            offset of the predicted step from r1's step (> 0)
    k2, k3       offsets of r2 and r3 from r1's step (< 0)
    c_pade, c1, c2   phase mixing: prediction = c_pade * core + c1 * r1 + c2 * r2
                     early (1 - paper's 0.7T): (0, alpha1, alpha2); middle: (1, 0, 0);
                     late: (1, beta, -beta)  i.e. core + beta (r1 - r2)
    lam          lambda of the stability factor sigma (paper, reference)
    c_max        largest damping of the rational variant
Variants of the core (see TCPADE.md and the tcpade module for why each exists):
    rational  [1/1] Padé in the step offset fitted per element to r1, r2, r3 at their real steps:
              core(k) = r1 + a k / (1 + c k), c clamped to [0, c_max] (damping only). Reproduces
              linear sequences exactly (c = 0) and saturating ones better than any polynomial.
    paper     the paper's equations: global stability factor sigma per sample,
              core = sigma (2 r1 - r2) / (1 + (sigma / lambda) r3), unit step spacing.
    reference the released code: elementwise sigma, core = sigma (2 r1 - r2) / (1 - 0.1 sigma),
              deviation from m = 0.6 r1 + 0.4 r2 clamped, blended back towards m, non-finite
              values replaced by r1 + 0.5 (r1 - r2).
TSI (trajectory stability indicator), per sample: u_i = (r_i - r_{i+1}) / ||r_i - r_{i+1}||,
tsi = 0.5 ||u_1 - u_2|| in [0, 1]: 0 = the residual keeps moving in one direction, 1 = it reverses.
"""

from __future__ import annotations

import torch
from torch import nn

VARIANTS = ("rational", "paper", "reference")
NUM_PARAMS = 8
_EPS = 1e-12


def trajectory_stability(r1: torch.Tensor, r2: torch.Tensor, r3: torch.Tensor) -> torch.Tensor:
    """TSI per sample [B] from three residuals [B, S, D] (most recent first)."""
    d1 = (r1 - r2).flatten(1)
    d2 = (r2 - r3).flatten(1)
    u1 = d1 / (d1.norm(dim=1, keepdim=True) + _EPS)
    u2 = d2 / (d2.norm(dim=1, keepdim=True) + _EPS)
    return 0.5 * (u1 - u2).norm(dim=1)


def rational_core(r1, r2, r3, k, k2, k3, c_max):
    """[1/1] Padé f(k) = r1 + a k / (1 + c k) through (0, r1), (k2, r2), (k3, r3), per element."""
    d2, d3 = r2 - r1, r3 - r1
    # from a k_i / (1 + c k_i) = d_i for i = 2, 3:  c = (d3 - d2 k3 / k2) / (k3 (d2 - d3))
    c = (d3 - d2 * (k3 / k2)) / (k3 * (d2 - d3))
    c = torch.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)  # collinear points (0/0): a straight line
    c = torch.minimum(c.clamp(min=0.0), c_max)  # damping only: growth saturates, never reaches a pole
    # a = d2 (1 + c k2) / k2, and the prediction r1 + a k / (1 + c k), in one expression
    return r1 + d2 * ((1 + c * k2) * (k / k2)) / (1 + c * k)


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


class PadeTSI(nn.Module):
    """Prediction and TSI for one step; the same module runs eagerly and as the exported engine."""

    def __init__(self, variant: str = "rational"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown TC-Padé variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.variant = variant

    def forward(self, r1: torch.Tensor, r2: torch.Tensor, r3: torch.Tensor, params: torch.Tensor):
        k, k2, k3, c_pade, c1, c2, lam, c_max = (params[i] for i in range(NUM_PARAMS))
        if self.variant == "rational":
            core = rational_core(r1, r2, r3, k, k2, k3, c_max)
        elif self.variant == "paper":
            core = paper_core(r1, r2, r3, lam)
        else:
            core = reference_core(r1, r2, lam)
        prediction = c_pade * core + c1 * r1 + c2 * r2
        return prediction, trajectory_stability(r1, r2, r3)
