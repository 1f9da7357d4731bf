"""Request and response bodies at the HTTP edge: types and sizes only.

The engine's rules (layer fields, ranges, shapes, memory) stay in ``engine.spec``;
these models only bound what may reach it. The OpenAPI schema of a layer list and
of ``train`` is *derived* from the engine's own tables, so /docs describes exactly
what ``engine.spec.validate_config`` accepts without a second copy of the rules.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from engine.datasets import dataset_names
from engine.fields import Field as EngineField
from engine.fields import init_fields
from engine.presets import PRESETS
from engine.bsde import BSDE_PRESETS
from engine.spec import (DATASET_FIELDS, INIT_TYPES, LAYER_FIELDS, MAX_LAYERS, SCHEDULE_FIELDS,
                         TRAIN_FIELDS)

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
    if kind == "init":
        return init_schema()
    if kind == "schedule":
        return schedule_schema()
    if kind == "table":
        return {"type": "array", "minItems": 1, "maxItems": 100, "description": "[loss threshold, "
                "learning rate] pairs: below each threshold, its rate",
                "items": {"type": "array", "minItems": 2, "maxItems": 2,
                          "items": {"type": "number", "exclusiveMinimum": 0}}}
    if kind == "probes":
        return {"type": "array", "maxItems": 16, "items": {"type": "integer", "minimum": 0,
                                                           "maximum": 9_999_999}}
    return {}


def _default(rule: EngineField):
    return None if rule.required else rule.default


def init_schema() -> dict:
    """A weight initialiser: a type name, or an object with its type and own fields
    (engine.fields.INIT_FIELDS: std for normal, limit for uniform, bias_std for all)."""
    alts: list[dict] = [{"enum": list(INIT_TYPES)}]
    for kind in INIT_TYPES:
        props: dict[str, Any] = {"type": {"const": kind}}
        for name, rule in init_fields(kind).items():
            props[name] = dict(_field_schema(rule), default=rule.default)
        alts.append({"title": f"init {kind}", "type": "object", "properties": props,
                     "required": ["type"], "additionalProperties": False})
    return {"oneOf": alts}


def schedule_schema() -> dict:
    """A learning-rate schedule: a type name, or an object per type
    (engine.spec.SCHEDULE_FIELDS)."""
    alts: list[dict] = [{"enum": list(SCHEDULE_FIELDS)}]
    for kind, fields in SCHEDULE_FIELDS.items():
        props: dict[str, Any] = {"type": {"const": kind}}
        for name, rule in fields.items():
            props[name] = _field_schema(rule)
            if _default(rule) not in (None, []):
                props[name]["default"] = _default(rule)
        alts.append({"title": f"schedule {kind}", "type": "object", "properties": props,
                     "required": ["type"] + (["table"] if kind == "loss" else []),
                     "additionalProperties": False})
    return {"oneOf": alts, "default": {"type": "constant"}}


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
    return {"type": "array", "minItems": 1, "maxItems": MAX_LAYERS, "items": {"oneOf": alts},
            "description": "Layers in order, channels-last; validated by engine.spec",
            "examples": [[{"type": "flatten"}, {"type": "dense", "units": 100},
                          {"type": "relu"}, {"type": "dense", "units": 10}]]}


def _train_props() -> dict:
    props = {}
    for name, rule in TRAIN_FIELDS.items():
        props[name] = _field_schema(rule)
        d = _default(rule)
        if d is not None:
            props[name]["default"] = d
    props["lr"] = {"type": "number", "exclusiveMinimum": 0, "maximum": TRAIN_FIELDS["lr"].max,
                   "default": TRAIN_FIELDS["lr"].default}          # the engine: lr > 0
    for name in ("epochs", "iterations"):
        props[name]["description"] = "give epochs or iterations, not both"
    return props


EPOCHS_OR_ITERATIONS = {"required": ["epochs", "iterations"]}


def train_schema() -> dict:
    return {"type": "object", "properties": _train_props(), "additionalProperties": False,
            "not": EPOCHS_OR_ITERATIONS,
            "description": "Training hyperparameters; every field optional (engine defaults)"}


def _dataset_props() -> dict:
    """From engine.spec.DATASET_FIELDS, less ``path`` (a server path is never taken over HTTP)."""
    props: dict[str, Any] = {"name": {"enum": list(dataset_names()), "default": "mnist"}}
    for name, rule in DATASET_FIELDS.items():
        if name not in ("name", "path"):
            props[name] = _field_schema(rule)
            if _default(rule) is not None:
                props[name]["default"] = _default(rule)
    return props


def dataset_schema() -> dict:
    return {"type": "object", "additionalProperties": False, "properties": _dataset_props()}


def overrides_schema() -> dict:
    """engine.presets.apply_overrides: any train field, the dataset's limits and normalize,
    and ``dataset`` for its name; flat."""
    ds = _dataset_props()
    props = {**_train_props(), "dataset": ds.pop("name"), **ds}
    return {"type": "object", "properties": props, "additionalProperties": False,
            "not": EPOCHS_OR_ITERATIONS, "description": "flat overrides of the preset's config "
            "(engine.presets.apply_overrides); one of epochs/iterations replaces the preset's "
            "other", "examples": [{"epochs": 1, "lr": 0.1, "train_limit": 2000}]}


DATASET_SCHEMA = dataset_schema()

Layers = Annotated[list[dict[str, Any]], Field(max_length=MAX_LIST), WithJsonSchema(layer_schema())]
Train = Annotated[dict[str, Any], Field(max_length=100), WithJsonSchema(train_schema())]
DatasetCfg = Annotated[dict[str, Any], Field(max_length=20), WithJsonSchema(DATASET_SCHEMA)]
Overrides = Annotated[dict[str, Any], Field(max_length=100), WithJsonSchema(overrides_schema())]
Image = Annotated[list[list[float]], Field(min_length=1, max_length=64), WithJsonSchema({
    "type": "array", "minItems": 1, "maxItems": 64, "items": {
        "type": "array", "minItems": 1, "maxItems": 64,
        "items": {"type": "number", "minimum": 0, "maximum": 1}}})]


def not_null(schema: dict) -> None:
    """Optional fields appear as their type, not ``anyOf [type, null]``: the server reads a null
    as an absent field, and the documented shape is the one to send."""
    for prop in schema.get("properties", {}).values():
        alts = prop.get("anyOf")
        if alts and {"type": "null"} in alts:
            rest = [a for a in alts if a != {"type": "null"}]
            prop.pop("anyOf")
            if prop.get("default", 0) is None:
                prop.pop("default")
            prop.update(rest[0] if len(rest) == 1 else {"anyOf": rest})


def one_shape(*shapes: tuple[str, tuple[str, ...]]):
    """``json_schema_extra``: the body is exactly one of ``(required field, fields it
    excludes)``."""
    def extra(schema: dict) -> None:
        not_null(schema)
        schema["oneOf"] = [{"required": [need], "properties": {k: False for k in excluded}}
                           for need, excluded in shapes]
    return extra


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCreate(Strict):
    """Either ``preset`` (+ ``overrides``), ``model`` (+ ``train``, ``dataset``), or a Deep
    BSDE run's ``task: "bsde"`` + ``equation`` (+ ``subnet``, ``y_init_range``, ``train``)."""

    @staticmethod
    def _schema(schema: dict) -> None:
        bsde = ("task", "equation", "subnet", "y_init_range")
        one_shape(("preset", ("model", "train", "dataset", *bsde)),
                  ("model", ("preset", "overrides", *bsde)),
                  ("equation", ("preset", "overrides", "model", "dataset")))(schema)
        schema["properties"]["preset"]["enum"] = [*PRESETS, *BSDE_PRESETS]
        schema["examples"] = [
            {"preset": "mlp", "overrides": {"epochs": 1, "train_limit": 2000}},
            {"preset": "bsde-hjb-d10", "overrides": {"iterations": 500, "lr": 0.01}},
            {"task": "bsde", "equation": {"name": "allen_cahn", "dim": 20, "total_time": 0.3,
                                          "num_time_interval": 20},
             "subnet": "reference", "y_init_range": [0.3, 0.5], "train": {"lr": 5e-4, "iterations": 1000}},
            {"model": [{"type": "flatten"}, {"type": "dense", "units": 10}],
             "train": {"lr": 0.1, "epochs": 1}, "dataset": {"name": "mnist", "train_limit": 1000}}]

    model_config = ConfigDict(extra="forbid", json_schema_extra=_schema)
    name: str | None = Field(None, max_length=MAX_NAME, description="printable, <= 200 chars")
    preset: str | None = Field(None, max_length=64, description="a name from GET /api/presets")
    overrides: Overrides | None = None
    model: Layers | None = None
    train: Train | None = None
    dataset: DatasetCfg | None = None
    task: Literal["image", "bsde"] | None = Field(None, description="bsde: a Deep BSDE run "
                                                  "(equation, subnet, y_init_range, train)")
    equation: dict[str, Any] | None = Field(None, description="bsde: {name, dim, total_time, "
                                            "num_time_interval, and the equation's parameters}")
    subnet: Layers | Literal["reference", "tanh"] | None = Field(
        None, description="bsde: the per-time-step subnet, a layer list ending in dim units")
    y_init_range: list[float] | None = Field(None, min_length=2, max_length=2,
                                             description="bsde: [low, high] of u0's start")
    start_paused: bool = Field(False, description="pause before the first step (then Step or "
                                                  "Resume)")
    where: Literal["local", "dask"] = Field("local", description="dask: on the Dask cluster "
                                            "(only when the server was started with --dask)")


