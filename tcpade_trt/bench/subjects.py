"""What `tcpade-trt bench` measures: a model (eager torch plus onnxruntime engines built for it) or
existing engine folders.

A BenchSubject gives, per batch size, the conditioning and initial noise every backend shares, and
maps final latents into the space quality is measured in: the demo model's decoded images, or for
other models the latents themselves laid out as [B, C, H, W] and scaled to [0, 1] by the
reference's range (there is no VAE in the loop), so PSNR reads on one scale for every model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError
from ..models.base import SplitModel, Tensors

GUIDANCE = {"flux": None, "wan": 5.0, "dit": 4.0}  # CFG scale per family (FLUX embeds its guidance)


@dataclass
class BenchSubject:
    name: str
    family: str
    torch_model: SplitModel | None  # None when only engine folders were given
    folders: dict[str, Path]  # precision -> onnxruntime engine folder
    shape_model: SplitModel  # geometry, noise and conditioning shapes (the torch model or an EngineModel)
    height: int
    width: int
    frames: int = 1
    text_tokens: int = 8
    notes: list[str] = field(default_factory=list)

    @property
    def guidance_scale(self) -> float | None:
        return GUIDANCE[self.family]

    def inputs(self, batch: int) -> tuple[Tensors, torch.Tensor]:
        """(conditioning, initial noise) for ``batch`` samples; seeds 0..batch-1, the same for every backend."""
        from ..runtime.sampler import initial_noise

        model = self.shape_model
        geometry = model.geometry(batch, self.height, self.width, self.frames)
        if self.name == "demo":
            from ..models.demo import CLASSES

            with torch.no_grad():
                cond = model.class_cond(torch.arange(batch) % len(CLASSES))
        else:
            from ..models.example_inputs import example_cond

            cond = example_cond(model, geometry, height=self.height, width=self.width, text_tokens=self.text_tokens,
                                generator=torch.Generator().manual_seed(1234 + batch))
        return cond, initial_noise(model, geometry.shape, list(range(batch)))

    def quality_space(self, latents: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] in about [0, 1]: images for the demo, else latents scaled by the reference's range."""
        if self.name == "demo":
            from ..models.demo import latents_to_images
            from .metrics import to_unit

            return to_unit(latents_to_images(latents))
        lo, hi = reference.min(), reference.max()
        return (self._spatial(latents) - lo) / (hi - lo).clamp(min=1e-12)

    def _spatial(self, latents: torch.Tensor) -> torch.Tensor:
        if self.family == "flux":  # packed [B, (H/2)(W/2), 4C] -> [B, C, H, W]
            from ..models.flux import unpack_latents

            return unpack_latents(latents, self.height, self.width)
        if self.family == "wan":  # [B, C, F, H, W] -> [B, C F, H, W]
            return latents.flatten(1, 2)
        return latents


def demo_subject(root: Path, batches, precisions, progress: bool) -> BenchSubject:
    from ..models.demo import load_demo_model
    from .demo_run import demo_engines

    model = load_demo_model()
    folders = demo_engines(model, root, max(batches), progress, tuple(precisions))
    return BenchSubject("demo", "flux", model, folders, model, 16, 16, text_tokens=4)


def model_subject(name: str, root: Path, batches, precisions, progress: bool) -> BenchSubject:
    """A built-in tiny model or a local diffusers folder, at build's default latent size for it."""
    from ..export.parts import BuildShape
    from ..models.registry import default_build_shape, load_model

    model = load_model(name)
    height, width, frames = default_build_shape(name, model.family)
    rows = max(batches) * (2 if GUIDANCE[model.family] else 1)  # CFG doubles the rows
    shape = BuildShape(height=height, width=width, frames=frames, text_tokens=8, batch_min=1,
                       batch_opt=max(batches), batch_max=rows)
    folders = ensure_engines(model, root, Path(name).name, shape, precisions, progress)
    return BenchSubject(Path(name).name, model.family, model, folders, model, height, width, frames)


def engines_subject(folders: list[Path]) -> BenchSubject:
    """Existing engine folders of one model (one per precision); no eager torch backend."""
    from ..engines.manifest import read_manifest
    from ..runtime.engine_model import EngineModel

    manifests = {Path(f): read_manifest(Path(f)) for f in folders}
    first_folder, first = next(iter(manifests.items()))
    for folder, m in manifests.items():
        if m.model["weights_sha256"] != first.model["weights_sha256"] or m.shape != first.shape:
            raise ConfigError(f"{folder} holds another model or shape than {first_folder}; bench compares "
                              "folders of one model built for one shape.")
        if m.backend != "onnxruntime":
            raise ConfigError(f"{folder} is a {m.backend} folder; bench runs onnxruntime folders (TensorRT plans: "
                              "use `tcpade-trt gpu-bench` on a GPU machine).")
    by_precision = {m.precision: f for f, m in manifests.items()}
    if len(by_precision) != len(manifests):
        raise ConfigError("give one engine folder per precision.")
    shape_model = EngineModel(first_folder)
    s = first.shape
    name = first.model["name"]
    return BenchSubject(name, first.model["family"], None, by_precision, shape_model, s["height"], s["width"],
                        s["frames"], text_tokens=s.get("text_tokens", 8),
                        notes=["no eager torch backend (engine folders given): x-torch and the diffusers peers "
                               "are left out"])


def ensure_engines(model: SplitModel, root: Path, prefix: str, shape, precisions, progress: bool,
                   int8_mode: str = "dynamic") -> dict[str, Path]:
    """onnxruntime folders root/PREFIX-PRECISION for ``model`` (reused when built by this source for
    these weights and this shape; the quantized ones reuse the FP32 folder's ONNX export)."""
    from ..engines.build import BuildOptions, build_engines, model_identity
    from ..engines.manifest import ManifestError, read_manifest, source_fingerprint

    weights = model_identity(model)["weights_sha256"]
    folders = {p: root / f"{prefix}-{p}" for p in ("fp32", *[p for p in precisions if p != "fp32"])}
    for precision, path in folders.items():
        try:
            m = read_manifest(path)
            if (m.versions.get("source") == source_fingerprint() and m.model["weights_sha256"] == weights
                    and m.shape == shape.as_dict()):
                continue
        except ManifestError:
            pass
        if progress:
            print(f"building onnxruntime {precision} engines -> {path}")
        options = BuildOptions(precision=precision, shape=shape, int8_mode=int8_mode,
                               reuse_onnx_from=folders["fp32"] if precision != "fp32" else None)
        build_engines(model, path, options, progress=progress)
    return {p: folders[p] for p in precisions}
