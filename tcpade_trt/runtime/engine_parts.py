"""The parts of a model as engines: the same sampler and cache policies run on ONNX / TensorRT.

    model = open_engines("engines/demo-int8")      # validates the manifest, opens the engines: a Model
    sample(model, cond, noise, policy=...)         # the reference loop, now on engines

The family (weightless: geometry, scheduler, timesteps, unpatchify, guidance) is built from the
manifest's config, on the engines' device, so per-step tensors such as the timestep never cross from
the host. How tensors cross into onnxruntime (numpy on CPU, I/O binding on a GPU) is in ort_parts.py;
TensorRT plans in engines/trt_plans.py.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from diffusers.configuration_utils import FrozenDict

from ..engines.manifest import Manifest, read_manifest, version_differences
from ..errors import ShapeError, TcpadeError
from ..models.family import Family
from ..models.model import Model
from ..models.parts import Parts
from ..models.registry import family_for
from .ort_parts import EngineError, OrtPart

__all__ = ["EngineError", "EnginePade", "EngineParts", "open_engines"]


def fusion_advice(build_options: dict, ort_device: str, folder: Path) -> str | None:
    """A sentence for running a folder with onnxruntime's fused kernels on its TensorRT execution
    provider, which has no such ops: those nodes go to CUDA kernels and split TensorRT's graph."""
    if ort_device == "tensorrt" and build_options.get("ort_fusions"):
        return (f"{folder} uses onnxruntime's fused GELU / RMSNorm kernels, which the TensorRT execution provider "
                "hands to CUDA kernels (splitting its engines); rebuild with --no-ort-fusions for device 'tensorrt'.")
    return None


def _warn_about_versions(manifest: Manifest, folder: Path) -> None:
    """A folder built with other software versions: onnxruntime folders still load, with a warning
    (TensorRT plans, bound to their TensorRT version, are refused in engines/trt_plans)."""
    differences = version_differences(manifest)
    if differences:
        warnings.warn(f"{folder} was built with other versions ({'; '.join(differences)}); it is used as is, but "
                      f"rebuild it if its results look wrong: tcpade-trt build MODEL --out {folder}", stacklevel=4)


class EnginePade:
    """The Padé engines behind cache.pade.PadePredictor's interface (fit / eval / tsi)."""

    def __init__(self, fit_part, eval_part, tsi_part):
        self.fit_part, self.eval_part, self.tsi_part = fit_part, eval_part, tsi_part

    def fit(self, r1, r2, r3, fit_params):
        out = self.fit_part({"r1": r1, "r2": r2, "r3": r3, "fit_params": fit_params.float()})
        return out["base"], out["scale"], out["damping"], out["magnitude"]

    def eval(self, base, scale, damping, k, x_in):
        named = {"base": base, "scale": scale, "damping": damping, "k": k.float(), "x_in": x_in}
        return self.eval_part(named)["x_out"]

    def tsi(self, r1, r2, r3):
        return self.tsi_part({"r1": r1, "r2": r2, "r3": r3})["tsi"]