class TempoBody(Strict):
    model_config = ConfigDict(extra="forbid")
    steps_per_second: float | None = Field(..., gt=0, le=100000,
                                           description="at most this many steps per second; "
                                                       "null: full speed")


class StepBody(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=not_null)
    steps: int = Field(1, ge=1, le=100000, description="steps to take, then stay paused")


class ValidateBody(Strict):
    """An image run's model (+ train, dataset), or with ``task`` "bsde" a Deep BSDE run's
    subnet as ``model`` (+ equation, y_init_range, train); errors in the subnet are located
    at ``["model", i, ...]`` as for an image model."""
    model_config = ConfigDict(extra="forbid", json_schema_extra=not_null)
    model: Layers
    train: Train | None = None
    dataset: DatasetCfg | None = None
    task: Literal["image", "bsde"] | None = None
    equation: dict[str, Any] | None = None
    y_init_range: list[float] | None = Field(None, min_length=2, max_length=2)


def _patch_schema(schema: dict) -> None:
    not_null(schema)
    props = schema["properties"]
    props["lr"].update(exclusiveMinimum=0, maximum=TRAIN_FIELDS["lr"].max)
    for name in ("momentum", "weight_decay"):
        props[name].update({k: v for k, v in _field_schema(TRAIN_FIELDS[name]).items()
                            if k != "type"})
    schema["minProperties"] = 1


