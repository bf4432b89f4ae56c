"""Pictures of latents without a VAE: one preview for `generate` and `serve`, a sample's own."""

import torch

from tcpade_trt.runtime.images import latent_preview, save_latent_preview


def test_a_samples_preview_does_not_depend_on_the_samples_beside_it():
    """The server batches requests: each must get the picture it would get alone (the CLI once normalised over the
    whole batch, the server per sample)."""
    torch.manual_seed(0)
    quiet, loud = torch.randn(1, 4, 8, 8), 100 * torch.randn(1, 4, 8, 8)
    together = latent_preview(torch.cat([quiet, loud]))
    torch.testing.assert_close(together[:1], latent_preview(quiet))
    assert together.shape == (2, 3, 8, 8) and 0 <= float(together.min()) and float(together.max()) <= 1


def test_video_latents_preview_per_sample_and_write_a_gif(tmp_path):
    video = torch.randn(2, 16, 3, 8, 8)  # [B, C, F, H, W]
    preview = latent_preview(video)
    assert preview.shape == (2, 3, 3, 8, 8)
    torch.testing.assert_close(preview[1:], latent_preview(video[1:]))
    assert save_latent_preview(video, tmp_path / "v.gif").read_bytes()[:3] == b"GIF"