class EngineParts(Parts):
    """prepare / head / blocks / tail / modulated as the folder's engines (onnxruntime or TensorRT)."""

    def __init__(self, folder: Path, manifest: Manifest, family: Family, engines: dict, stream=None):
        self.folder, self.manifest, self.family, self.engines = folder, manifest, family, engines
        self.stream = stream  # the CUDA stream every engine and torch op of a generation runs on (GPU)

    def check_request(self, latents: torch.Tensor) -> None:
        """The latents against what the engines were built for: one sentence for a mismatch."""
        s = self.manifest.shape
        batch = latents.shape[0]
        expected = self.family.geometry(batch, s["height"], s["width"], s["frames"]).shape
        if tuple(latents.shape) != tuple(expected):
            raise ShapeError(f"the engines in {self.folder} were built for latents of shape {list(expected)} "
                             f"({s['height']}x{s['width']}, {s['frames']} frame(s)); got {list(latents.shape)}: "
                             "rebuild with matching --height/--width/--frames.")
        if not s["batch_min"] <= batch <= s["batch_max"]:
            raise ShapeError(f"a batch of {batch} rows is outside the engines' profile ({s['batch_min']}-"
                             f"{s['batch_max']}; classifier-free guidance doubles the rows): rebuild with "
                             f"--batch-max {batch}.")

    def prepare_part(self, named):
        return self.engines["prepare"](named) if "prepare" in self.engines else {}

    def prepare(self, latents, cond):
        cond = {k: v.to(self.family.device) if isinstance(v, torch.Tensor) else v for k, v in cond.items()}
        self.check_request(latents)
        return super().prepare(latents, cond)

    def head(self, latents, timestep, prepared):
        step = {**prepared, "timestep": timestep}  # DiT's blocks and tail read the raw timestep
        return {**step, **self.engines["head"]({"latents": latents, **step})}

    def blocks(self, step):
        return self.engines["blocks"](step, outputs=("x_out",))["x_out"]

    def blocks_with_residual(self, step):
        out = self.engines["blocks"](step)
        return out["x_out"], out["residual"]

    def tail_tokens(self, x_out, step):
        return self.engines["tail"]({**step, "x_out": x_out})["tokens"]

    def modulated_input(self, step):
        if "modulated" not in self.engines:
            raise EngineError(f"{self.folder} has no 'modulated' engine, which teacache needs; rebuild the folder.")
        return self.engines["modulated"](step)["modulated"]

    def synchronize(self) -> None:
        """The host waits for the engines' CUDA stream, where every engine call and torch op of a generation
        runs (nothing to wait for on a CPU)."""
        if self.stream is not None:
            self.stream.synchronize()

    def close(self) -> None:
        """Wait for the work queued on the engines, then release every engine (sessions, plans, contexts) and hand
        the memory torch cached for them back to the driver. Idempotent; a closed engine says so when called."""
        self.synchronize()
        for part in self.engines.values():
            part.close()
        if self.stream is not None:
            from ..engines import gpu

            gpu.release_cached_memory()

    def engine_seconds(self) -> float:
        """Total time spent inside engines since they were opened (onnxruntime; TensorRT launches are
        asynchronous, so its parts report none)."""
        return sum(getattr(part, "seconds", 0.0) for part in self.engines.values())

    def pade(self, variant: str) -> EnginePade:
        names = (f"pade-fit-{variant}", "pade-eval", "tsi")
        missing = [n for n in names if n not in self.engines]
        if missing:
            raise EngineError(f"{self.folder} has no {', '.join(missing)} engine for the '{variant}' TC-Padé "
                              "variant; rebuild the folder with it.")
        return EnginePade(*(self.engines[n] for n in names))


def open_engines(folder: str | Path, device: str = "auto", verify: bool = True, cuda_graphs: bool = False,
                 io_binding: bool | None = None, weight_streaming_budget: str | int | None = None) -> Model:
    """The engine folder as a Model (family from the manifest, engine parts).

    device: onnxruntime folders only: 'cpu', 'cuda' or 'tensorrt' (its execution provider), or 'auto'
    (CUDA when onnxruntime-gpu sees a GPU, else CPU). cuda_graphs: TensorRT folders, replay each plan
    from a captured CUDA graph. io_binding: force I/O binding on or off (default: on a GPU only).
    weight_streaming_budget: TensorRT plans built with --weight-streaming: how much of the blocks' weights
    stays on the GPU ('40%', '12GB' or bytes); the rest streams from host memory.
    """
    folder = Path(folder)
    manifest = read_manifest(folder, verify_hashes=verify)
    _warn_about_versions(manifest, folder)
    config = FrozenDict({k: (tuple(v) if isinstance(v, list) else v) for k, v in manifest.model["config"].items()})
    stream = None
    if manifest.backend == "tensorrt":
        from ..engines.trt_plans import default_device, load_trt_parts, require_tensorrt_runtime

        require_tensorrt_runtime(manifest)
        cuda = default_device()
        engine_device = cuda.device
        # torch ops of a generation go on the plans' stream: ordered with them, no host syncs
        engines, stream = load_trt_parts(folder, {n: e.file for n, e in manifest.parts.items()},
                                         cuda_graphs=cuda_graphs, weight_streaming_budget=weight_streaming_budget,
                                         device=cuda)
    else:
        if weight_streaming_budget is not None:
            raise TcpadeError(f"{folder} is an onnxruntime folder; a weight-streaming budget is for TensorRT "
                              "plans built with --weight-streaming.")
        engines, engine_device, stream = _open_ort_engines(folder, manifest, device, io_binding)
    family = family_for(manifest.model["class"], config, device=engine_device,
                        scheduler_config=manifest.model.get("scheduler"))
    s = manifest.shape
    return Model(manifest.model["name"], family, EngineParts(folder, manifest, family, engines, stream),
                 conditioner=_load_conditioner(folder, manifest), latent_size=(s["height"], s["width"], s["frames"]),
                 calibrated=manifest.calibrated_schedules())