class HparamsPatch(Strict):
    """Engine ranges (engine.spec.TRAIN_FIELDS); at least one field."""
    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_schema)
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None


def _tag(v: str) -> str:
    v = v.strip()
    if not v or len(v) > 40 or not v.isprintable():
        raise ValueError("a tag is 1 to 40 printable characters")
    return v


class NotesBody(Strict):
    """A run's notes (free text) and/or tags (short labels); each replaces what was there."""
    model_config = ConfigDict(extra="forbid", json_schema_extra=not_null)
    notes: str | None = Field(None, max_length=5000, description="free text, <= 5,000 chars")
    tags: list[Annotated[str, AfterValidator(_tag)]] | None = Field(
        None, max_length=20, description="<= 20 tags of 1-40 printable characters")

    @model_validator(mode="after")
    def _one(self):
        if self.notes is None and self.tags is None:
            raise ValueError("give notes, tags or both")
        if self.tags is not None and len({t.lower() for t in self.tags}) != len(self.tags):
            raise ValueError("tags: each tag once")
        return self


class ForkBody(Strict):
    """A new run from the parent's checkpoint at ``step`` with changed training settings."""
    model_config = ConfigDict(extra="forbid", json_schema_extra=not_null)
    step: int = Field(..., ge=0, le=10**9, description="a step from GET /api/runs/{id}/checkpoints")
    overrides: Overrides | None = Field(None, description="as for POST /api/runs (lr, epochs, "
                                                          "schedule, train_limit, ...); not the "
                                                          "model or the dataset")
    name: str | None = Field(None, max_length=MAX_NAME)


