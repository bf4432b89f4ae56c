"""The offline engine build: model -> ONNX parts -> (quantized) engines -> a sealed engine folder.

    build_engines("demo", "engines/demo-int8", BuildOptions(precision="int8"))

Stages (each logged with its duration): load the model; export prepare / head / blocks / tail and
the Padé graphs to ONNX, each checked against torch; quantize the blocks (INT8 / FP8) and check
again; build TensorRT plans (tensorrt backend); hash everything into the manifest. All of it
happens in a temporary sibling folder that is renamed to ``out`` only at the very end, so an
interrupted or failed build leaves nothing that looks complete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..cache.pade import VARIANTS
from ..engines.manifest import Manifest, PartEntry, build_versions, sha256_state_dict
from ..errors import ConfigError, TcpadeError
from ..export.onnx_export import check_part, export_part
from ..export.onnx_files import copy_model, move_model, referenced_data_files, scratch_folder
from ..export.pade_onnx import export_pade, pade_io
from ..export.parts import PARTS, BuildShape, batch_axes, example_tensors
from ..models.model import Model
from ..models.registry import load_model
from ..versions import require_torch_for_export
from .output_folder import building_folder, check_destination

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")
# relative L2 error of each engine against torch fp32 that a build accepts
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2, "int8": 0.1, "fp8": 0.2}


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
    backend: str = "onnxruntime"
    precision: str = "fp32"
    shape: BuildShape = field(default_factory=lambda: BuildShape(height=16, width=16))
    int8_mode: str = "dynamic"  # "dynamic" (no calibration) or "static" (QDQ, calibrated)
    calibration_samples: int = 8
    calibration_steps: int = 20
    calibration_seed: int = 0
    opset: int = 18
    pade_variants: tuple[str, ...] = VARIANTS
    reuse_onnx_from: Path | None = None  # an onnxruntime fp32 folder of the same model and shape
    # onnxruntime backend: rewrite the exported parts with onnxruntime's fused kernels (ort_fusions.py);
    # off for folders meant for onnxruntime's TensorRT execution provider
    ort_fusions: bool = True
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)} (got {self.backend!r}).")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r}).")
        if self.backend == "onnxruntime" and self.precision in ("fp16", "bf16"):
            raise ConfigError(f"{self.precision} blocks need a GPU engine: use --backend tensorrt, or fp32 / int8 / "
                              "fp8 with onnxruntime (onnxruntime's CPU kernels have no BF16 MatMul).")
        if self.int8_mode not in ("dynamic", "static"):
            raise ConfigError(f"int8 mode must be 'dynamic' or 'static' (got {self.int8_mode!r}).")
        s = self.shape
        if not 1 <= s.batch_min <= s.batch_opt <= s.batch_max:
            raise ConfigError(f"need 1 <= batch min <= opt <= max (got {s.batch_min}, {s.batch_opt}, {s.batch_max}).")
        if self.backend == "tensorrt" and self.tensorrt.optimization_level not in range(6):
            raise ConfigError("the TensorRT builder optimization level must be 0-5.")
        if self.precision == "fp8" or (self.precision == "int8" and self.backend == "tensorrt"):
            from ..engines.modelopt_quant import require_modelopt

            require_modelopt(self.precision)
        if self.reuse_onnx_from is not None:
            from ..engines.manifest import read_manifest

            source = read_manifest(self.reuse_onnx_from, verify_hashes=False)  # one sentence if it is no folder
            if source.backend != "onnxruntime" or source.precision != "fp32":
                raise ConfigError(f"{self.reuse_onnx_from} is a {source.backend} {source.precision} folder; reusing "
                                  "an ONNX export needs an onnxruntime fp32 one.")
            if source.shape != self.shape.as_dict():
                raise ConfigError(f"{self.reuse_onnx_from} was built for another shape ({source.shape}); build "
                                  "without reusing it, or give the same --height/--width/--frames/--batch-*.")
        if self.reuse_onnx_from is not None and self.backend == "tensorrt" and _fused(self):
            raise ConfigError(f"{self.reuse_onnx_from} holds onnxruntime's fused ops, which TensorRT cannot parse; "
                              "build without reusing it, or reuse a folder built with --no-ort-fusions.")
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
        result = fn(*args, **kwargs)
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
    if options.backend == "tensorrt":
        from ..engines import trt_backend

        trt_backend.check_build_machine(options.precision)  # TensorRT and a capable GPU, before the export
    with building_folder(out) as tmp:
        return _build_into(model, tmp, options, progress)


def _model_path(model) -> Path | None:
    """The local folder a model comes from (protected from being overwritten), if any."""
    name = model if isinstance(model, (str, Path)) else getattr(model, "name", "")
    path = Path(str(name)).expanduser()
    return path if str(name) and path.exists() else None


def _build_into(model_ref, folder: Path, options: BuildOptions, progress: bool) -> Manifest:
    shape, precision = options.shape, options.precision
    quantized = precision in ("int8", "fp8")
    # each model part is exported, then checked; the Padé graphs are exported
    exports = 1 if options.reuse_onnx_from else 2 * len(PARTS) + len(options.pade_variants) + 2
    stages = _Stages(1 + exports + 2 * quantized + 2 * (options.backend == "tensorrt") + 1, progress)
    try:
        if isinstance(model_ref, Model):
            model = stages.run(f"model {model_ref.name} given", lambda: model_ref)
        else:
            model = stages.run(f"load {model_ref}", load_model, model_ref)
            options.validate_for(model)
        model.transformer.eval()
        identity = model_identity(model)
        with torch.no_grad():
            if options.reuse_onnx_from:
                entries = stages.run(f"reuse fp32 ONNX of {options.reuse_onnx_from.name}", _copy_fp32_parts,
                                     options.reuse_onnx_from, folder, identity, shape)
            else:
                entries = _export_all(model, folder, options, stages)
            quantization = None
            if quantized:
                quantization = stages.run(f"quantize blocks ({precision})", _quantize_blocks, model, folder,
                                          entries["blocks"], options)
                stages.run(f"check blocks ({precision}) against torch", _check_quantized_blocks, model, folder,
                           entries["blocks"], options, quantization)
            elif precision in ("bf16", "fp16"):
                quantization = stages.run(f"export blocks ({precision})", _export_reduced_precision_blocks, model,
                                          folder, entries["blocks"], options)
            if options.backend == "tensorrt":
                from ..engines.trt_backend import build_plans
                from .plan_check import check_plans

                stages.run("build TensorRT plans", build_plans, folder, entries, options)
                stages.run("check TensorRT plans against torch", check_plans, folder, entries, model, options)
        manifest = Manifest(
            backend=options.backend, precision=precision, model=identity, shape=shape.as_dict(),
            parts=entries, versions=build_versions(options.backend), quantization=quantization,
            extras=_write_extras(model, folder), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            options={"int8_mode": options.int8_mode, "opset": options.opset, "tensorrt": asdict(options.tensorrt),
                     "ort_fusions": options.backend == "onnxruntime" and _fused(options)},
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


def _export_all(model: Model, folder: Path, options: BuildOptions, stages: _Stages) -> dict[str, PartEntry]:
    """Every part and Padé variant to fp32 ONNX, each model part checked against torch."""
    shape = options.shape
    axes = batch_axes(model, shape)
    entries: dict[str, PartEntry] = {}
    for part in PARTS:
        if part == "prepare" and not model.family.PREPARE_OUTPUTS:
            continue  # nothing prompt-only to precompute (DiT)
        io = stages.run(f"export {part}", _export_model_part, model, part, folder / f"{part}.onnx", options, axes)
        entries[part] = PartEntry(file=f"{part}.onnx", **io)
        entries[part].check_error = stages.run(f"check {part} against torch", _check_fp32_part, model, part,
                                               folder / f"{part}.onnx", shape)
    _, tokens, hidden = entries["blocks"].outputs[0]["shape"]  # x_out ["batch", tokens, hidden]
    graphs = [(f"pade-fit-{variant}", "pade-fit", variant) for variant in options.pade_variants]
    for name, graph, variant in [*graphs, ("pade-eval", "pade-eval", "rational"), ("tsi", "tsi", "rational")]:
        stages.run(f"export {name}", export_pade, folder / f"{name}.onnx", graph, variant, hidden=hidden)
        entries[name] = PartEntry(file=f"{name}.onnx", **pade_io(graph, tokens, hidden))
    return entries


def _check_fp32_part(model: Model, part: str, path: Path, shape: BuildShape) -> float:
    return check_part(_ort_session(path), model, part, shape, TOLERANCE["fp32"], batches=check_batches(shape))


def check_batches(shape: BuildShape) -> tuple[int, ...]:
    """The batch sizes every engine is checked at: both ends of the folder's range (an exporter that baked
    the example's batch into the graph fails at the other)."""
    return tuple(sorted({shape.batch_min, shape.batch_max}))


