"""The parts of a model as engines: the same sampler and cache policies run on ONNX / TensorRT.

    model = open_engines("engines/demo-int8")      # validates the manifest, opens the engines: a Model
    sample(model, cond, noise, policy=...)         # the reference loop, now on engines

The family (weightless: geometry, scheduler, timesteps, unpatchify, guidance) is built from the
manifest's config, on the engines' device, so per-step tensors such as the timestep never cross from
the host. The engines themselves are runners of the folder's backend (engines/<backend>/, opened through
engines/backend.Backend.open): onnxruntime sessions, TensorRT plans, OpenVINO compiled models.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from diffusers.configuration_utils import FrozenDict

from ..engines import registry
from ..engines.backend import EngineError, OpenRequest
from ..engines.manifest import Manifest, read_manifest, version_differences
from ..errors import ShapeError
from ..models.family import Family
from ..models.model import Model
from ..models.parts import Parts
from ..models.registry import family_for

__all__ = ["EngineError", "EnginePade", "EngineParts", "open_engines"]


def _warn_about_versions(manifest: Manifest, folder: Path) -> None:
    """A folder built with other software versions: it still loads, with a warning (TensorRT plans, bound to their
    TensorRT version, are refused by engines/tensorrt/plans.py)."""
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

    device: auto, cpu, or a device the folder's backend offers (Backend.devices; onnxruntime: its CUDA or
    TensorRT execution provider; auto = CUDA when onnxruntime-gpu sees a GPU). cuda_graphs: TensorRT folders,
    replay each plan from a captured CUDA graph. io_binding: force I/O binding on or off (default: on a GPU only).
    weight_streaming_budget: TensorRT plans built with --weight-streaming: how much of the blocks' weights
    stays on the GPU ('40%', '12GB' or bytes); the rest streams from host memory.
    """
    folder = Path(folder)
    manifest = read_manifest(folder, verify_hashes=verify)
    backend = registry.of(manifest)
    _warn_about_versions(manifest, folder)
    config = FrozenDict({k: (tuple(v) if isinstance(v, list) else v) for k, v in manifest.model["config"].items()})
    opened = backend.open(folder, manifest, OpenRequest(device=device, cuda_graphs=cuda_graphs, io_binding=io_binding,
                                                        weight_streaming_budget=weight_streaming_budget))
    family = family_for(manifest.model["class"], config, device=opened.device,
                        scheduler_config=manifest.model.get("scheduler"))
    s = manifest.shape
    return Model(manifest.model["name"], family, EngineParts(folder, manifest, family, opened.engines, opened.stream),
                 conditioner=_load_conditioner(folder, manifest), latent_size=(s["height"], s["width"], s["frames"]),
                 calibrated=manifest.calibrated_schedules())


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

