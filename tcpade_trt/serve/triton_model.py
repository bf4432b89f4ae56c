"""Triton Inference Server's Python backend driving an engine folder (the model of a repository that
``tcpade-trt triton-repo`` writes).

One Triton request is one image. Its inputs mirror the HTTP server's JSON fields (serve/request.py), as
tensors with a batch axis of 1; text travels as UTF-8 bytes in UINT8 tensors:

    seed INT64 [1, 1]    class INT64 [1, 1]    prompt, negative_prompt, cache UINT8 [1, n]
    steps INT32 [1, 1]   guidance_scale FP32 [1, 1]     (each optional, but the prompt of a text folder;
                                                         a request carries at least one)
    -> image UINT8 [1, n] (PNG; an animated GIF for video models), full_steps / predicted_steps INT32 [1, 1],
       compute_s FP32 [1, 1] (the generation it was part of), batch INT32 [1, 1] (requests that shared it)

Triton's dynamic batcher hands ``execute`` the requests that arrived together; the Generator groups them by
steps, cache and guidance so that a full step runs the block-stack engine once per group (each request gets
the image it would get alone; Triton batches only requests that send the same inputs). A bad request gets
an error response with the same one sentence as over HTTP, and the others of its batch are answered.
Tensors cross by DLPack, not ``as_numpy``: the Python backend stubs that nvidia-pytriton bundles read numpy
1's array layout, and this environment has numpy 2.
"""

from __future__ import annotations

import json

TEXT_INPUTS = ("prompt", "negative_prompt", "cache")
NUMBER_INPUTS = {"class": int, "seed": int, "steps": int, "guidance_scale": float}


def request_body(tensors: dict) -> dict:
    """Input tensors of one request ({name: torch tensor}, those sent) -> the HTTP server's JSON body, so
    that both servers judge requests by the same rules (serve/request.parse_request)."""
    from .request import RequestError

    body = {}
    for name, tensor in tensors.items():
        if tensor.ndim == 0 or tensor.shape[0] != 1:
            raise RequestError(400, f"{name} has batch {tuple(tensor.shape)[:1] or '()'}; send one image per "
                                    "request (shape [1, ...]): Triton's dynamic batcher batches requests.")
        if name in TEXT_INPUTS:
            try:
                body[name] = bytes(tensor[0].to("cpu").tolist()).decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(400, f"{name} must be UTF-8 text, sent as a UINT8 tensor.") from None
        else:
            if tensor.numel() != 1:
                raise RequestError(400, f"{name} must hold one number (shape [1, 1]); got {tuple(tensor.shape)}.")
            body[name] = NUMBER_INPUTS[name](tensor.reshape(-1)[0].item())
    return body


class TritonPythonModel:
    """The Python backend's model: ``initialize`` once per instance, ``execute`` per batch of requests."""

    def initialize(self, args: dict) -> None:
        from .request import Limits
        from .worker import Generator

        parameters = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        self.generator = Generator(parameters["engines"], device=parameters.get("device", "auto"),
                                   pipeline=parameters.get("pipeline") or None)
        self.limits = Limits(max_steps=self.generator.steps_limit(int(parameters.get("max_steps", 100))))

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        from .request import RequestError, parse_request

        answers: list = [None] * len(requests)
        accepted = []  # (index, GenerateRequest)
        for i, request in enumerate(requests):
            try:
                tensors = {}
                for name in (*TEXT_INPUTS, *NUMBER_INPUTS):
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is not None:
                        tensors[name] = _from_triton(tensor)
                parsed = parse_request(request_body(tensors), self.generator.accepts, self.limits)
                self.generator.check(parsed)
                accepted.append((i, parsed))
            except RequestError as exc:
                answers[i] = _error(pb_utils, exc.message, invalid=True)
        if accepted:
            # each request's own result or error (e.g. a non-finite generation: reported, never an image)
            results = self.generator.generate_each([r for _, r in accepted])
            for (i, _), result in zip(accepted, results):
                answers[i] = _error(pb_utils, str(result)) if isinstance(result, Exception) else _answer(pb_utils,
                                                                                                        result)
        return answers

    def finalize(self) -> None:
        self.generator = None


def _from_triton(tensor):
    import torch

    return torch.from_dlpack(tensor.to_dlpack())


def _to_triton(pb_utils, name: str, tensor):
    from torch.utils import dlpack

    return pb_utils.Tensor.from_dlpack(name, dlpack.to_dlpack(tensor.contiguous()))


def _answer(pb_utils, result):
    import torch

    image = torch.frombuffer(bytearray(result.image), dtype=torch.uint8)[None]  # [1, n]
    count = lambda n: torch.tensor([[n]], dtype=torch.int32)
    return pb_utils.InferenceResponse(output_tensors=[
        _to_triton(pb_utils, "image", image), _to_triton(pb_utils, "full_steps", count(result.full_steps)),
        _to_triton(pb_utils, "predicted_steps", count(result.predicted_steps)),
        _to_triton(pb_utils, "compute_s", torch.tensor([[result.compute_s]], dtype=torch.float32)),
        _to_triton(pb_utils, "batch", count(result.batch))])


def _error(pb_utils, message: str, invalid: bool = False):
    """An error response: the client's mistake is INVALID_ARG (HTTP 400), anything else INTERNAL (500 from
    Triton 24.01; older servers answer 400 for every error). Codes exist from 23.09; before, message only."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG" if invalid else "INTERNAL", None)
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)