class Checkpoint(BaseModel):
    step: int
    epoch: int | None
    bytes: int
    test_accuracy: float | None
    test_loss: float | None
    best: bool = Field(description="the highest test accuracy among the kept ones")


class CheckpointList(BaseModel):
    checkpoints: list[Checkpoint]
    budget_bytes: int
    total_bytes: int


class PredictBody(Strict):
    image: Image = Field(..., description="rows of floats in 0..1, the dataset's H x W "
                                          "(28 x 28 for MNIST)")


class InspectBody(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=one_shape(
        ("image", ("pixels",)), ("pixels", ("image",))))
    image: int | None = Field(None, ge=0, description="a test-set image by index (a probe)")
    pixels: list[float] | None = Field(None, min_length=1, max_length=4096,
                                       description="a drawn image: H*W floats in 0..1, row "
                                                   "by row (784 for MNIST)")
    what: list[Literal["outputs", "weights", "saliency"]] = Field(
        ["outputs"], min_length=1, max_length=3, description="what to compute")
    cls: int | None = Field(None, ge=0, description="saliency of this class (default: the "
                                                    "predicted one)")


class GradcheckBody(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=one_shape(
        ("run_id", ("model",)), ("model", ("run_id",))))
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
    sweep_id: str | None = Field(None, description="a sweep's trial: its sweep (else null)")
    trial: int | None = Field(None, description="a sweep's trial: its number, from 1")
    params: dict[str, Any] | None = Field(None, description="a sweep's trial: its values, "
                                                            "by dotted path (train.lr)")
    parent_id: str | None = Field(None, description="a fork: the run it was forked from")
    fork_step: int | None = Field(None, description="a fork: the parent's step it started from")
    where: str | None = Field("local", description="local: the server's worker pool; dask: the "
                                                   "Dask cluster of serve --dask")
    notes: str | None = Field(None, description="the person's notes (POST .../notes)")
    tags: list[str] | None = Field(None, description="the person's tags (POST .../notes)")


class RunList(BaseModel):
    runs: list[RunOut]


# ------------------------------------------------------------------------ sweeps


