"""What a client may ask for, checked before any work: POST /v1/generate's JSON body as a pydantic model.

    {"class": "astronaut" | 3, "seed": 0, "steps": 20, "cache": "tcpade-fast", "guidance_scale": null,
     "format": "png" | "json"}                                  class-conditional folders (demo models, DiT)
    {"prompt": "a red fox", "negative_prompt": "blurry", ...}   text-conditioned ones (FLUX, Wan, SD3)

Every field is optional but the prompt. ``GenerateBody`` is the schema (FastAPI publishes it at /openapi.json)
and its validators are the checks: the served folder (``Accepts``) and the server's ``Limits`` reach them as
pydantic's validation context. A mistake is a RequestError: an HTTP status (400 bad value, 413 too large, 422
not servable by this folder) and one sentence that says what to send instead. A request can name no file,
folder or engine: the server serves the one folder it was started with, within its limits.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..cache import DEFAULT_CACHE

if TYPE_CHECKING:
    from ..cache.config import CacheConfig

SEED_MAX = 2**63 - 1
PROMPT_MAX_CHARS = 2000  # the text encoders truncate to the folder's text tokens anyway
CACHE_MAX_CHARS = 200
GUIDANCE_MAX = 50


class RequestError(ValueError):
    """A client's mistake: an HTTP status and one sentence. A ValueError, so that pydantic's validators may raise
    it and ``parse_request`` finds it (with its status) in the validation error's context."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Limits:
    """What one server accepts; the folder sets the rest (classes, batch range)."""

    max_steps: int = 100
    max_body_bytes: int = 16 * 1024


@dataclass(frozen=True)
class Accepts:
    """How the served folder is conditioned: by class (named, or by label count) or by text."""

    classes: list[str] | None = None  # the demo models' class names
    num_classes: int | None = None  # DiT: labels 0 .. num_classes - 1
    prompts: bool = False  # FLUX, Wan, SD3 served with a pipeline folder's text encoders
    negative_prompts: bool = False  # the family uses classifier-free guidance (Wan, SD3; not FLUX)


@dataclass(frozen=True)
class GenerateRequest:
    label: int | None  # class index (class-conditional folders)
    seed: int
    steps: int
    # the cache config, parsed once from the request's spec (a spec string given here is parsed on construction):
    # "tcpade-fast" and "tcpade-fast:budget=0.35" are one config, so they share a batch
    cache: CacheConfig
    guidance_scale: float | None
    format: str  # "png" or "json"
    prompt: str | None = None  # text-conditioned folders
    negative_prompt: str = ""
    # set by the server when the client is no longer waiting (its timeout): a generation whose requests are all
    # cancelled stops at the next step instead of computing for nobody
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    def __post_init__(self):
        if isinstance(self.cache, str):
            from ..cache import cache_config

            object.__setattr__(self, "cache", cache_config(self.cache))

    def batch_key(self) -> tuple:
        """Requests with equal keys may share one batched generation (same steps, schedule and guidance); their
        classes or prompts may differ: conditioning is per sample."""
        return self.steps, self.cache, self.guidance_scale


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _context(info: ValidationInfo) -> tuple[Accepts, Limits]:
    context = info.context or {}
    return context.get("accepts", Accepts()), context.get("limits", Limits())


def known_fields(model: type[BaseModel], body, example: str):
    """A JSON object of ``model``'s fields only (a request names no file or option of the server's), refused in
    one sentence otherwise; for every request body's model_validator(mode="before")."""
    if not isinstance(body, dict):
        raise RequestError(400, f"the body must be a JSON object, e.g. {example}.")
    fields = [f.alias or name for name, f in model.model_fields.items()]
    unknown = sorted(map(str, set(body) - set(fields)))
    if unknown:
        raise RequestError(400, f"this server does not take {', '.join(unknown)} (unknown field(s)); the fields "
                                f"are {', '.join(fields)}.")
    return body


