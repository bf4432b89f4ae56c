"""The manifest's schema: what ``read_manifest`` accepts before it trusts a field, checked in one place.

A hand-edited or damaged manifest (``[]``, ``null``, ``"shape": {}``, ``"batch_max": "4"``, a NaN budget, a part
whose file is ``../outside.onnx``) is refused with one sentence naming the field, instead of a traceback later or
a file read from outside the folder. Strict types: a number written as a string is not a number here.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")


def _inside_the_folder(name: str) -> str:
    """A plain file name: every file a manifest names stays inside its folder."""
    if name in ("", ".", "..") or PurePosixPath(name).name != name or PureWindowsPath(name).name != name:
        raise ValueError(f"{name!r} is not a file name inside the folder")
    return name


FileName = Annotated[str, AfterValidator(_inside_the_folder)]
Count = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class PartSchema(_Strict):
    model_config = ConfigDict(extra="forbid")
    file: FileName
    inputs: list[dict]
    outputs: list[dict]
    precision: Literal[PRECISIONS] = "fp32"
    sha256: str = ""
    check_error: float | None = None
    extra_files: list[FileName] = []
    extra_sha256: dict[FileName, str] = {}


class ShapeSchema(_Strict):
    height: Count
    width: Count
    frames: Count = 1
    text_tokens: Count = 8
    batch_min: Count = 1
    batch_opt: Count = 1
    batch_max: Count = 4

    @model_validator(mode="after")
    def _ordered(self):
        if not self.batch_min <= self.batch_opt <= self.batch_max:
            raise ValueError(f"batch_min <= batch_opt <= batch_max does not hold ({self.batch_min}, "
                             f"{self.batch_opt}, {self.batch_max})")
        return self


class ModelSchema(_Strict):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str
    family: str
    class_name: str = Field(alias="class")
    config: dict

    @model_validator(mode="after")
    def _known(self):
        from ..models.registry import family_classes

        if self.class_name not in family_classes():
            raise ValueError(f"{self.class_name!r} is not a model class of a family this tcpade-trt knows "
                             f"({', '.join(family_classes())})")
        return self


class CalibrationSchema(_Strict):
    model_config = ConfigDict(extra="allow")
    schedules: list = []  # [[steps, budget, [full steps]], ...] (`tcpade-trt calibrate`)

    @field_validator("schedules")
    @classmethod
    def _rows(cls, rows: list) -> list:
        from ..cache.calibrate import schedule_row_problem  # the same rule as a calibration file's

        problem = schedule_row_problem(rows)
        if problem is not None:
            raise ValueError(problem)
        return rows


class ManifestSchema(_Strict):
    backend: str
    precision: Literal[PRECISIONS]
    model: ModelSchema
    shape: ShapeSchema
    parts: dict[str, PartSchema] = Field(min_length=1)
    versions: dict
    quantization: dict | None = None
    extras: dict[str, FileName] = {}
    extra_sha256: dict[FileName, str] = {}
    options: dict = {}
    build_log: list = []
    calibration: CalibrationSchema = CalibrationSchema()
    created: str = ""
    format: str
    format_version: int


def manifest_problem(data) -> str | None:
    """None for a manifest the schema accepts, else one phrase naming the first field that is wrong."""
    if not isinstance(data, dict):
        return f"it holds {json.dumps(data)[:40]}, not a JSON object"
    try:
        ManifestSchema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "the manifest"
        message = first["msg"].removeprefix("Value error, ")
        if isinstance(first.get("input"), float) and not math.isfinite(first["input"]):
            message = f"{first['input']} is not a finite number"
        return f"{where}: {message}"
    return None
