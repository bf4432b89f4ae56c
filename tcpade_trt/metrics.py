"""Image quality against the uncached image of the same seed: PSNR, SSIM, relative L2, LPIPS.

Images are float tensors [B, C, H, W] in [0, 1] (runtime/images.to_unit converts a decoder's [-1, 1]).
Every metric returns one value per sample [B], so batch means and per-seed tables come from the
same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(image: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per sample; identical images give +inf."""
    mse = (image.double() - reference.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).float()


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(image: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0, win_size: int = 11) -> torch.Tensor:
    """Structural similarity per sample (Wang et al. 2004), 11x11 Gaussian window sigma 1.5, mean over
    channels and valid window positions, sample covariance (as scikit-image's
    ``structural_similarity(..., gaussian_weights=True, use_sample_covariance=True)``)."""
    x, y = image.double(), reference.double()
    c = x.shape[1]
    window = _gaussian_window(win_size).to(x.device)[None, None].repeat(c, 1, 1, 1)
    filt = lambda t: F.conv2d(t, window, groups=c)
    n = win_size * win_size  # sample covariance correction, as scikit-image
    cov_norm = n / (n - 1)
    mx, my = filt(x), filt(y)
    vx = cov_norm * (filt(x * x) - mx * mx)
    vy = cov_norm * (filt(y * y) - my * my)
    vxy = cov_norm * (filt(x * y) - mx * my)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def relative_l2(latents: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """||a - b|| / ||b|| per sample, on final latents."""
    return ((latents - reference).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)).float()


def lpips_metric():
    """An LPIPS function (images in [0, 1] -> [B]) or (None, reason) when it cannot run here.

    LPIPS needs the ``lpips`` package and its backbone weights (AlexNet from torchvision's model
    hub), which a machine without network access does not have.
    """
    try:
        import lpips  # noqa: F401
    except ImportError:
        return None, "LPIPS skipped: the `lpips` package is not installed"
    try:
        import lpips

        net = lpips.LPIPS(net="alex", verbose=False)
    except Exception as exc:  # weights download fails offline
        return None, f"LPIPS skipped: its weights could not be loaded ({type(exc).__name__})"
    return (lambda a, b: net(a * 2 - 1, b * 2 - 1).flatten()), None