def _open_ort_engines(folder: Path, manifest: Manifest, device: str, io_binding: bool | None):
    """(engines, their device, the CUDA stream onnxruntime shares or None)."""
    from ..engines.ort_backend import create_session, provider_chain, resolve_ort_device
    from ..engines.trt_backend import profile_shapes

    ort_device = resolve_ort_device(device)
    if ort_device != "cpu" and runs_on_cpu_only(folder, manifest):
        if device != "auto":
            raise EngineError(f"{folder} holds onnxruntime's dynamic INT8 block stack (DynamicQuantizeLinear and "
                              "MatMulInteger), which neither onnxruntime's CUDA provider nor TensorRT runs: on a GPU "
                              "every quantized linear would run on the CPU, with two copies per call. Build "
                              "--backend tensorrt --precision int8 (ModelOpt SmoothQuant) for the GPU, or run this "
                              "folder with --device cpu.")
        warnings.warn(f"{folder} holds onnxruntime's dynamic INT8 form, which GPUs do not run: it runs on the CPU "
                      "(build --backend tensorrt --precision int8 for the GPU).", stacklevel=3)
        ort_device = "cpu"
    advice = fusion_advice(manifest.options, ort_device, folder)
    if advice:
        warnings.warn(advice, stacklevel=3)
    engine_device, stream = torch.device("cpu"), None
    if ort_device != "cpu":
        from ..versions import require_onnxruntime_for_gpu

        require_onnxruntime_for_gpu()
        engine_device = torch.device("cuda")
        stream = torch.cuda.Stream()  # not the legacy default stream, which onnxruntime cannot share
    s, engines = manifest.shape, {}
    trt_cache = ort_tensorrt_cache(folder, manifest) if ort_device == "tensorrt" else None
    for name, entry in manifest.parts.items():
        chain = provider_chain(ort_device, stream=stream.cuda_stream if stream else None, trt_cache=trt_cache,
                               trt_profiles=profile_shapes(entry.inputs, s["batch_min"], s["batch_opt"],
                                                           s["batch_max"]))
        session = create_session(folder / entry.file, chain)
        engines[name] = OrtPart(name, session, [i["name"] for i in entry.inputs], [o["name"] for o in entry.outputs],
                                device=engine_device, io_binding=io_binding)
    return engines, engine_device, stream


# onnxruntime's dynamic INT8 form: its CUDA provider registers MatMulInteger for int8 x int8 with scalar zero
# points only and has no DynamicQuantizeLinear; onnx-tensorrt supports neither (shared/design/DEPLOYMENT_FACTS.md)
CPU_ONLY_OPS = frozenset({"MatMulInteger", "DynamicQuantizeLinear"})


def runs_on_cpu_only(folder: Path, manifest: Manifest) -> bool:
    """Whether the folder's block stack holds ops that only onnxruntime's CPU provider runs (read without weights)."""
    import onnx

    graph = onnx.load(str(folder / manifest.parts["blocks"].file), load_external_data=False).graph
    return any(node.op_type in CPU_ONLY_OPS for node in graph.node)


def ort_tensorrt_cache(folder: Path, manifest: Manifest) -> Path:
    """Where onnxruntime's TensorRT provider keeps the engines it builds on first use: in the folder, or
    (a read-only deployment) in a temporary folder named after the folder's blocks hash."""
    if os.access(folder, os.W_OK):
        return folder / "ort-tensorrt-cache"
    return Path(tempfile.gettempdir()) / "tcpade-trt-ort-tensorrt" / manifest.parts["blocks"].sha256[:16]


def _load_conditioner(folder: Path, manifest: Manifest):
    """The demo model's class embeddings, when the folder carries them."""
    if "conditioner" not in manifest.extras:
        return None
    from safetensors.torch import load_file

    from ..models.demo import ClassConditioner

    state = load_file(str(folder / manifest.extras["conditioner"]))
    conditioner = ClassConditioner(num_classes=state["tokens"].shape[0])
    conditioner.load_state_dict(state)
    return conditioner

