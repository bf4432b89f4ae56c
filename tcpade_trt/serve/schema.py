"""What /openapi.json (and /docs) say about the routes: request bodies, every answer, this server's own limits.

The routes read their bodies themselves (a size limit before parsing, a nesting limit, one-sentence errors), so
FastAPI cannot infer the request schema from a parameter: ``route_docs`` declares it from the pydantic models
that validate it (FastAPI's documented way for bodies read by hand), with every status the route answers. A
running server then tightens the generic schema to what its folder takes (``tighten``): the class names, the
steps limit, whether a prompt is required.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from .request import SEED_MAX, Accepts, Limits


class ErrorBody(BaseModel):
    error: str = Field(description="one sentence: what is wrong and what to send instead")


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    error: OpenAIError


class Stats(BaseModel):
    full_steps: int
    predicted_steps: int
    queue_s: float
    compute_s: float
    batch: int = Field(description="requests that shared the generation")
    total_s: float


class GenerateJson(BaseModel):
    """/v1/generate with "format": "json" (video models: image_gif_base64 instead of image_png_base64)."""

    image_png_base64: str | None = None
    image_gif_base64: str | None = None
    stats: Stats
    request: dict


class ImageData(BaseModel):
    b64_json: str
    seed: int


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    output_format: str
    stats: Stats


class Health(BaseModel):
    status: str
    model: str
    precision: str
    backend: str
    node: str
    pid: int


ERRORS = {400: "a bad value", 401: "a missing or wrong API key", 404: "another model than the served one",
          408: "not answered within the server's timeout", 413: "a body over the size limit",
          422: "a field this folder cannot serve", 500: "a failed generation (e.g. non-finite)",
          503: "the server's queue is full: retry after Retry-After seconds"}


def route_docs(request: type[BaseModel], ok: dict, error: type[BaseModel], statuses: tuple[int, ...]) -> dict:
    """Keyword arguments of a FastAPI route: its request body and each answer it gives. A body whose every field
    has a default may be left out (``curl -X POST .../v1/generate`` asks for the defaults)."""
    responses: dict = {200: ok}
    responses.update({s: {"model": error, "description": ERRORS[s]} for s in statuses})
    body = request.model_json_schema(by_alias=True)
    return {"openapi_extra": {"requestBody": {"required": bool(body.get("required")), "content": {
        "application/json": {"schema": body}}}}, "responses": responses}


IMAGE = {"schema": {"type": "string", "format": "binary"}}
# FastAPI puts the model's schema under application/json, beside the image types
GENERATE_OK = {"model": GenerateJson, "description": "the image (video models: an animated GIF), statistics in "
               "X-Tcpade-* headers; with \"format\": \"json\", base64 and statistics",
               "content": {"image/png": IMAGE, "image/gif": IMAGE}}
IMAGES_OK = {"model": ImagesResponse, "description": "n images, base64, and the generation's statistics"}


def tighten(openapi: dict, accepts: Accepts, limits: Limits, size: str, model: str) -> dict:
    """The generic schema narrowed to this server: its steps limit, its classes or prompts, its image size, its
    model's name."""
    for path in ("/v1/generate", "/v1/images/generations"):
        body = openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        props = body["properties"]
        props["steps"]["maximum"] = limits.max_steps
        props["seed"].update(minimum=0, maximum=SEED_MAX)  # as whole numbers (the generic schema has floats)
        if path == "/v1/images/generations":
            props["size"]["enum"] = ["auto", size]
            props["model"]["anyOf"] = [{"type": "string", "enum": [model]}, {"type": "null"}]
            if not accepts.prompts:  # the class as the prompt: a name, or an index
                names = [{"type": "string", "enum": list(accepts.classes)}] if accepts.classes else []
                props["prompt"] = {**props["prompt"], "anyOf": [*names, {"type": "string", "pattern": "^[0-9]{1,9}$"}]}
                props.pop("negative_prompt")
            elif not accepts.negative_prompts:
                props.pop("negative_prompt")
            continue
        if accepts.prompts:
            props.pop("class")
            body["required"] = ["prompt"]
            if not accepts.negative_prompts:
                props.pop("negative_prompt")
        else:
            count = len(accepts.classes) if accepts.classes is not None else accepts.num_classes or 0
            choices: list[dict] = [{"type": "integer", "minimum": 0, "maximum": count - 1}]
            if accepts.classes is not None:
                choices.append({"type": "string", "enum": list(accepts.classes)})
            props["class"] = {**props["class"], "anyOf": choices}
            props.pop("prompt")
            props.pop("negative_prompt")
    return openapi
