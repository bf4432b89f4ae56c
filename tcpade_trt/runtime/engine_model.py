"""A SplitModel whose parts are engines: the same sampler and cache policies run on ONNX / TensorRT.

    model = EngineModel("engines/demo-int8")          # validates the manifest, opens sessions
    sample(model, cond, noise, policy=...)            # the reference loop, now on engines

Family logic that needs no weights (latent geometry, scheduler, timestep mapping, unpatchify,
guidance) comes from the family adapter built from the manifest's config. Tensors cross into and
out of onnxruntime as numpy views (zero-copy on CPU).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from diffusers.configuration_utils import FrozenDict

from ..engines.manifest import Manifest, read_manifest
from ..errors import ShapeError, TcpadeError
from ..models.base import SplitModel, Tensors
from ..models.registry import ADAPTERS


class EngineError(TcpadeError):
    """An engine failed while running."""


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()


class OrtPart:
    """One onnxruntime session called with named torch tensors."""

    def __init__(self, name: str, session, input_names, output_names):
        self.name, self.session = name, session
        self.input_names, self.output_names = list(input_names), list(output_names)
        self.seconds = 0.0  # time spent inside the engine (session.run), for overhead accounting

    def __call__(self, named: Tensors) -> dict[str, torch.Tensor]:
        feeds = {n: _numpy(named[n]) for n in self.input_names}
        start = time.perf_counter()
        try:
            outs = self.session.run(self.output_names, feeds)
        except Exception as exc:  # onnxruntime's own error types
            raise EngineError(f"the {self.name} engine failed ({type(exc).__name__}: {str(exc)[:200]}).") from exc
        finally:
            self.seconds += time.perf_counter() - start
        return {n: torch.from_numpy(o) for n, o in zip(self.output_names, outs)}


class EnginePade:
    """The Padé engine as a drop-in for cache.pade.PadeTSI: (r1, r2, r3, params) -> (prediction, tsi)."""

    def __init__(self, part: OrtPart):
        self.part = part

    def __call__(self, r1, r2, r3, params):
        out = self.part({"r1": r1, "r2": r2, "r3": r3, "params": params.float()})
        return out["prediction"], out["tsi"]


class EngineModel(SplitModel):
    def __init__(self, folder: str | Path, providers: list[str] | None = None, verify: bool = True,
                 cuda_graphs: bool = False):
        """providers: onnxruntime execution providers (default: CUDA when onnxruntime-gpu has a GPU,
        else CPU). cuda_graphs: TensorRT folders only, replay each plan from a captured CUDA graph."""
        self.folder = Path(folder)
        self.manifest: Manifest = read_manifest(self.folder, verify_hashes=verify)
        m = self.manifest
        cls = ADAPTERS[m.model["class"]]
        config = FrozenDict({k: (tuple(v) if isinstance(v, list) else v) for k, v in m.model["config"].items()})
        super().__init__(None, name=m.model["name"], config=config)
        self.adapter = cls(None, name=m.model["name"], config=config)
        self.family = self.adapter.family
        for attr in ("PREPARE_INPUTS", "PREPARE_OUTPUTS", "HEAD_INPUTS", "HEAD_OUTPUTS", "BLOCK_INPUTS",
                     "TAIL_INPUTS", "MODULATED_INPUTS"):
            setattr(self, attr, getattr(self.adapter, attr))
        if m.backend == "tensorrt":
            from .trt_runtime import load_trt_parts, require_tensorrt_runtime

            require_tensorrt_runtime(m)
            self._device = torch.device("cuda")
            self.parts = load_trt_parts(self.folder, m, cuda_graphs=cuda_graphs)
        else:
            from ..engines.ort_backend import create_session, default_providers

            self.providers = providers or default_providers()
            self.parts = {}
            for name, entry in m.parts.items():
                session = create_session(self.folder / entry.file, self.providers)
                self.parts[name] = OrtPart(name, session, [i["name"] for i in entry.inputs],
                                           [o["name"] for o in entry.outputs])
        self.conditioner = self._load_conditioner()

    # -- what the engines were built for -----------------------------------------------------
    def check_request(self, latents: torch.Tensor) -> None:
        s = self.manifest.shape
        batch = latents.shape[0]
        expected = self.adapter.geometry(batch, s["height"], s["width"], s["frames"]).shape
        if tuple(latents.shape) != tuple(expected):
            raise ShapeError(f"the engines in {self.folder} were built for latents of shape {list(expected)} "
                             f"({s['height']}x{s['width']}, {s['frames']} frame(s)); got {list(latents.shape)}: "
                             "rebuild with matching --height/--width/--frames.")
        if not s["batch_min"] <= batch <= s["batch_max"]:
            raise ShapeError(f"a batch of {batch} rows is outside the engines' profile ({s['batch_min']}-"
                             f"{s['batch_max']}; classifier-free guidance doubles the rows): rebuild with "
                             f"--batch-max {batch}.")

    # -- the split, on engines ----------------------------------------------------------------
    def prepare_part(self, named):
        return self.parts["prepare"](named) if "prepare" in self.parts else {}

    def prepare(self, latents, cond):
        cond = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in cond.items()}
        self.adapter._check(latents, cond)
        self.check_request(latents)
        out = {**cond, **self.prepare_part({"latents": latents, **cond}), "_latent_shape": tuple(latents.shape)}
        return out

    def head(self, latents, timestep, prepared):
        step = {**prepared, "timestep": timestep}  # DiT's blocks and tail read the raw timestep
        return {**step, **self.parts["head"]({"latents": latents, **step})}

    def blocks(self, step):
        return self.parts["blocks"](step)["x_out"]

    def tail_tokens(self, x_out, step):
        return self.parts["tail"]({**step, "x_out": x_out})["tokens"]

    def unpatchify(self, tokens, latent_shape):
        return self.adapter.unpatchify(tokens, latent_shape)

    def modulated_input(self, step):
        if "modulated" not in self.parts:
            raise EngineError(f"{self.folder} has no 'modulated' engine, which teacache needs; rebuild the folder.")
        return self.parts["modulated"](step)["modulated"]

    def forward_unsplit(self, latents, timestep, cond):
        return self.forward_split(latents, timestep, cond)  # engines have no unsplit form

    def engine_seconds(self) -> float:
        """Total time spent inside engines since the runtime was created (onnxruntime; TensorRT
        launches are asynchronous, so its parts report none)."""
        return sum(getattr(part, "seconds", 0.0) for part in self.parts.values())

    def pade(self, variant: str) -> EnginePade:
        name = f"pade-{variant}"
        if name not in self.parts:
            raise EngineError(f"{self.folder} has no Padé engine for the '{variant}' variant; rebuild with it.")
        return EnginePade(self.parts[name])

    # -- family logic, weightless -------------------------------------------------------------
    def geometry(self, batch, height, width, frames=1):
        return self.adapter.geometry(batch, height, width, frames)

    def make_scheduler(self, num_steps, geometry):
        return self.adapter.make_scheduler(num_steps, geometry)

    def model_timestep(self, t, batch):
        return self.adapter.model_timestep(t, batch)

    def model_output_to_prediction(self, output, guidance_scale):
        return self.adapter.model_output_to_prediction(output, guidance_scale)

    @property
    def null_class(self):
        return self.adapter.null_class

    # -- the demo model's class conditioning -------------------------------------------------
    def _load_conditioner(self):
        if "conditioner" not in self.manifest.extras:
            return None
        from safetensors.torch import load_file

        from ..models.demo import ClassConditioner

        state = load_file(str(self.folder / self.manifest.extras["conditioner"]))
        conditioner = ClassConditioner(num_classes=state["tokens"].shape[0])
        conditioner.load_state_dict(state)
        return conditioner

    def class_cond(self, labels: torch.Tensor) -> Tensors:
        if self.conditioner is None:
            raise TcpadeError(f"{self.folder} holds no class embeddings: --class works with the demo model only.")
        from ..models.demo import LATENT_SIZE, TEXT_TOKENS
        from ..models.flux import latent_image_ids

        with torch.no_grad():
            cond = self.conditioner(labels)
        cond["txt_ids"] = torch.zeros(TEXT_TOKENS, 3)
        cond["img_ids"] = latent_image_ids(LATENT_SIZE, LATENT_SIZE)
        return cond

    def geometry_for(self, batch: int):
        s = self.manifest.shape
        return self.geometry(batch, s["height"], s["width"], s["frames"])
