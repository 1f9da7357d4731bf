"""The engine's field tables (engine.spec) as JSON, so the page builds its inputs from them."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter

from engine import list_datasets, spec

router = APIRouter(prefix="/api/spec", tags=["spec"])


def field_json(rule: spec.Field) -> dict[str, Any]:
    """A ``Field`` of engine.spec as ``{"kind", "required", "default", "min"?, "max"?,
    "choices"?, "help"?}``: numbers have a range, a choice its values."""
    out: dict[str, Any] = {"kind": rule.kind}
    if rule.kind == spec.CHOICE:
        out["choices"] = list(rule.choices)
    out["required"] = rule.required
    out["default"] = None if rule.required else rule.default
    if rule.kind in (spec.INT, spec.FLOAT):
        out["min"], out["max"] = rule.min, rule.max
    if rule.help:
        out["help"] = rule.help
    return out


def table(fields: dict[str, spec.Field]) -> dict[str, dict]:
    return {name: field_json(rule) for name, rule in fields.items()}


@lru_cache(maxsize=1)
def spec_json() -> dict:
    return {
        "layers": {t: table(f) for t, f in spec.LAYER_FIELDS.items()},
        "layer_aliases": dict(spec.LAYER_ALIASES),
        "train": table(spec.TRAIN_FIELDS),
        "schedules": {t: table(f) for t, f in spec.SCHEDULE_FIELDS.items()},
        "dataset": {k: v for k, v in table(spec.DATASET_FIELDS).items() if k != "path"},
        "datasets": {d["name"]: {"shape": d["input_shape"], "num_classes": d["num_classes"],
                                 "class_names": d["class_names"], "train_size": d["train_size"],
                                 "test_size": d["test_size"]} for d in list_datasets()},
        "init_types": list(spec.INIT_TYPES),
        # each initialiser's parameters with their defaults (the page's init inputs)
        "inits": {t: table(spec.init_fields(t)) for t in spec.INIT_TYPES},
        "optimizers": list(spec.OPTIMIZER_TYPES),
        "losses": list(spec.LOSS_TYPES),
        "limits": {"max_layers": spec.MAX_LAYERS, "max_memory_bytes": spec.MAX_MEMORY_BYTES,
                   "max_total_steps": spec.MAX_TOTAL_STEPS},
    }


@router.get("", summary="The engine's layer, train and dataset fields: kind, default, range")
async def get_spec():
    return spec_json()
