"""A SplitModel whose parts are engines: the same sampler and cache policies run on ONNX / TensorRT.

    model = EngineModel("engines/demo-int8")          # validates the manifest, opens sessions
    sample(model, cond, noise, policy=...)            # the reference loop, now on engines

Family logic that needs no weights (latent geometry, scheduler, timestep mapping, unpatchify,
guidance) comes from the family adapter built from the manifest's config. How tensors cross into
onnxruntime (numpy on CPU, I/O binding on a GPU) is in ort_parts.py; TensorRT plans in trt_runtime.py.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.configuration_utils import FrozenDict

from ..engines.manifest import Manifest, read_manifest
from ..errors import ShapeError, TcpadeError
from ..models.base import SplitModel, Tensors
from ..models.registry import ADAPTERS
from .ort_parts import EngineError, OrtPart

__all__ = ["EngineError", "EngineModel", "EnginePade"]


def fusion_advice(build_options: dict, ort_device: str, folder: Path) -> str | None:
    """A sentence for running a folder with onnxruntime's fused kernels on its TensorRT execution
    provider, which has no such ops: those nodes go to CUDA kernels and split TensorRT's graph."""
    if ort_device == "tensorrt" and build_options.get("ort_fusions"):
        return (f"{folder} uses onnxruntime's fused GELU / RMSNorm kernels, which the TensorRT execution provider "
                "hands to CUDA kernels (splitting its engines); rebuild with --no-ort-fusions for device 'tensorrt'.")
    return None


def _warn_about_versions(manifest: Manifest, folder: Path) -> None:
    """A folder built with other software versions: onnxruntime folders still load, with a warning
    (TensorRT plans, bound to their TensorRT version, are refused in trt_runtime)."""
    from ..engines.manifest import version_differences

    differences = version_differences(manifest)
    if differences:
        import warnings

        warnings.warn(f"{folder} was built with other versions ({'; '.join(differences)}); it is used as is, but "
                      f"rebuild it if its results look wrong: tcpade-trt build MODEL --out {folder}", stacklevel=3)


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


class EngineModel(SplitModel):
    def __init__(self, folder: str | Path, device: str = "auto", verify: bool = True, cuda_graphs: bool = False,
                 io_binding: bool | None = None, weight_streaming_budget: str | int | None = None):
        """device: onnxruntime folders only: 'cpu', 'cuda' or 'tensorrt' (its execution provider), or
        'auto' (CUDA when onnxruntime-gpu sees a GPU, else CPU). cuda_graphs: TensorRT folders only,
        replay each plan from a captured CUDA graph. io_binding: force I/O binding on or off (default:
        on a GPU only). weight_streaming_budget: TensorRT plans built with --weight-streaming: how much of
        the blocks' weights stays on the GPU ('40%', '12GB' or bytes); the rest streams from host memory."""
        self.stream = None  # the CUDA stream every engine and torch op of a generation runs on
        self.folder = Path(folder)
        self.manifest: Manifest = read_manifest(self.folder, verify_hashes=verify)
        m = self.manifest
        _warn_about_versions(m, self.folder)
        cls = ADAPTERS[m.model["class"]]
        config = FrozenDict({k: (tuple(v) if isinstance(v, list) else v) for k, v in m.model["config"].items()})
        super().__init__(None, name=m.model["name"], config=config)
        if m.backend == "tensorrt":
            from .trt_runtime import load_trt_parts, require_tensorrt_runtime

            require_tensorrt_runtime(m)
            self._device = torch.device("cuda")
            # torch ops of a generation go on the plans' stream: ordered with them, no host syncs
            self.parts, self.stream = load_trt_parts(self.folder, {n: e.file for n, e in m.parts.items()},
                                                     cuda_graphs=cuda_graphs,
                                                     weight_streaming_budget=weight_streaming_budget)
        else:
            if weight_streaming_budget is not None:
                raise TcpadeError(f"{self.folder} is an onnxruntime folder; a weight-streaming budget is for TensorRT "
                                  "plans built with --weight-streaming.")
            self.parts = self._open_ort_parts(device, io_binding)
        # the family's weightless logic (scheduler, timesteps) on the engines' device: per-step data such
        # as the timestep then never crosses from the host
        self.adapter = cls(None, name=m.model["name"], config=config, device=self._device)
        self.family = self.adapter.family
        for attr in ("PREPARE_INPUTS", "PREPARE_OUTPUTS", "HEAD_INPUTS", "HEAD_OUTPUTS", "BLOCK_INPUTS",
                     "TAIL_INPUTS", "MODULATED_INPUTS", "COND_INPUTS"):
            setattr(self, attr, getattr(self.adapter, attr))
        self.conditioner = self._load_conditioner()

    def _open_ort_parts(self, device: str, io_binding: bool | None) -> dict[str, OrtPart]:
        from ..engines.ort_backend import create_session, provider_chain, resolve_ort_device
        from ..engines.trt_backend import profile_shapes

        self.ort_device = resolve_ort_device(device)
        advice = fusion_advice(self.manifest.options, self.ort_device, self.folder)
        if advice:
            import warnings

            warnings.warn(advice, stacklevel=3)
        if self.ort_device != "cpu":
            from ..versions import require_onnxruntime_for_gpu

            require_onnxruntime_for_gpu()
            self._device = torch.device("cuda")
            self.stream = torch.cuda.Stream()  # not the legacy default stream, which onnxruntime cannot share
        s, parts = self.manifest.shape, {}
        trt_cache = self._ort_tensorrt_cache() if self.ort_device == "tensorrt" else None
        for name, entry in self.manifest.parts.items():
            chain = provider_chain(self.ort_device, stream=self.stream.cuda_stream if self.stream else None,
                                   trt_cache=trt_cache,
                                   trt_profiles=profile_shapes(entry.inputs, s["batch_min"], s["batch_opt"],
                                                               s["batch_max"]))
            session = create_session(self.folder / entry.file, chain)
            parts[name] = OrtPart(name, session, [i["name"] for i in entry.inputs], [o["name"] for o in entry.outputs],
                                  device=self._device, io_binding=io_binding)
        return parts

    def _ort_tensorrt_cache(self) -> Path:
        """Where onnxruntime's TensorRT provider keeps the engines it builds on first use: in the folder,
        or (a read-only deployment) in a temporary folder named after the folder's blocks hash."""
        import os
        import tempfile

        if os.access(self.folder, os.W_OK):
            return self.folder / "ort-tensorrt-cache"
        digest = self.manifest.parts["blocks"].sha256[:16]
        return Path(tempfile.gettempdir()) / "tcpade-trt-ort-tensorrt" / digest

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
        return self.parts["blocks"](step, outputs=("x_out",))["x_out"]

    def blocks_with_residual(self, step):
        out = self.parts["blocks"](step)
        return out["x_out"], out["residual"]

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
        names = (f"pade-fit-{variant}", "pade-eval", "tsi")
        missing = [n for n in names if n not in self.parts]
        if missing:
            raise EngineError(f"{self.folder} has no {', '.join(missing)} engine for the '{variant}' TC-Padé "
                              "variant; rebuild the folder with it.")
        return EnginePade(*(self.parts[n] for n in names))

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