def check_seed(seed):
    if not _is_int(seed) or not 0 <= seed <= SEED_MAX:
        raise RequestError(400, f"seed must be a whole number from 0 to {SEED_MAX} (got {seed!r}).")
    return seed


def check_steps(steps, info: ValidationInfo):
    limit = _context(info)[1].max_steps
    if not _is_int(steps) or not 2 <= steps <= limit:
        raise RequestError(400, f"steps must be a whole number from 2 to {limit} (got {steps!r}).")
    return steps


def check_cache(cache):
    if not isinstance(cache, str) or len(cache) > CACHE_MAX_CHARS:
        raise RequestError(400, f"cache must be a cache spec string such as \"{DEFAULT_CACHE}\".")
    return cache.strip()


def check_guidance(guidance):
    """None, or a finite number in range: not a bool (pydantic would read false as 0.0)."""
    if guidance is not None and (not isinstance(guidance, (int, float)) or isinstance(guidance, bool)
                                 or not math.isfinite(guidance) or not 0 <= guidance <= GUIDANCE_MAX):
        raise RequestError(400, f"guidance_scale must be a number from 0 to {GUIDANCE_MAX}, or null "
                                f"(got {guidance!r}).")
    return guidance


class GenerateBody(BaseModel):
    """The JSON body of POST /v1/generate. Validate it with ``context={"accepts": ..., "limits": ...}``."""

    model_config = ConfigDict(extra="forbid", title="GenerateRequest")

    label: int | str = Field(0, alias="class", description="class-conditional folders: a class index, or one of "
                             "the demo models' class names (see /healthz); text-conditioned folders take none")
    prompt: str | None = Field(None, max_length=PROMPT_MAX_CHARS,
                               description="text-conditioned folders (FLUX, Wan, SD3): what to draw")
    negative_prompt: str = Field("", max_length=PROMPT_MAX_CHARS,
                                 description="text folders whose family uses classifier-free guidance (Wan, SD3)")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="the initial noise: equal seeds give equal images")
    steps: int = Field(20, ge=2, description="sampling steps, at most the server's --max-steps")
    cache: str = Field(DEFAULT_CACHE, max_length=CACHE_MAX_CHARS,
                       description="a cache spec: a preset (tcpade-fast, tcpade-quality, none, ...) and optional "
                                   "fields, e.g. \"tcpade-fast:budget=0.35\"")
    guidance_scale: float | None = Field(None, ge=0, le=GUIDANCE_MAX,
                                         description="classifier-free / embedded guidance; null: the family's own")
    format: Literal["png", "json"] = Field("png", description="png: the image itself; json: base64 and statistics")

    _config: CacheConfig = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _an_object_of_known_fields(cls, body):
        return known_fields(cls, body, "{\"class\": 0, \"seed\": 1}")

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value, info: ValidationInfo):
        accepts = _context(info)[0]
        if not accepts.prompts and not (_is_int(value) or isinstance(value, str)):  # true: pydantic would read 1
            label_index(value, accepts)  # raises the sentence that names the classes
        return value

    @field_validator("prompt", "negative_prompt", mode="before")
    @classmethod
    def _text(cls, value, info: ValidationInfo):
        if value is not None and (not isinstance(value, str) or len(value) > PROMPT_MAX_CHARS):
            raise RequestError(400, f"{info.field_name} must be a string of at most {PROMPT_MAX_CHARS} characters.")
        return value

    # the generation's own fields: the same checks in the OpenAI dialect (openai_images.ImagesBody)
    _seed = field_validator("seed", mode="before")(lambda cls, seed: check_seed(seed))
    _steps = field_validator("steps", mode="before")(lambda cls, steps, info: check_steps(steps, info))
    _cache = field_validator("cache", mode="before")(lambda cls, cache: check_cache(cache))
    _guidance = field_validator("guidance_scale", mode="before")(lambda cls, guidance: check_guidance(guidance))

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, fmt):
        if fmt not in ("png", "json"):
            raise RequestError(400, f"format must be \"png\" or \"json\" (got {fmt!r}).")
        return fmt

    @model_validator(mode="after")
    def _fits_this_server(self, info: ValidationInfo):
        from ..cache import cache_config, make_policy
        from ..errors import ConfigError

        accepts, _ = _context(info)
        self._conditioning(accepts)
        try:
            self._config = cache_config(self.cache)  # the one parse: the config travels from here on
            # the schedule against this request's steps: alone, before it joins a batch whose others it would fail
            make_policy(self._config).reset(self.steps)
        except ConfigError as exc:
            raise RequestError(400, f"cache: {exc}") from None
        return self

    def _conditioning(self, accepts: Accepts) -> None:
        """The fields this folder takes; the others are refused (422)."""
        given = self.model_fields_set
        if accepts.prompts:
            if "label" in given:
                raise RequestError(422, "this server's model is conditioned by text: send \"prompt\", not \"class\".")
            if self.prompt is None:
                raise RequestError(400, "this server's model is conditioned by text: send a \"prompt\", e.g. "
                                        "{\"prompt\": \"a red fox in the snow\"}.")
            if self.negative_prompt and not accepts.negative_prompts:
                raise RequestError(422, "this server's model uses no classifier-free guidance, so it takes no "
                                        "negative_prompt; leave it out.")
            return
        for name in ("prompt", "negative_prompt"):
            if name in given:
                what = "class-conditional: send \"class\"" if accepts.classes or accepts.num_classes else \
                    "not text-conditioned"
                raise RequestError(422, f"this server's model is {what}, not \"{name}\".")
        if accepts.classes is None and accepts.num_classes is None:
            raise RequestError(422, "this server's engine folder is neither class- nor text-conditioned (start the "
                                    "server with --pipeline DIR for a text-conditioned one).")
        label_index(self.label, accepts)

    def to_request(self, accepts: Accepts) -> GenerateRequest:
        label = None if accepts.prompts else label_index(self.label, accepts)
        return GenerateRequest(label, self.seed, self.steps, self._config,
                               None if self.guidance_scale is None else float(self.guidance_scale), self.format,
                               self.prompt if accepts.prompts else None, self.negative_prompt)