class SweepExtend(Strict):
    """Add trials to the budget and/or narrow parameters (values: a subset; ranges: inside)."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    trials: int = Field(0, ge=0, le=10_000, description="trials to add to the budget")
    parameters: dict[str, dict[str, Any]] | None = Field(
        None, max_length=32, description="{PATH: {values} | {min, max}}: narrower than now")


SWEEP_SPEC_DOC = ("The sweep spec (server/API.md, Sweeps): {name?, base: {preset, overrides?} | "
                  "{model, train, dataset}, method: grid|random|tpe, parameters: {PATH: "
                  "{values: [...]} | {min, max, log?, int?}, when?: {PATH: value}}, objective?, "
                  "max_trials?, max_parallel?, seed?, early_stopping?}")


def sweep_spec_schema() -> dict:
    """The sweep spec for /docs. Only documentation: the body is checked by
    server/sweep/spec.py, which locates every error (a model here would answer with other
    locs)."""
    from .sweep.spec import EARLY_STOPPING, MAX_PARALLEL, MAX_TRIALS, METHODS, METRICS
    value = {"description": "a value of the field at PATH"}
    param = {"type": "object", "oneOf": [
        {"title": "values", "required": ["values"], "properties": {
            "values": {"type": "array", "minItems": 1, "maxItems": 1000, "items": value},
            "when": {"type": "object", "description": "{PATH: value}: only when another "
                                                      "parameter has that value"}}},
        {"title": "range", "required": ["min", "max"], "properties": {
            "min": {"type": "number"}, "max": {"type": "number"},
            "log": {"type": "boolean", "default": False},
            "int": {"type": "boolean", "default": False},
            "when": {"type": "object"}}}]}
    early = {"oneOf": [{"title": f"early_stopping {kind}", "type": "object", "required": ["type"],
                        "properties": {"type": {"const": kind}, **{
                            k: {"type": "integer", "default": r.default, "minimum": r.min,
                                "maximum": r.max} for k, r in rules.items()}}}
                       for kind, rules in EARLY_STOPPING.items()]}
    return {"type": "object", "required": ["base", "method", "parameters"],
            "additionalProperties": False, "description": SWEEP_SPEC_DOC,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "base": {"type": "object", "description": "{preset, overrides?} as for POST "
                                                          "/api/runs, or {model, train, dataset}"},
                "method": {"enum": list(METHODS)},
                "parameters": {"type": "object", "minProperties": 1, "maxProperties": 32,
                               "description": "PATH (train.lr, model.2.units, ...) -> values "
                                             "or a range", "additionalProperties": param},
                "objective": {"type": "object", "properties": {
                    "metric": {"enum": list(METRICS), "default": "test_accuracy"},
                    "direction": {"enum": ["maximize", "minimize"]}}},
                "max_trials": {"type": "integer", "minimum": 1, "maximum": MAX_TRIALS},
                "max_parallel": {"type": "integer", "minimum": 1, "maximum": MAX_PARALLEL,
                                 "default": 1},
                "seed": {"type": "integer", "minimum": 0, "maximum": 2 ** 32 - 1, "default": 0},
                "early_stopping": early},
            "examples": [{"name": "lr", "method": "grid",
                          "base": {"preset": "digits8-mlp", "overrides": {"epochs": 1}},
                          "parameters": {"train.lr": {"values": [0.01, 0.1]}},
                          "max_parallel": 2}]}


class TrialOut(BaseModel):
    number: int
    params: dict[str, Any]
    status: Literal["queued", "running", "completed", "pruned", "diverged", "failed", "stopped",
                    "interrupted"]
    run_id: str | None = Field(None, description="the trial's run (GET /api/runs/{id})")
    test_accuracy: float | None = None
    final_loss: float | None = None
    objective: float | None = Field(None, description="the objective at the last evaluation")
    train_seconds: float | None = None
    steps: int = 0
    evals: list[dict[str, Any]] = Field(default_factory=list, description="each evaluation: "
                                        "eval, step, epoch, test/train accuracy and loss")
    pruned_reason: dict[str, Any] | None = Field(None, description="rule, eval, step, value, "
                                                 "threshold, compared, message")
    reason: str | None = Field(None, description="why it diverged, failed, stopped or was "
                                                 "interrupted")
    where: str | None = Field(None, description="local or dask: where its run trains")
    requeue_of: int | None = Field(None, description="the interrupted trial this one re-runs")
    requeued_as: int | None = Field(None, description="the trial that re-runs this one")
    created_at: float | None = None
    finished_at: float | None = None


class SweepSummary(BaseModel):
    id: str
    name: str
    status: Literal["running", "stopping", "finished", "stopped", "interrupted", "failed"]
    error: str | None
    method: str | None
    objective: dict[str, Any] | None
    max_parallel: int | None
    budget: int = Field(description="trials the sweep may run (not counting re-runs)")
    remaining: int = Field(description="trials of the budget not started yet")
    created_at: float
    finished_at: float | None
    last_seq: int
    counts: dict[str, int] = Field(description="trials by status")
    best: TrialOut | None


class SweepOut(SweepSummary):
    spec: dict[str, Any] = Field(description="the spec as sent (as extended)")
    sweep: dict[str, Any] | None = Field(description="the spec normalised: defaults filled, "
                                                     "config = the validated base run config")
    trials: list[TrialOut]


class SweepList(BaseModel):
    sweeps: list[SweepSummary]


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


class LayerOut(BaseModel):
    index: int
    name: str = Field(description="'<index>.<type>', as in parameter names")
    type: str
    shape: list[int] = Field(description="the output's shape (no batch axis)")
    output: dict[str, Any] = Field(description="EncodedArray of that shape")


class LayerWeightsOut(BaseModel):
    index: int
    name: str
    type: str
    shape: list[int] = Field(description="the kernel as stored: (kh, kw, C, F) or (D, units)")
    kernels: dict[str, Any] = Field(description="EncodedArray (shown, kh, kw, C) for conv; "
                                                "(shown, H, W, C) for a dense layer on the "
                                                "image, else (shown, D)")
    shown: int
    total: int


class SaliencyOut(BaseModel):
    cls: int
    score: float
    gradient: dict[str, Any] = Field(description="EncodedArray (H, W, C): d score / d pixel")
    abs_max: float = Field(description="the largest |gradient| (the encoding's range is signed)")


class InspectOut(BaseModel):
    step: int | None = Field(description="the step of the weights used (null: imported)")
    image: dict[str, Any] = Field(description="EncodedArray (H, W, C): the input, 0..1")
    label: int | None = Field(description="the true class of a test image; null when drawn")
    probabilities: list[float]
    predicted: int
    layers: list[LayerOut] | None = None
    weights: list[LayerWeightsOut] | None = None
    saliency: SaliencyOut | None = None


class SnapshotItem(BaseModel):
    seq: int
    step: int
    epoch: int
    test_accuracy: float | None = Field(description="of the last eval at or before this step")
    test_loss: float | None


class SnapshotList(BaseModel):
    snapshots: list[SnapshotItem]


class GradRow(BaseModel):
    name: str
    shape: list[int]
    rel_error: float | None = Field(description="over the compared entries; null if none")
    checked: int = Field(description="entries compared")
    at_kinks: int = Field(description="entries whose +-h window crosses a ReLU/max-pool kink "
                                      "(not compared)")


class GradcheckOut(BaseModel):
    rows: list[GradRow]
    max_rel_error: float | None
    ok: bool = Field(description="false only when the status is disagrees")
    status: Literal["agrees", "inconclusive", "disagrees"]
    at_kinks: int
    checked: int
    threshold: float


class ErrorOut(BaseModel):
    """Every 4xx and 5xx: ``loc`` is the path to the bad value ([] for the body as a whole)."""
    detail: list[ErrorItem]


WHY = {
    400: "The Host header is not this server's name (or not host[:port]), or Content-Length "
         "is not a number",
    401: "Token missing or wrong (when the server has one)",
    403: "Cross-site Origin",
    404: "Unknown run (or sweep)",
    409: "Conflict with the run's (or sweep's) state",
    413: "Body over the size limit (1 MiB; 64 MiB for weights)",
    422: "Invalid body or parameter: `detail` lists `{loc, msg}` naming each field",
    503: "The data folder cannot be written (read-only, disk full)",
}


def errors(*codes: int, **why: str) -> dict:
    """OpenAPI ``responses`` for the given statuses, each with the one error shape;
    ``e409="..."`` says why this operation answers 409 (and so on)."""
    out = {}
    for code in sorted({*codes, *(int(k[1:]) for k in why)}):
        out[code] = {"model": ErrorOut, "description": why.get(f"e{code}", WHY[code])}
    return out


#: the guard's answers, possible on every operation (GuardMiddleware; 403 only for writes)
GUARD = errors(400, 401)