def _export_model_part(model: Model, part: str, path: Path, options: BuildOptions, axes: dict) -> dict:
    io = export_part(model, part, options.shape, path, options.opset, axes)
    if options.backend == "onnxruntime" and options.ort_fusions:
        from ..engines.ort_fusions import fuse_for_onnxruntime

        fuse_for_onnxruntime(path)  # checked against torch with the rest of the part, below
    return io


def _copy_fp32_parts(source: Path, folder: Path, identity: dict, shape: BuildShape) -> dict[str, PartEntry]:
    """The fp32 ONNX files of an existing folder of the same model and shape (saves the export)."""
    from ..engines.manifest import read_manifest

    src = read_manifest(source)
    if src.backend != "onnxruntime" or src.precision != "fp32":
        raise ConfigError(f"{source} is a {src.backend} {src.precision} folder; reuse needs an onnxruntime fp32 one.")
    if src.model["weights_sha256"] != identity["weights_sha256"] or src.shape != shape.as_dict():
        raise ConfigError(f"{source} was built from other weights or for another shape; build without reusing it.")
    for entry in src.parts.values():
        copy_model(source / entry.file, folder)  # with its external data, if any
    return {name: PartEntry(**asdict(entry)) for name, entry in src.parts.items()}


def _fused(options: BuildOptions) -> bool:
    """Whether the folder's parts carry onnxruntime's fused ops (reused parts: as their source's did)."""
    if options.reuse_onnx_from is None:
        return options.ort_fusions
    from ..engines.manifest import read_manifest

    return bool(read_manifest(options.reuse_onnx_from, verify_hashes=False).options.get("ort_fusions"))


