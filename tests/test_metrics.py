"""Our PSNR / SSIM against scikit-image's, on images with known relations."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tcpade_trt.metrics import psnr, relative_l2, ssim
from tcpade_trt.runtime.images import to_unit


def image_pair(seed):
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(2, 3, 32, 32, generator=gen)
    noisy = (ref + 0.05 * torch.randn(2, 3, 32, 32, generator=gen)).clamp(0, 1)
    return noisy, ref


@pytest.mark.parametrize("seed", range(3))
def test_psnr_and_ssim_match_scikit_image(seed):
    img, ref = image_pair(seed)
    ours_psnr, ours_ssim = psnr(img, ref), ssim(img, ref)
    for i in range(2):
        a, b = img[i].permute(1, 2, 0).numpy(), ref[i].permute(1, 2, 0).numpy()
        assert ours_psnr[i].item() == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-4)
        expected = structural_similarity(b, a, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=True)
        assert ours_ssim[i].item() == pytest.approx(expected, abs=1e-5)


def test_identical_images_are_perfect_and_worse_noise_scores_lower():
    img, ref = image_pair(0)
    assert torch.isinf(psnr(ref, ref)).all() and torch.allclose(ssim(ref, ref), torch.ones(2))
    worse = (ref + 0.2 * torch.randn_like(ref)).clamp(0, 1)
    assert (psnr(worse, ref) < psnr(img, ref)).all() and (ssim(worse, ref) < ssim(img, ref)).all()
    assert torch.allclose(relative_l2(ref * 1.1, ref), torch.full((2,), 0.1), atol=1e-6)
    assert to_unit(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0.0, 0.5, 1.0]
    assert np.isfinite(psnr(img, ref).numpy()).all()
