"""The OpenAI Images API dialect: POST /v1/images/generations, so that OpenAI-compatible clients and UIs can call.

    {"prompt": "a red fox", "n": 2, "size": "1024x1024", "response_format": "b64_json",
     "seed": 7, "steps": 20, "cache": "tcpade-fast", "guidance_scale": null, "negative_prompt": ""}   (extras last)
    -> {"created": 1765000000, "data": [{"b64_json": "...", "seed": 7}, {"b64_json": "...", "seed": 8}],
        "output_format": "png", "stats": {"full_steps": ..., "predicted_steps": ..., ...}}

The same dialect as OpenVINO Model Server's and many FLUX servers' image endpoints. ``n`` images are ``n``
requests of seeds ``seed .. seed + n - 1`` (a random seed when none is given, as OpenAI's own endpoint draws new
images per call) that batch like any others. A class-conditional folder takes the class as the prompt: a name
or an index ("astronaut", "3"). Images come inline (``b64_json``); this server keeps no files to link to, so
``response_format: "url"`` is refused. Mistakes answer in OpenAI's error shape, {"error": {"message", "type",
"param", "code"}}, whose message the official client shows.
"""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .request import (
    CACHE_MAX_CHARS,
    GUIDANCE_MAX,
    PROMPT_MAX_CHARS,
    SEED_MAX,
    Accepts,
    GenerateRequest,
    Limits,
    RequestError,
    check_cache,
    check_guidance,
    check_seed,
    check_steps,
    known_fields,
    label_index,
    parse_request,
)

N_MAX = 10  # OpenAI's own limit per call


class ImagesBody(BaseModel):
    """POST /v1/images/generations; validate with context {"accepts", "limits", "model", "size"}."""

    model_config = ConfigDict(extra="forbid", title="ImageGenerationRequest")

    prompt: str = Field(max_length=PROMPT_MAX_CHARS, description="what to draw; a class-conditional folder "
                        "takes one of its class names or a class index")
    model: str | None = Field(None, description="the served model's name (GET /v1/models); any other is refused")
    n: int = Field(1, ge=1, le=N_MAX, description="how many images (seeds seed .. seed + n - 1)")
    size: str = Field("auto", description="\"auto\" or the folder's own size as \"WIDTHxHEIGHT\" (engines are "
                      "built for one resolution)")
    response_format: Literal["b64_json"] = Field("b64_json", description="images come inline as base64")
    output_format: Literal["png", "gif"] | None = Field(None, description="png (images) or gif (video models)")
    user: str | None = Field(None, max_length=256, description="an end-user id, for your logs; not used here")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="the first image's seed; null: a random one")
    steps: int = Field(20, ge=2, description="sampling steps, at most the server's --max-steps")
    cache: str | None = Field(None, max_length=CACHE_MAX_CHARS, description="a cache spec, e.g. \"tcpade-fast\"")
    guidance_scale: float | None = Field(None, ge=0, le=GUIDANCE_MAX)
    negative_prompt: str = Field("", max_length=PROMPT_MAX_CHARS)

    @model_validator(mode="before")
    @classmethod
    def _an_object_of_known_fields(cls, body):
        return known_fields(cls, body, "{\"prompt\": \"a red fox\", \"n\": 1}")

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, prompt):
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > PROMPT_MAX_CHARS:
            raise RequestError(400, f"prompt must be a non-empty string of at most {PROMPT_MAX_CHARS} characters.")
        return prompt

    @field_validator("n", mode="before")
    @classmethod
    def _n(cls, n):
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= N_MAX:
            raise RequestError(400, f"n must be a whole number from 1 to {N_MAX} (got {n!r}).")
        return n

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, model, info: ValidationInfo):
        served = (info.context or {}).get("model")
        if model is not None and model != served:
            raise RequestError(404, f"this server serves the model {served!r}, not {model!r}; send \"model\": "
                                    f"{served!r} or leave it out.")
        return model

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, size, info: ValidationInfo):
        own = (info.context or {}).get("size")
        if size not in ("auto", own):
            raise RequestError(400, f"this server's engines make {own} images; send \"size\": \"{own}\" or "
                                    f"\"auto\" (got {size!r}).")
        return size

    @field_validator("response_format", mode="before")
    @classmethod
    def _inline(cls, fmt):
        if fmt != "b64_json":
            raise RequestError(400, "this server returns images inline and keeps no files to link to: send "
                                    f"\"response_format\": \"b64_json\" (got {fmt!r}).")
        return fmt

    @field_validator("output_format", mode="before")
    @classmethod
    def _output_format(cls, fmt, info: ValidationInfo):
        own = (info.context or {}).get("output_format")
        if fmt is not None and fmt != own:
            raise RequestError(400, f"this server's model makes {own} files; send \"output_format\": \"{own}\" "
                                    f"or leave it out (got {fmt!r}).")
        return fmt

    _seed = field_validator("seed", mode="before")(lambda cls, seed: seed if seed is None else check_seed(seed))
    _steps = field_validator("steps", mode="before")(lambda cls, steps, info: check_steps(steps, info))
    _cache = field_validator("cache", mode="before")(lambda cls, cache: cache if cache is None else check_cache(cache))
    _guidance = field_validator("guidance_scale", mode="before")(lambda cls, guidance: check_guidance(guidance))

    @model_validator(mode="after")
    def _seeds_fit(self):
        if self.seed is not None and self.seed + self.n - 1 > SEED_MAX:
            raise RequestError(400, f"seed + n - 1 must be at most {SEED_MAX}: the images take seeds seed .. "
                                    "seed + n - 1.")
        return self

    def requests(self, accepts: Accepts, limits: Limits) -> list[GenerateRequest]:
        """One /v1/generate request per image, checked by the same rules (the same sentences)."""
        first = secrets.randbelow(SEED_MAX - N_MAX) if self.seed is None else self.seed
        common: dict = {"steps": self.steps, "guidance_scale": self.guidance_scale}
        if self.cache is not None:
            common["cache"] = self.cache
        if accepts.prompts:
            common["prompt"] = self.prompt
            if self.negative_prompt:
                common["negative_prompt"] = self.negative_prompt
        else:
            if self.negative_prompt:
                raise RequestError(422, "this server's model is class-conditional and takes no negative_prompt; "
                                        "leave it out.")
            common["class"] = class_of(self.prompt, accepts)
        return [parse_request({**common, "seed": first + i}, accepts, limits) for i in range(self.n)]


def class_of(prompt: str, accepts: Accepts) -> int:
    """A class-conditional folder's class from a prompt: a class name or a class index."""
    text = prompt.strip()
    value: int | str = int(text) if text.isdigit() and len(text) < 10 else text
    try:
        return label_index(value, accepts)
    except RequestError as exc:
        raise RequestError(400, "this server's model is class-conditional: the prompt is its class, "
                                + exc.message.removeprefix("class must be ")) from None


def error_body(exc: RequestError) -> dict:
    """OpenAI's error shape: the official client raises BadRequestError etc. with this message."""
    kind = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error",
            503: "server_error", 408: "timeout", 500: "server_error"}.get(exc.status, "invalid_request_error")
    return {"error": {"message": exc.message, "type": kind, "param": None, "code": None}}
