"""The offline engine build: model -> ONNX parts -> (quantized) engines -> a sealed engine folder.

    build_engines("demo", "engines/demo-int8", BuildOptions(precision="int8"))

Stages (each logged with its duration): load the model; export prepare / head / blocks / tail and
the Padé graphs to ONNX, each checked against torch; quantize the blocks (INT8 / FP8) and check
again; the backend's own engines (engines/<backend>/: TensorRT plans, checked against torch); hash
everything into the manifest. All of it happens in a temporary sibling folder that is renamed to
``out`` only at the very end, so an interrupted or failed build leaves nothing that looks complete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..cache.pade import VARIANTS
from ..engines import registry
from ..engines.backend import BuildContext
from ..engines.manifest import Manifest, build_versions, sha256_state_dict
from ..errors import BuildError, ConfigError, TcpadeError
from ..export.parts import PARTS, BuildShape, batch_axes
from ..export.tolerances import TOLERANCE, check_batches  # noqa: F401 (the build's tolerances, for callers)
from ..models.model import Model
from ..models.registry import load_model
from ..versions import require_torch_for_export
from . import blocks_stage, parts_stage
from .device import (
    DEVICES,
    cheap_parts_model,
    check_fits,
    load_dtype,
    resolve_device,
    torch_device,
)
from .output_folder import building_folder, check_destination

log = logging.getLogger(__name__)

BACKENDS = registry.names()  # engines/<backend>/, found by engines/registry.py
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")


@dataclass
class TensorRTOptions:
    """TensorRT builder knobs (tensorrt backend only)."""

    optimization_level: int = 3  # 0-5: higher searches longer for faster kernels
    timing_cache: str | None = None  # reuse kernel timings across builds
    refittable: bool = False  # weights can be swapped later (LoRA) without a rebuild
    weight_streaming: bool = False  # stream weights from host memory (strongly typed only)
    workspace_gb: float = 8.0


@dataclass
class BuildOptions:
    backend: str = registry.DEFAULT
    precision: str = "fp32"
    shape: BuildShape = field(default_factory=lambda: BuildShape(height=16, width=16))
    int8_mode: str = "dynamic"  # "dynamic" (no calibration) or "static" (QDQ, calibrated)
    calibration_samples: int = 8
    calibration_steps: int = 20
    calibration_seed: int = 0
    opset: int = 18
    pade_variants: tuple[str, ...] = VARIANTS
    reuse_onnx_from: Path | None = None  # an onnxruntime fp32 folder of the same model and shape
    # onnxruntime backend: rewrite the exported parts with onnxruntime's fused kernels (engines/onnxruntime/fusions.py);
    # off for folders meant for onnxruntime's TensorRT execution provider
    ort_fusions: bool = True
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)
    # where the model is loaded and calibrated: "cpu" (fp32 in host memory), "cuda" (on the GPU in the dtype of
    # the blocks: bf16 for bf16 / fp8 / int8, as NVIDIA's demo/Diffusion) or "auto" (cuda for TensorRT builds on
    # a machine with a GPU); see builder/device.py
    device: str = "auto"

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)} (got {self.backend!r}).")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r}).")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)} (got {self.device!r}).")
        backend = registry.backend(self.backend)
        backend.validate(self)  # its precisions and its own options
        if self.int8_mode not in ("dynamic", "static"):
            raise ConfigError(f"int8 mode must be 'dynamic' or 'static' (got {self.int8_mode!r}).")
        s = self.shape
        if not 1 <= s.batch_min <= s.batch_opt <= s.batch_max:
            raise ConfigError(f"need 1 <= batch min <= opt <= max (got {s.batch_min}, {s.batch_opt}, {s.batch_max}).")
        if self.precision == "fp8":  # ModelOpt's recipe, whatever the backend
            from ..engines.modelopt_quant import require_modelopt

            require_modelopt(self.precision)
        if self.reuse_onnx_from is not None:
            from ..engines.manifest import read_manifest

            source = read_manifest(self.reuse_onnx_from, verify_hashes=False)  # one sentence if it is no folder
            if not parts_stage.holds_fp32_onnx(source):
                raise ConfigError(f"{self.reuse_onnx_from} is a {source.backend} {source.precision} folder; reusing "
                                  "an ONNX export needs an fp32 one whose engines are its ONNX files (onnxruntime).")
            if source.shape != self.shape.as_dict():
                raise ConfigError(f"{self.reuse_onnx_from} was built for another shape ({source.shape}); build "
                                  "without reusing it, or give the same --height/--width/--frames/--batch-*.")
            if source.options.get("ort_fusions") and not backend.reads_onnxruntime_ops:
                raise ConfigError(f"{self.reuse_onnx_from} holds onnxruntime's fused ops, which {backend.title} cannot "
                                  "parse; build without reusing it, or reuse a folder built with --no-ort-fusions.")
        sizes = {"height": s.height, "width": s.width, "frames": s.frames, "text tokens": s.text_tokens,
                 "calibration samples": self.calibration_samples, "calibration steps": self.calibration_steps}
        for name, value in sizes.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1 (got {value!r}).")

    def validate_for(self, model: Model) -> None:
        """The shape against the model's family (FLUX: even sizes; DiT: square, a multiple of the patch;
        Wan: multiples of the patch): one sentence before the export."""
        s = self.shape
        model.family.geometry(s.batch_min, s.height, s.width, s.frames)


class _Stages:
    """Progress with a duration per stage, on one tqdm bar."""

    def __init__(self, total: int, progress: bool):
        self.bar = tqdm(total=total, desc="build", disable=not progress, leave=False)
        self.log: list[dict] = []
        self.progress = progress

    def run(self, name: str, fn, *args, **kwargs):
        self.bar.set_postfix_str(name)
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except (TcpadeError, MemoryError):  # already one sentence / the machine's
            raise
        except Exception as exc:  # unforeseen: one sentence naming the stage; the traceback stays in the log
            log.debug("build stage %r failed", name, exc_info=True)
            words = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise BuildError(f"the build failed at '{name}': {type(exc).__name__}: {words} (nothing was written; "
                             "the traceback is in the log with TCPADE_LOG=debug: please report it).") from exc
        seconds = time.perf_counter() - start
        self.log.append({"stage": name, "seconds": round(seconds, 2)})
        if self.progress:  # a line per finished stage, above the bar
            log.info("  %-38s %6.1f s", name, seconds)
        self.bar.update()
        return result

    def close(self):
        self.bar.close()


def model_identity(model: Model) -> dict:
    state = dict(model.transformer.state_dict())
    if model.conditioner is not None:
        state.update({f"conditioner.{k}": v for k, v in model.conditioner.state_dict().items()})
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.family.config).items()
              if not k.startswith("_") or k == "_class_name"}
    identity = {"name": model.name, "family": model.family.name, "class": model.family.diffusers_class,
                "config": config, "weights_sha256": sha256_state_dict(state)}
    if model.family.scheduler_config:  # the pipeline's own scheduler: generations on the engines sample with it
        identity["scheduler"] = model.family.scheduler_config
    return identity


def build_engines(model: str | Model, out: str | Path, options: BuildOptions | None = None,
                  progress: bool = True, force: bool = False) -> Manifest:
    """Build an engine folder at ``out``, replacing an existing one only once the new one is complete.

    ``out`` may be new, empty, or an engine folder this toolkit wrote; anything else is refused
    before any work (``force=True`` replaces another folder, never the source model's). See
    output_folder.py for the temporary folder, the final rename and the cleanup of killed builds.
    """
    options = options or BuildOptions()
    options.validate()
    require_torch_for_export()
    out = Path(out)
    check_destination(out, _model_path(model), force)
    if isinstance(model, Model):
        options.validate_for(model)
    registry.backend(options.backend).check_build_machine(options)  # e.g. TensorRT and a capable GPU, before export
    device = resolve_device(options.device, options.backend)
    reduced = load_dtype(device, options.precision) != torch.float32
    if device == "cuda" and options.reuse_onnx_from is not None and reduced:
        raise ConfigError(f"--reuse-onnx takes the fp32 export of a CPU build, but a {options.precision} build on the "
                          "GPU loads the model in bf16: leave --reuse-onnx out (the GPU exports it in seconds), or "
                          "build with --device cpu.")
    check_fits(_model_path(model), device, options.backend, options.precision, out)  # before anything loads
    with building_folder(out) as tmp:
        return _build_into(model, tmp, options, device, progress)


def _model_path(model) -> Path | None:
    """The local folder a model comes from (protected from being overwritten), if any."""
    name = model if isinstance(model, (str, Path)) else getattr(model, "name", "")
    path = Path(str(name)).expanduser()
    return path if str(name) and path.exists() else None


def _build_into(model_ref, folder: Path, options: BuildOptions, device: str, progress: bool) -> Manifest:
    shape, precision = options.shape, options.precision
    quantized = precision in ("int8", "fp8")
    # each model part is exported, then checked; the Padé graphs are exported
    exports = 1 if options.reuse_onnx_from else 2 * len(PARTS) + len(options.pade_variants) + 2
    backend = registry.backend(options.backend)
    stages = _Stages(1 + exports + 2 * quantized + backend.build_stages + 1, progress)
    try:
        if isinstance(model_ref, Model):
            model = stages.run(f"model {model_ref.name} given", lambda: model_ref)
        else:
            dtype = load_dtype(device, precision)
            model = stages.run(f"load {model_ref} ({device}, {str(dtype).replace('torch.', '')})", load_model,
                               model_ref, device=torch_device(device), dtype=dtype)
            options.validate_for(model)
        model.transformer.eval()
        identity = model_identity(model)
        with torch.no_grad():
            cheap = cheap_parts_model(model)  # the model itself in fp32 on the host; else an fp32 copy of them
            if options.reuse_onnx_from:
                entries = stages.run(f"reuse fp32 ONNX of {options.reuse_onnx_from.name}", parts_stage.copy_fp32_parts,
                                     options.reuse_onnx_from, folder, identity, shape)
            else:
                entries = parts_stage.export_all(model, cheap, folder, options, stages, identity)
            quantization = None
            if quantized or precision in ("bf16", "fp16"):
                axes = batch_axes(cheap, shape)
            if quantized:
                quantization = stages.run(f"quantize blocks ({precision})", blocks_stage.quantize_blocks, model,
                                          folder, entries["blocks"], options, axes)
                stages.run(f"check blocks ({precision}) against torch", blocks_stage.check_quantized_blocks, model,
                           folder, entries["blocks"], options, quantization)
            elif precision in ("bf16", "fp16") and not backend.needs_fp32_blocks(options):  # (TensorRT's)
                quantization = stages.run(f"export blocks ({precision})", blocks_stage.export_reduced_precision_blocks,
                                          model, folder, entries["blocks"], options, axes)
            # the backend's own engines from the ONNX files (TensorRT plans, each checked against torch)
            context = BuildContext(model, cheap, options, quantization)
            backend.build(folder, entries, context, stages)
            quantization = context.quantization  # a backend may record how it reduced the precision (OpenVINO)
        manifest = Manifest(
            backend=options.backend, precision=precision, model=identity, shape=shape.as_dict(),
            parts=entries, versions=build_versions(backend), quantization=quantization,
            extras=_write_extras(model, folder), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            options={"int8_mode": options.int8_mode, "opset": options.opset, "device": device,
                     **backend.manifest_options(options)},
            # the model's calibrated TC-Padé schedules travel with its engines (the same weights)
            calibration={"schedules": [[t, b, list(s)] for t, b, s in model.calibrated], "source": "the model's own"}
            if model.calibrated else {},
        )
        stages.run("hash files", manifest.seal, folder)
        manifest.build_log = stages.log
        manifest.write(folder)
        return manifest
    finally:
        stages.close()


def _write_extras(model: Model, folder: Path) -> dict:
    """Files besides the engines that a generation needs (the demo's learned class embeddings)."""
    if model.conditioner is None:
        return {}
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.conditioner.state_dict().items()},
              str(folder / "conditioner.safetensors"))
    return {"conditioner": "conditioner.safetensors"}


__all__ = ["BACKENDS", "PRECISIONS", "BuildOptions", "TensorRTOptions", "TcpadeError", "build_engines"]