def label_index(value, accepts: Accepts) -> int:
    """A class index from an index or one of the folder's class names (400 otherwise)."""
    classes = accepts.classes
    count = len(classes) if classes is not None else accepts.num_classes or 0
    if isinstance(value, str) and classes is not None and value in classes:
        return classes.index(value)
    if _is_int(value) and 0 <= value < count:
        return value
    names = f" or one of {', '.join(classes)}" if classes is not None else ""
    raise RequestError(400, f"class must be an index from 0 to {count - 1}{names} (got {value!r}).")


def validate(schema: type[BaseModel], body, accepts: Accepts, limits: Limits, **context):
    """``schema`` validated against this server (``context``: what else its validators ask, e.g. the image size),
    or the first mistake as a RequestError (one sentence)."""
    try:
        return schema.model_validate(body, context={"accepts": accepts, "limits": limits, **context})
    except ValidationError as exc:
        raise request_error(exc) from None


def request_error(exc: ValidationError) -> RequestError:
    """pydantic's first error as one sentence: our validators' own RequestError, else its field and message."""
    first = exc.errors(include_url=False)[0]
    original = (first.get("ctx") or {}).get("error")
    if isinstance(original, RequestError):
        return original
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    if first["type"] == "missing":
        return RequestError(400, f"the field \"{where}\" is missing; send it.")
    return RequestError(400, f"{where}: {first['msg'].removeprefix('Value error, ')}.")


def parse_request(body, accepts: Accepts, limits: Limits) -> GenerateRequest:
    """A checked request from a decoded JSON body, for a folder conditioned as ``accepts`` says."""
    return validate(GenerateBody, body, accepts, limits).to_request(accepts)
