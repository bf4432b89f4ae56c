"""What a client may ask for, checked before any work: POST /v1/generate's JSON body.

    {"class": "astronaut" | 3, "seed": 0, "steps": 20, "cache": "tcpade-fast", "guidance_scale": null,
     "format": "png" | "json"}                                  class-conditional folders (demo models, DiT)
    {"prompt": "a red fox", "negative_prompt": "blurry", ...}   text-conditioned ones (FLUX, Wan, SD3)

Every field is optional but the prompt. A mistake is a RequestError: an HTTP status (400 bad value, 413
too large, 422 not servable by this folder) and one sentence that says what to send instead. A request can name no file,
folder or engine: the server serves the one folder it was started with, within its limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..cache.config import CacheConfig

SEED_MAX = 2**63 - 1
FIELDS = ("class", "prompt", "negative_prompt", "seed", "steps", "cache", "guidance_scale", "format")
PROMPT_MAX_CHARS = 2000  # the text encoders truncate to the folder's text tokens anyway


class RequestError(Exception):
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

    def __post_init__(self):
        if isinstance(self.cache, str):
            from ..cache import cache_config

            object.__setattr__(self, "cache", cache_config(self.cache))

    def batch_key(self) -> tuple:
        """Requests with equal keys may share one batched generation (same steps, schedule and guidance); their
        classes or prompts may differ: conditioning is per sample."""
        return self.steps, self.cache, self.guidance_scale


def parse_request(body, accepts: Accepts, limits: Limits) -> GenerateRequest:
    """A checked request from a decoded JSON body, for a folder conditioned as ``accepts`` says."""
    from ..cache import DEFAULT_CACHE, cache_config, make_policy
    from ..errors import ConfigError

    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object, e.g. {\"class\": 0, \"seed\": 1}.")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(FIELDS)}.")
    label, prompt, negative = _conditioning(body, accepts)
    seed = body.get("seed", 0)
    if not _is_int(seed) or not 0 <= seed <= SEED_MAX:
        raise RequestError(400, f"seed must be a whole number from 0 to {SEED_MAX} (got {seed!r}).")
    steps = body.get("steps", 20)
    if not _is_int(steps) or not 2 <= steps <= limits.max_steps:
        raise RequestError(400, f"steps must be a whole number from 2 to {limits.max_steps} (got {steps!r}).")
    cache = body.get("cache", DEFAULT_CACHE)
    if not isinstance(cache, str) or len(cache) > 200:
        raise RequestError(400, f"cache must be a cache spec string such as \"{DEFAULT_CACHE}\".")
    try:
        config = cache_config(cache.strip())  # the one parse: the config travels from here on
    except ConfigError as exc:
        raise RequestError(400, f"cache: {exc}") from None
    try:  # the schedule against this request's steps: alone, before it joins a batch whose other requests it would fail
        make_policy(config).reset(steps)
    except ConfigError as exc:
        raise RequestError(400, f"cache: {exc}") from None
    guidance = body.get("guidance_scale")
    if guidance is not None and (not isinstance(guidance, (int, float)) or isinstance(guidance, bool)
                                 or not math.isfinite(guidance) or not 0 <= guidance <= 50):
        raise RequestError(400, f"guidance_scale must be a number from 0 to 50, or null (got {guidance!r}).")
    fmt = body.get("format", "png")
    if fmt not in ("png", "json"):
        raise RequestError(400, f"format must be \"png\" or \"json\" (got {fmt!r}).")
    return GenerateRequest(label, seed, steps, config, None if guidance is None else float(guidance), fmt,
                           prompt, negative)


def _conditioning(body: dict, accepts: Accepts) -> tuple[int | None, str | None, str]:
    """(class label, prompt, negative prompt): the fields this folder takes, refusing the others (422)."""
    if accepts.prompts:
        if "class" in body:
            raise RequestError(422, "this server's model is conditioned by text: send \"prompt\", not \"class\".")
        prompt, negative = body.get("prompt"), body.get("negative_prompt", "")
        if prompt is None:
            raise RequestError(400, "this server's model is conditioned by text: send a \"prompt\", e.g. "
                                    "{\"prompt\": \"a red fox in the snow\"}.")
        for name, text in (("prompt", prompt), ("negative_prompt", negative)):
            if not isinstance(text, str) or len(text) > PROMPT_MAX_CHARS:
                raise RequestError(400, f"{name} must be a string of at most {PROMPT_MAX_CHARS} characters.")
        if negative and not accepts.negative_prompts:
            raise RequestError(422, "this server's model uses no classifier-free guidance, so it takes no "
                                    "negative_prompt; leave it out.")
        return None, prompt, negative
    for name in ("prompt", "negative_prompt"):
        if name in body:
            what = "class-conditional: send \"class\"" if accepts.classes or accepts.num_classes else \
                "not text-conditioned"
            raise RequestError(422, f"this server's model is {what}, not \"{name}\".")
    if accepts.classes is None and accepts.num_classes is None:
        raise RequestError(422, "this server's engine folder is neither class- nor text-conditioned (start the "
                                "server with --pipeline DIR for a text-conditioned one).")
    return _label(body.get("class", 0), accepts.classes, accepts.num_classes), None, ""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _label(value, classes: list[str] | None, num_classes: int | None) -> int:
    count = len(classes) if classes is not None else num_classes
    if isinstance(value, str) and classes is not None and value in classes:
        return classes.index(value)
    if _is_int(value) and 0 <= value < count:
        return value
    names = f" or one of {', '.join(classes)}" if classes is not None else ""
    raise RequestError(400, f"class must be an index from 0 to {count - 1}{names} (got {value!r}).")