def _ort_session(path: Path):
    from ..engines.ort_backend import create_session

    return create_session(path, providers=["CPUExecutionProvider"])


def _quantize_blocks(model: Model, folder: Path, entry: PartEntry, options: BuildOptions) -> dict:
    """Replace blocks.onnx by its quantized version (checked against torch by _check_quantized_blocks);
    returns the recipe for the manifest.

    int8 on onnxruntime: dynamic per-channel S8 written one weight at a time (int8_dynamic.py), or
    onnxruntime's static QDQ calibrated on trajectories; int8 on TensorRT and fp8 on both: NVIDIA's
    ModelOpt recipes (modelopt_quant.py), exported as standard Q/DQ. A graph quantized in bf16 (a model
    on a GPU) is checked by the TensorRT build as a plan: onnxruntime's CPU kernels have no bf16.
    """
    from ..engines.int8_dynamic import quantize_int8_dynamic
    from ..engines.modelopt_quant import quantize_blocks_modelopt
    from ..engines.ort_backend import quantize_static_qdq
    from .calibration import collect_block_inputs

    dst = folder / "blocks.onnx"
    recipe = {"method": None, "scope": "blocks only: prepare, head (embedders), tail (norm_out, proj_out) and the "
              "Padé graphs stay fp32"}
    onnxruntime_int8 = options.precision == "int8" and options.backend == "onnxruntime"
    # the fp32 graph (and its external data) moves aside under its own name, so that its references hold
    # and the quantized graph can take blocks.onnx / blocks.onnx.data; the scratch folder goes with it
    with scratch_folder(dst, "fp32") as scratch:
        src = Path(scratch) / dst.name
        move_model(dst, src)
        external = bool(referenced_data_files(src))
        if onnxruntime_int8 and options.int8_mode == "dynamic":
            report = quantize_int8_dynamic(src, dst, external)
            recipe["method"] = ("dynamic INT8 (onnxruntime's MatMulInteger form, written one weight at a time): "
                                "per-column S8 weights of every MatMul / Gemm with a constant weight")
            recipe["quantized_matmuls"] = report.matmuls
            if report.skipped:
                recipe["left_float"] = report.skipped
        else:
            feeds = collect_block_inputs(model, options.shape, options.calibration_samples,
                                         options.calibration_steps, options.calibration_seed)
            if onnxruntime_int8:
                quantize_static_qdq(src, dst, feeds, external=external)
                recipe["method"] = "onnxruntime static QDQ INT8 per-channel (MatMul, Gemm)"
            else:
                example = example_tensors(model, options.shape, batch=max(2, options.shape.batch_opt))
                recipe.update(quantize_blocks_modelopt(model, options.precision, feeds, example,
                                                       batch_axes(model, options.shape), dst))
            recipe["calibration"] = {"samples": options.calibration_samples, "steps": options.calibration_steps,
                                     "seed": options.calibration_seed, "feeds": len(feeds)}
    entry.precision = options.precision
    return recipe


