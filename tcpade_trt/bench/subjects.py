"""What `tcpade-trt bench` and `demo` measure: a model (eager torch plus onnxruntime engines built for it)
or existing engine folders.

A BenchSubject gives, per batch size, the conditioning and initial noise every backend shares, and maps final
latents into the space quality is measured in (runtime/model_io.Sampling, which `tcpade-trt calibrate` uses too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from ..engines import registry
from ..errors import ConfigError
from ..export.parts import BuildShape
from ..models.family import Tensors
from ..models.model import Model
from ..runtime.model_io import Sampling

log = logging.getLogger(__name__)


@dataclass
class BenchSubject:
    name: str
    torch_model: Model | None  # None when only engine folders were given
    folders: dict[str, Path]  # precision -> onnxruntime engine folder
    shape_model: Model  # geometry, noise and conditioning shapes (the torch model or an engine folder's)
    height: int
    width: int
    frames: int = 1
    text_tokens: int = 8
    notes: list[str] = field(default_factory=list)

    @property
    def family(self):
        return self.shape_model.family

    @cached_property
    def sampling(self) -> Sampling:
        """Seeded inputs and the quality space (runtime/model_io.py), shared with `tcpade-trt calibrate`."""
        return Sampling(self.shape_model, self.height, self.width, self.frames, self.text_tokens)

    @property
    def guidance_scale(self) -> float | None:
        return self.sampling.guidance_scale

    def inputs(self, batch: int, first_seed: int = 0) -> tuple[Tensors, torch.Tensor]:
        return self.sampling.inputs(batch, first_seed)

    def quality_space(self, latents: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.sampling.quality_space(latents, reference)


def trained_subject(name: str) -> BenchSubject:
    """A shipped trained model ("demo": FLUX, "demo-dit": DiT) in eager torch, scored on its decoded images."""
    from ..models import demo
    from ..models.registry import load_model

    model = load_model(name)
    return BenchSubject(name, model, {}, model, demo.LATENT_SIZE, demo.LATENT_SIZE,
                        text_tokens=demo.TEXT_TOKENS if model.conditioner is not None else 8)


def demo_subject(root: Path, batch_max: int, precisions, progress: bool) -> BenchSubject:
    from ..models.demo import LATENT_SIZE

    subject = trained_subject("demo")
    shape = BuildShape(height=LATENT_SIZE, width=LATENT_SIZE, text_tokens=4, batch_min=1, batch_opt=batch_max,
                       batch_max=max(batch_max, 16))
    if precisions:
        subject.folders = ensure_engines(subject.torch_model, root, "demo", shape, tuple(precisions), progress)
    return subject


def model_subject(name: str, root: Path, batches, precisions, progress: bool) -> BenchSubject:
    """A built-in tiny model or a local diffusers folder, at build's default latent size for it."""
    from ..models.registry import default_build_shape, load_model

    model = load_model(name)
    height, width, frames = default_build_shape(name, type(model.family))
    rows = max(batches) * (2 if model.family.default_guidance else 1)  # CFG doubles the rows
    shape = BuildShape(height=height, width=width, frames=frames, text_tokens=8, batch_min=1,
                       batch_opt=max(batches), batch_max=rows)
    folders = ensure_engines(model, root, Path(name).name, shape, precisions, progress)
    return BenchSubject(Path(name).name, model, folders, model, height, width, frames)


def engines_subject(folders: list[Path]) -> BenchSubject:
    """Existing engine folders of one model (one per precision); no eager torch backend."""
    from ..engines.manifest import read_manifest
    from ..runtime.engine_parts import open_engines

    manifests = {Path(f): read_manifest(Path(f)) for f in folders}
    first_folder, first = next(iter(manifests.items()))
    for folder, m in manifests.items():
        if m.model["weights_sha256"] != first.model["weights_sha256"] or m.shape != first.shape:
            raise ConfigError(f"{folder} holds another model or shape than {first_folder}; bench compares "
                              "folders of one model built for one shape.")
        if registry.of(m).runs_on_gpu:
            raise ConfigError(f"{folder} is a {m.backend} folder; bench runs CPU folders ({m.backend}: use "
                              "`tcpade-trt gpu-bench` on a GPU machine).")
    by_precision = {variant(m.backend, m.precision): f for f, m in manifests.items()}
    if len(by_precision) != len(manifests):
        raise ConfigError("give one engine folder per backend and precision.")
    s = first.shape
    subject = BenchSubject(first.model["name"], None, by_precision, open_engines(first_folder), s["height"],
                           s["width"], s["frames"], text_tokens=s.get("text_tokens", 8),
                           notes=["no eager torch backend (engine folders given): x-torch and the diffusers peers "
                                  "are left out"])
    return subject


def variant(backend: str, precision: str) -> str:
    """An engine variant's name: 'int8' (the default backend's), 'openvino:bf16' (another backend's)."""
    return precision if backend == registry.DEFAULT else f"{backend}:{precision}"


def parse_variant(text: str) -> tuple[str, str]:
    """PRECISION -> (the default backend, PRECISION); BACKEND:PRECISION -> (BACKEND, PRECISION); one sentence if
    the backend or its precision is unknown."""
    backend, _, precision = text.rpartition(":")
    engines = registry.backend(backend or registry.DEFAULT)
    if precision not in engines.precisions:
        raise ConfigError(f"engine variant {text!r}: the {engines.name} backend builds "
                          f"{', '.join(engines.precisions)}; write PRECISION or BACKEND:PRECISION.")
    return engines.name, precision


def ensure_engines(model: Model, root: Path, prefix: str, shape: BuildShape, precisions, progress: bool,
                   int8_mode: str = "dynamic") -> dict[str, Path]:
    """Engine folders root/PREFIX-[BACKEND-]PRECISION for ``model``, one per variant in ``precisions`` ('int8',
    'openvino:fp32': see ``variant``), reused when built by this source for these weights and this shape; the
    default backend's quantized ones reuse its FP32 folder's ONNX export."""
    from ..builder.build import BuildOptions, build_engines, model_identity
    from ..engines.manifest import read_manifest, source_fingerprint
    from ..errors import ManifestError

    weights = model_identity(model)["weights_sha256"]
    wanted = [variant(*parse_variant(v)) for v in precisions]
    folders = {v: root / f"{prefix}-{v.replace(':', '-')}" for v in ("fp32", *[v for v in wanted if v != "fp32"])}
    for name, path in folders.items():
        backend, precision = parse_variant(name)
        try:
            m = read_manifest(path)
            if (m.versions.get("source") == source_fingerprint() and m.model["weights_sha256"] == weights
                    and m.shape == shape.as_dict()):
                continue
        except ManifestError:
            pass
        if progress:
            log.info("building %s %s engines -> %s", backend, precision, path)
        reuse = folders["fp32"] if backend == registry.DEFAULT and precision != "fp32" else None
        options = BuildOptions(backend=backend, precision=precision, shape=shape, int8_mode=int8_mode,
                               reuse_onnx_from=reuse)
        build_engines(model, path, options, progress=progress)
    return {v: folders[v] for v in wanted}
