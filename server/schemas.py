"""Request and response bodies at the HTTP edge: types and sizes only.

The engine's rules (layer fields, ranges, shapes, memory) stay in ``engine.spec``;
these models only bound what may reach it. The OpenAPI schema of a layer list and
of ``train`` is *derived* from the engine's own tables, so /docs describes exactly
what ``engine.spec.validate_config`` accepts without a second copy of the rules.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from engine.fields import Field as EngineField
from engine.spec import DATASET_FIELDS, DATASET_SHAPES, LAYER_FIELDS, TRAIN_FIELDS

MAX_LIST = 10_000          # longer lists are refused at the edge (the engine allows 200 layers)
MAX_NAME = 200


def _field_schema(rule: EngineField) -> dict:
    kind = rule.kind
    if kind == "int":
        return {"type": "integer", "minimum": rule.min, "maximum": rule.max}
    if kind == "float":
        return {"type": "number", "minimum": rule.min, "maximum": rule.max}
    if kind == "bool":
        return {"type": "boolean"}
    if kind == "choice":
        return {"enum": list(rule.choices)}
    return {}


def _default(rule: EngineField):
    return None if rule.required else rule.default


def layer_schema() -> dict:
    """One JSON-schema alternative per engine layer type (from engine.spec.LAYER_FIELDS)."""
    alts = []
    for kind, fields in LAYER_FIELDS.items():
        props: dict[str, Any] = {"type": {"const": kind}}
        required = ["type"]
        for name, rule in fields.items():
            props[name] = _field_schema(rule)
            d = _default(rule)
            if d is not None:
                props[name]["default"] = d
            elif rule.required:
                required.append(name)
        alts.append({"title": kind, "type": "object", "properties": props,
                     "required": required, "additionalProperties": False})
    return {"type": "array", "maxItems": MAX_LIST, "items": {"oneOf": alts},
            "description": "Layers in order, channels-last; validated by engine.spec",
            "examples": [[{"type": "flatten"}, {"type": "dense", "units": 100},
                          {"type": "relu"}, {"type": "dense", "units": 10}]]}


def train_schema() -> dict:
    props = {}
    for name, rule in TRAIN_FIELDS.items():
        props[name] = _field_schema(rule)
        d = _default(rule)
        if d is not None:
            props[name]["default"] = d
    props["schedule"] = {"type": "object", "description": "{type: constant|step|exponential|"
                                                          "cosine|loss, ...}"}
    props["init"] = {"type": "object", "description": "{type: normal|uniform|glorot|xavier|he}"}
    props["probe_indices"] = {"type": "array", "items": {"type": "integer"}, "maxItems": 16}
    return {"type": "object", "properties": props, "additionalProperties": False,
            "description": "Training hyperparameters; every field optional (engine defaults)"}


def dataset_schema() -> dict:
    """From engine.spec.DATASET_FIELDS, less ``path`` (a server path is never taken over HTTP)."""
    props: dict[str, Any] = {"name": {"enum": list(DATASET_SHAPES), "default": "mnist"}}
    for name, rule in DATASET_FIELDS.items():
        if name not in ("name", "path"):
            props[name] = _field_schema(rule)
            if _default(rule) is not None:
                props[name]["default"] = _default(rule)
    return {"type": "object", "additionalProperties": False, "properties": props}


DATASET_SCHEMA = dataset_schema()

Layers = Annotated[list[dict[str, Any]], Field(max_length=MAX_LIST), WithJsonSchema(layer_schema())]
Train = Annotated[dict[str, Any], Field(max_length=100), WithJsonSchema(train_schema())]
DatasetCfg = Annotated[dict[str, Any], Field(max_length=20), WithJsonSchema(DATASET_SCHEMA)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCreate(Strict):
    """Either ``preset`` (+ ``overrides``) or ``model`` (+ ``train``, ``dataset``)."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"preset": "mlp", "overrides": {"epochs": 1, "train_limit": 2000}},
        {"model": [{"type": "flatten"}, {"type": "dense", "units": 10}],
         "train": {"lr": 0.1, "epochs": 1}, "dataset": {"name": "mnist", "train_limit": 1000}}]})
    name: str | None = Field(None, max_length=MAX_NAME, description="printable, <= 200 chars")
    preset: str | None = Field(None, max_length=64, description="a name from GET /api/presets")
    overrides: dict[str, Any] | None = Field(
        None, max_length=100, description="flat overrides as engine.presets.apply_overrides: "
                                          "epochs, lr, batch_size, train_limit, ...")
    model: Layers | None = None
    train: Train | None = None
    dataset: DatasetCfg | None = None


class ValidateBody(Strict):
    model: Layers
    train: Train | None = None
    dataset: DatasetCfg | None = None


class HparamsPatch(Strict):
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None


class PredictBody(Strict):
    image: list[list[float]] = Field(..., min_length=1, max_length=64,
                                     description="rows of floats in 0..1, the dataset's H x W "
                                                 "(28 x 28 for MNIST)")


class GradcheckBody(Strict):
    run_id: str | None = Field(None, max_length=40, description="check a run's current weights")
    model: Layers | None = None
    dataset: DatasetCfg | None = None


# ------------------------------------------------------------------------ responses


class EncodedArray(BaseModel):
    """``value ~ min + q * (max - min) / 255`` with ``q`` the uint8 bytes in ``b64``."""
    model_config = ConfigDict(populate_by_name=True)
    array: Literal["uint8"] = Field("uint8", alias="__array__")
    shape: list[int]
    min: float
    max: float
    b64: str


class RunOut(BaseModel):
    id: str
    name: str
    preset: str | None
    status: Literal["queued", "running", "paused", "completed", "stopped", "diverged", "failed",
                    "interrupted"]
    error: str | None
    config: dict[str, Any]
    summary: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    last_seq: int
    latest: dict[str, Any] | None
    final: dict[str, Any] | None
    best_test_accuracy: float | None
    weights_step: int | None = Field(None, description="training step of the saved weights")


class RunList(BaseModel):
    runs: list[RunOut]


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str


class ValidateOut(BaseModel):
    valid: bool
    errors: list[ErrorItem]
    summary: dict[str, Any] | None


class PredictOut(BaseModel):
    probabilities: list[float]
    predicted: int
    feature_maps: dict[str, Any] | None = Field(None, description="EncodedArray (H', W', F) or "
                                                                  "(units,)")
    step: int | None


class GradRow(BaseModel):
    name: str
    shape: list[int]
    rel_error: float | None
    checked: int


class GradcheckOut(BaseModel):
    rows: list[GradRow]
    max_rel_error: float | None
    ok: bool
    threshold: float


ERRORS = {
    400: {"description": "Bad request (Host, Content-Length)"},
    401: {"description": "Token missing or wrong"},
    403: {"description": "Cross-site Origin"},
    404: {"description": "Unknown run"},
    413: {"description": "Body over the size limit"},
    422: {"description": "Invalid body: `detail` lists `{loc, msg}` naming each field"},
}


def finite(x: float) -> bool:
    return math.isfinite(x)
