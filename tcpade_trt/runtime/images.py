"""Writing generated images and videos: PNG (or any PIL format by extension) and animated GIF.

Every writer refuses non-finite values (a NaN image is never written) and writes atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..errors import TcpadeError
from ..paths import atomic_path


class NonFiniteOutputError(TcpadeError):
    """A generation produced NaN or Inf values."""


def require_finite(latents: torch.Tensor, what: str = "the generation") -> None:
    """One host sync per generation: a non-finite result is reported, never written as an image."""
    if not bool(torch.isfinite(latents.sum(dtype=torch.float32))):
        raise NonFiniteOutputError(f"{what} produced NaN or Inf values, so no image was written; check the inputs, "
                                   "or rebuild the engines in a wider precision (fp32 / bf16).")


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """A decoder's [-1, 1] -> [0, 1], the range the writers and the metrics take."""
    return ((images + 1) / 2).clamp(0, 1)


MAX_SIDE = {".webp": 16383, ".jpg": 65535, ".jpeg": 65535, ".gif": 65535, ".png": 65535, ".bmp": 65535}


def save_images(images: torch.Tensor, path: Path, scale: int = 1) -> Path:
    """[B, 3, H, W] in [0, 1] -> one image file, samples side by side (nearest-neighbour upscaled)."""
    from PIL import Image

    require_finite(images)
    _, _, height, width = images.shape
    side, limit = max(height, width * images.shape[0]) * scale, MAX_SIDE.get(Path(path).suffix.lower(), 65535)
    if side > limit:  # before the upscaled copy is allocated (PIL would refuse it after)
        from ..errors import ConfigError

        raise ConfigError(f"the image would be {side} pixels wide, more than {Path(path).suffix} files hold "
                          f"({limit}); lower --scale or the samples per image.")
    strip = torch.cat(list(images), dim=2)  # [3, H, B*W]
    if scale > 1:
        strip = strip.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    array = (strip.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp)
    return Path(path)


def save_gif(frames: list, path: Path, frame_ms: int) -> Path:
    """PIL images -> an animated GIF at ``path``, looping."""
    with atomic_path(path) as tmp:
        _write_gif(frames, tmp, frame_ms)
    return Path(path)


def _write_gif(frames: list, target, frame_ms: int) -> None:
    frames[0].save(target, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)


def png_bytes(image: torch.Tensor) -> bytes:
    """One image [3, H, W] in [0, 1] -> PNG file bytes (a server's answer)."""
    from PIL import Image

    require_finite(image)
    array = (image.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def gif_bytes(video: torch.Tensor, frame_ms: int = 62) -> bytes:
    """One video [3, F, H, W] in [0, 1] -> animated GIF file bytes (a server's answer)."""
    from PIL import Image

    require_finite(video)
    frames = (video.clamp(0, 1) * 255).round().byte().permute(1, 2, 3, 0).cpu().numpy()  # [F, H, W, 3]
    buffer = io.BytesIO()
    _write_gif([Image.fromarray(f) for f in frames], buffer, frame_ms)
    return buffer.getvalue()


def save_video(video: torch.Tensor, path: Path, frame_ms: int = 62) -> Path:
    """[3, F, H, W] in [-1, 1] -> an animated GIF."""
    from PIL import Image

    require_finite(video)
    frames = ((video.clamp(-1, 1) + 1) * 127.5).byte().permute(1, 2, 3, 0).cpu().numpy()
    return save_gif([Image.fromarray(f) for f in frames], path, frame_ms)


def latent_preview(latents: torch.Tensor) -> torch.Tensor:
    """The one picture of latents without a VAE (``generate`` and ``serve`` alike): the first three channels of
    [B, C, H, W] (video [B, C, F, H, W]; ``Family.spatial_latents`` gives that layout) in [0, 1], each sample
    normalised on its own, so that a sample's preview does not depend on the samples generated beside it."""
    x = latents.float()[:, :3]
    low, high = x.flatten(1).amin(1), x.flatten(1).amax(1)
    per_sample = (-1,) + (1,) * (x.ndim - 1)
    return (x - low.view(per_sample)) / (high - low + 1e-8).view(per_sample)


def save_latent_preview(latents: torch.Tensor, path: Path) -> Path:
    """``latent_preview`` written: samples side by side (video: a GIF over the frames of the first sample)."""
    from PIL import Image

    require_finite(latents)
    x = latent_preview(latents)
    if x.ndim == 5:  # video [B, 3, F, H, W]: an animated GIF of the first sample
        frames = [Image.fromarray((x[0, :, f].permute(1, 2, 0) * 255).byte().numpy()).resize((128, 128), 0)
                  for f in range(x.shape[2])]
        return save_gif(frames, path, frame_ms=200)
    return save_images(x, path, scale=8)