def _check_quantized_blocks(model: Model, folder: Path, entry: PartEntry, options: BuildOptions, recipe: dict) -> None:
    if recipe.get("graph_dtype") == "bfloat16":
        entry.check_error = None  # checked as a plan (tensorrt backend only, see BuildOptions.validate)
    else:
        entry.check_error = check_part(_ort_session(folder / entry.file), model, "blocks", options.shape,
                                       TOLERANCE[options.precision], batches=check_batches(options.shape))


def _export_reduced_precision_blocks(model: Model, folder: Path, entry: PartEntry, options: BuildOptions) -> dict:
    """TensorRT bf16 / fp16: blocks.onnx re-exported from a copy of the model cast to that dtype, so
    that the graph carries its precision (TensorRT 11 builds strongly typed networks only). Its I/O
    is bf16 / fp16; the runtime casts at the boundary. onnxruntime's CPU kernels cannot run it, so
    it is checked when TensorRT builds the plan."""
    import copy

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[options.precision]
    family = copy.copy(model.family)
    family.dtype = dtype
    cast = Model(model.name, family, type(model.parts)(copy.deepcopy(model.transformer).to(dtype), family))
    io = export_part(cast, "blocks", options.shape, folder / "blocks.onnx", options.opset,
                     batch_axes(model, options.shape))
    entry.inputs, entry.outputs = io["inputs"], io["outputs"]
    entry.precision, entry.check_error = options.precision, None
    return {"method": f"blocks exported in {options.precision} (strongly typed)", "scope": "blocks only"}


def _write_extras(model: Model, folder: Path) -> dict:
    """Files besides the engines that a generation needs (the demo's learned class embeddings)."""
    if model.conditioner is None:
        return {}
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.conditioner.state_dict().items()},
              str(folder / "conditioner.safetensors"))
    return {"conditioner": "conditioner.safetensors"}


__all__ = ["BACKENDS", "PRECISIONS", "BuildOptions", "TensorRTOptions", "TcpadeError", "build_engines"]
