"""Validate a run config (plain JSON) and infer shapes before anything is allocated.

A config has three parts::

    {"model": [{"type": "conv2d", "filters": 8, "kernel_size": 5, "padding": 2}, ...],
     "train": {"optimizer": "sgd", "lr": 0.01, "batch_size": 64, "epochs": 2, ...},
     "dataset": {"name": "mnist", "train_limit": 1000}}

``validate_config`` returns the config with every default filled in (so it
round-trips: validating its own output gives the same dict) and a summary with
each layer's output shape, parameter count and a memory estimate. Every problem
is reported as ``{"loc": [...], "msg": ...}``; messages count layers from 1, as a
person reads them, while ``loc`` holds the 0-based list index.
"""
from __future__ import annotations

import copy
import math
from typing import Any

from . import datasets
from .fields import (BOOL, CHOICE, DEFAULT_INIT_TYPE, FLOAT, INIT, INIT_FIELDS, INIT_TYPES, INT,
                     MISSING, Field, init_fields)
from .layers import LAYER_ALIASES, LAYER_TYPES, Layer, ShapeError, shape_str

MAX_LAYERS = 200
MAX_MEMORY_BYTES = 2 * 1024 ** 3
MAX_TOTAL_STEPS = 50_000_000
ITEMSIZE = {"float32": 4, "float64": 8}


class SpecError(ValueError):
    """A config broke one or more rules. ``errors`` is a list of ``{"loc", "msg"}``."""

    def __init__(self, errors: list[dict], summary: dict | None = None):
        self.errors = errors
        self.summary = summary  # what could be inferred (layers before the first error)
        super().__init__("; ".join(e["msg"] for e in errors))


#: each layer type's fields, as its class declares them (``Layer.fields``)
LAYER_FIELDS: dict[str, dict[str, Field]] = {t: cls.fields for t, cls in LAYER_TYPES.items()}

OPTIMIZER_TYPES = ("sgd", "adam", "rmsprop")
LOSS_TYPES = ("cross_entropy", "mse")
SCHEDULE_FIELDS: dict[str, dict[str, Field]] = {
    "constant": {},
    "step": {"gamma": Field(FLOAT, 0.95, 1e-6, 1.0), "every_epochs": Field(INT, 1, 1, 10_000)},
    "exponential": {"gamma": Field(FLOAT, 0.95, 1e-6, 1.0)},
    "cosine": {"min_lr": Field(FLOAT, 0.0, 0.0, 1e9)},
    "loss": {"table": Field("table", [])},
}

# The training hyperparameters, with their defaults and ranges.
TRAIN_FIELDS: dict[str, Field] = {
    "optimizer": Field(CHOICE, "sgd", choices=OPTIMIZER_TYPES),
    "lr": Field(FLOAT, 0.01, 0.0, 1e12),
    "momentum": Field(FLOAT, 0.0, 0.0, 0.9999),
    "nesterov": Field(BOOL, False),
    "beta1": Field(FLOAT, 0.9, 0.0, 0.9999),
    "beta2": Field(FLOAT, 0.999, 0.0, 0.999999),
    "rho": Field(FLOAT, 0.9, 0.0, 0.9999),
    "eps": Field(FLOAT, 1e-8, 1e-12, 1.0),
    "weight_decay": Field(FLOAT, 0.0, 0.0, 10.0),
    "clip_norm": Field(FLOAT, None, 1e-9, 1e9),
    "batch_size": Field(INT, 64, 1, 8192),
    "epochs": Field(INT, None, 1, 10_000),
    "iterations": Field(INT, None, 1, 10_000_000),
    "sampling": Field(CHOICE, "shuffle", choices=("shuffle", "replacement")),
    "drop_last": Field(BOOL, False),
    "loss": Field(CHOICE, "cross_entropy", choices=LOSS_TYPES),
    "init": Field(INIT, {"type": DEFAULT_INIT_TYPE}),
    "schedule": Field("schedule", {"type": "constant"}),
    "seed": Field(INT, 0, 0, 2 ** 32 - 1),
    "dtype": Field(CHOICE, "float32", choices=("float32", "float64")),
    "eval_every": Field(INT, 0, 0, 10_000_000),
    "eval_train_size": Field(INT, 2000, 0, 60_000),
    "snapshot_interval": Field(FLOAT, 0.5, 0.0, 3600.0),
    "probe_indices": Field("probes", [0, 1, 2, 3]),
}

DATASET_FIELDS: dict[str, Field] = {
    "name": Field("dataset_name", "mnist"),
    "train_limit": Field(INT, None, 1, 10_000_000),
    "test_limit": Field(INT, None, 1, 10_000_000),
    "path": Field("path", None),
    "normalize": Field(CHOICE, "none", choices=("none", "standard")),
}
# A dataset's shape, classes, sizes and mean/std come from its record in engine.datasets.


def _fmt(v: Any) -> str:
    """A user's value as they wrote it: JSON's null/true/false, else Python's repr (cut)."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


class _Checker:
    """Collects errors instead of stopping at the first, so a form can mark them all."""

    def __init__(self):
        self.errors: list[dict] = []

    def err(self, loc: list, msg: str) -> None:
        self.errors.append({"loc": loc, "msg": msg})

    def value(self, where: str, loc: list, field: str, rule: Field, raw: Any) -> Any:
        kind, default = rule.kind, rule.default
        if raw is MISSING:
            if default is MISSING:
                self.err(loc, f"{where}: {field} is required")
            # a default dict or list is the table's own: the config gets a copy
            return copy.deepcopy(default) if isinstance(default, (dict, list)) else default
        if raw is None and default is None:
            return None
        if kind == INT:
            lo, hi = rule.min, rule.max
            if isinstance(raw, bool) or not isinstance(raw, int):
                self.err(loc, f"{where}: {field} must be an integer between {lo} and {hi}, got {_fmt(raw)}")
                return default
            if not lo <= raw <= hi:
                self.err(loc, f"{where}: {field} must be between {lo} and {hi}, got {_fmt(raw)}")
                return default
            return raw
        if kind == FLOAT:
            lo, hi = rule.min, rule.max
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                self.err(loc, f"{where}: {field} must be a number, got {_fmt(raw)}")
                return default
            if not math.isfinite(raw):
                self.err(loc, f"{where}: {field} must be a finite number, got {_fmt(raw)}")
                return default
            if not lo <= raw <= hi:
                self.err(loc, f"{where}: {field} must be between {lo:g} and {hi:g}, got {_fmt(raw)}")
                return default
            return float(raw)
        if kind == BOOL:
            if not isinstance(raw, bool):
                self.err(loc, f"{where}: {field} must be true or false, got {_fmt(raw)}")
                return default
            return raw
        if kind == CHOICE:
            if not isinstance(raw, str) or raw not in rule.choices:
                self.err(loc, f"{where}: {field} must be one of {', '.join(rule.choices)}, got {_fmt(raw)}")
                return default
            return raw
        if kind == INIT:
            return self.init(where, loc, raw)
        raise AssertionError(kind)

    def fields(self, where: str, loc: list, obj: Any, rules: dict[str, Field], skip=()) -> dict:
        if not isinstance(obj, dict):
            self.err(loc, f"{where} must be an object, got {_fmt(obj)}")
            return {}
        out = {}
        for key in obj:
            if key not in rules and key not in skip:
                allowed = ", ".join(rules) or "none"
                self.err(loc + [key], f"{where}: unknown field {key!r} (allowed: {allowed})")
        for key, rule in rules.items():
            if rule.kind in ("schedule", "probes", "table", "dataset_name", "path"):
                continue
            out[key] = self.value(where, loc + [key], key, rule, obj.get(key, MISSING))
        return out

    def init(self, where: str, loc: list, raw: Any) -> dict | None:
        if isinstance(raw, str):
            raw = {"type": raw}
        if not isinstance(raw, dict):
            self.err(loc, f"{where}: init must be an object like {{\"type\": \"he\"}}, got {_fmt(raw)}")
            return None
        kind = raw.get("type", MISSING)
        if not isinstance(kind, str) or kind not in INIT_FIELDS:
            self.err(loc + ["type"], f"{where}: init type must be one of {', '.join(INIT_TYPES)}, got {_fmt(kind)}")
            return None
        rules = {"type": Field(CHOICE, kind, choices=(kind,)), **init_fields(kind)}
        out = self.fields(f"{where} init", loc, raw, rules)
        if not out.get("bias_std"):
            out.pop("bias_std", None)
        return out


def _prod(shape) -> int:
    return int(math.prod(shape))


def _size_hint(cls: type[Layer], cfg: dict, raw: dict, shape: tuple | None, itemsize: int) -> str:
    """For a size far out of range: what the layer's kernel alone would weigh.

    ``cfg`` holds the checked fields (defaults where a value was refused); the layer is
    sized with the raw values that are positive integers instead, without a bias.
    """
    field = cls.size_field
    v = raw.get(field) if field else None
    if shape is None or isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        return ""
    trial = {k: raw[k] if isinstance(raw.get(k), int) and raw[k] > 0 else cfg[k]
             for k in cls.fields if k != "init"}
    trial["use_bias"] = False
    try:
        n = cls.from_config(trial).count_params(shape)
    except (TypeError, ValueError, IndexError):   # a required field is missing or wrong
        return ""
    gib = n * itemsize / 1024 ** 3
    return f" (its weights alone would need about {gib:,.1f} GiB)" if gib >= 0.1 else ""


def validate_model(layers: Any, input_shape: tuple, num_classes: int, batch_size: int = 64,
                   dtype: str = "float32", optimizer: str = "sgd",
                   chk: _Checker | None = None) -> tuple[list[dict], dict]:
    """Check a layer list against an input shape; return (normalised layers, summary).

    Raises ``SpecError`` unless a checker is passed in to collect the errors.
    """
    own = chk is None
    chk = chk or _Checker()
    norm: list[dict] = []
    rows: list[dict] = []
    if layers is MISSING:
        chk.err(["model"], "model is required: a list of layers")
        layers = []
    elif not isinstance(layers, list):
        chk.err(["model"], f"model must be a list of layers, got {_fmt(layers)}")
        layers = []
    elif not layers:
        chk.err(["model"], "model must have at least one layer")
    elif len(layers) > MAX_LAYERS:
        chk.err(["model"], f"model has {len(layers)} layers; at most {MAX_LAYERS} are allowed")
        layers = []
    shape: tuple | None = tuple(input_shape)
    itemsize = ITEMSIZE.get(dtype, 4)
    slots = {"sgd": 2, "adam": 3, "rmsprop": 3}.get(optimizer, 3)  # grad + optimizer state
    param_total = 0
    act_elems = _prod(input_shape)
    work_elems = 0
    for i, raw in enumerate(layers):
        loc = ["model", i]
        if not isinstance(raw, dict):
            chk.err(loc, f"layer {i + 1}: must be an object with a \"type\", got {_fmt(raw)}")
            shape = None
            continue
        kind = raw.get("type", MISSING)
        if kind is MISSING:
            chk.err(loc + ["type"], f"layer {i + 1}: type is required (one of {', '.join(LAYER_FIELDS)})")
            shape = None
            continue
        # a type that is not text (an object, a list) is unknown too, never a dict key
        kind = LAYER_ALIASES.get(kind, kind) if isinstance(kind, str) else None
        if kind not in LAYER_TYPES:
            chk.err(loc + ["type"], f"layer {i + 1}: unknown type {_fmt(raw.get('type'))} "
                                    f"(one of {', '.join(LAYER_TYPES)})")
            shape = None
            continue
        cls = LAYER_TYPES[kind]
        where = f"layer {i + 1} ({kind})"
        n_before = len(chk.errors)
        cfg = {"type": kind, **chk.fields(where, loc, raw, cls.fields, skip=("type",))}
        if len(chk.errors) > n_before:
            hint = _size_hint(cls, cfg, raw, shape, itemsize)
            if hint:
                chk.errors[-1]["msg"] += hint
            norm.append(cfg)
            shape = None
            continue
        if cfg.get("init") is None:
            cfg.pop("init", None)
        layer = cls.from_config(cfg)
        norm.append(layer.get_config())    # every default filled in (a pool's stride)
        if shape is None:
            continue
        out, params, work = _infer(layer, shape, where, loc, chk)
        if out is None:
            shape = None
            continue
        param_total += params
        act_elems += _prod(out)
        work_elems = max(work_elems, work)
        rows.append({"index": i, "type": kind, "output_shape": list(out), "params": params})
        shape = out
    if shape is not None and layers and len(rows) == len(layers):
        if shape != (num_classes,):
            chk.err(["model", len(layers) - 1],
                    f"the model's output shape is {shape_str(shape)}, but the dataset has "
                    f"{num_classes} classes: end with a dense layer of {num_classes} units"
                    + (" after a flatten layer" if len(shape) == 3 else ""))
    # Memory: parameters with their grads and optimizer slots, plus activations and
    # their gradients for one batch (x3 for caches), plus the largest im2col matrix.
    memory = itemsize * (param_total * slots + batch_size * (3 * act_elems + 2 * work_elems))
    summary = {"layers": rows, "params": param_total, "memory_bytes": int(memory),
               "input_shape": list(input_shape), "output_shape": list(shape) if shape else None}
    if memory > MAX_MEMORY_BYTES and not any(e["loc"][:1] == ["model"] for e in chk.errors):
        chk.err(["model"], f"this model would need about {memory / 1024 ** 3:.1f} GiB "
                           f"({param_total:,} parameters, batch {batch_size}); "
                           f"the limit is {MAX_MEMORY_BYTES / 1024 ** 3:.0f} GiB")
    if own and chk.errors:
        raise SpecError(chk.errors, summary)
    chk.summary = summary
    return norm, summary


def _infer(layer: Layer, shape: tuple, where: str, loc: list, chk: _Checker):
    """Output shape, parameter count and im2col working size of one layer, as the layer
    answers them; ``(None, 0, 0)`` with the error recorded when it cannot take ``shape``."""
    try:
        out = tuple(layer.compute_output_shape(shape))
    except ShapeError as e:
        chk.err(loc + ([e.field] if e.field else []), f"{where}: {e}")
        return None, 0, 0
    return out, layer.count_params(shape), layer.work_size(shape)


def _check_train(chk: _Checker, raw: Any) -> dict:
    where = "train"
    tr = chk.fields(where, ["train"], raw if raw is not None else {}, TRAIN_FIELDS)
    if not isinstance(raw, dict):
        raw = {}
    # schedule
    sraw = raw.get("schedule", {"type": "constant"})
    if isinstance(sraw, str):
        sraw = {"type": sraw}
    stype = sraw.get("type", "constant") if isinstance(sraw, dict) else None
    if not isinstance(stype, str) or stype not in SCHEDULE_FIELDS:   # text before a dict lookup
        chk.err(["train", "schedule"], f"train: schedule type must be one of "
                                       f"{', '.join(SCHEDULE_FIELDS)}, got {_fmt(sraw)}")
        tr["schedule"] = {"type": "constant"}
    else:
        kind = sraw.get("type", "constant")
        rules = {"type": Field(CHOICE, kind, choices=(kind,)), **SCHEDULE_FIELDS[kind]}
        sched = chk.fields("train schedule", ["train", "schedule"], sraw,
                           rules)
        sched["type"] = kind
        if kind == "loss":
            table = sraw.get("table", [])
            ok = (isinstance(table, list) and 0 < len(table) <= 100 and all(
                isinstance(r, (list, tuple)) and len(r) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                        and math.isfinite(v) and v > 0 for v in r) for r in table))
            if not ok:
                chk.err(["train", "schedule", "table"],
                        "train schedule: table must be a list of 1 to 100 [loss threshold, "
                        "learning rate] pairs of positive numbers")
                table = []
            sched["table"] = [[float(a), float(b)] for a, b in table]
        tr["schedule"] = sched
    # probes
    probes = raw.get("probe_indices", [0, 1, 2, 3])
    if not (isinstance(probes, list) and len(probes) <= 16 and all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p < 10_000_000 for p in probes)):
        chk.err(["train", "probe_indices"], "train: probe_indices must be a list of at most 16 "
                                            "test-image indices (non-negative integers)")
        probes = [0, 1, 2, 3]
    tr["probe_indices"] = list(probes)
    if tr.get("lr") is not None and tr["lr"] <= 0 and "lr" in raw:
        chk.err(["train", "lr"], f"train: lr must be greater than 0, got {_fmt(raw['lr'])}")
    if tr.get("epochs") is None and tr.get("iterations") is None:
        tr["epochs"] = 1
    if tr.get("epochs") is not None and tr.get("iterations") is not None:
        chk.err(["train", "iterations"], "train: give epochs or iterations, not both")
    if tr.get("nesterov") and not tr.get("momentum"):
        chk.err(["train", "nesterov"], "train: nesterov needs a momentum above 0")
    return tr


def _check_dataset(chk: _Checker, raw: Any) -> dict:
    ds = chk.fields("dataset", ["dataset"], raw if raw is not None else {}, DATASET_FIELDS)
    raw = raw if isinstance(raw, dict) else {}
    name = raw.get("name", "mnist")
    names = datasets.dataset_names()
    if not isinstance(name, str) or name not in names:     # a list or dict name is unhashable
        chk.err(["dataset", "name"], f"dataset: name must be one of "
                                     f"{', '.join(names)}, got {_fmt(name)}")
        name = "mnist"
    ds["name"] = name
    path = raw.get("path")
    if path is not None and (not isinstance(path, str) or not path or "\x00" in path
                             or len(path) > 4096):
        chk.err(["dataset", "path"], "dataset: path must be a folder path (text without NUL "
                                     "bytes, at most 4096 characters)")
        path = None
    ds["path"] = path
    return ds


def validate_config(cfg: Any) -> tuple[dict, dict]:
    """Validate a whole run config. Returns ``(normalised config, summary)``.

    Raises ``SpecError`` listing every problem found.
    """
    chk = _Checker()
    if not isinstance(cfg, dict):
        raise SpecError([{"loc": [], "msg": f"config must be an object, got {_fmt(cfg)}"}])
    for key in cfg:
        if key not in ("model", "train", "dataset", "name"):
            chk.err([key], f"unknown field {key!r} (allowed: name, model, train, dataset)")
    name = cfg.get("name")
    if name is not None and not (isinstance(name, str) and len(name) <= 200
                                 and all(c.isprintable() for c in name)):
        chk.err(["name"], "name must be printable text of at most 200 characters")
    train = _check_train(chk, cfg.get("train"))
    dataset = _check_dataset(chk, cfg.get("dataset"))
    info = datasets.dataset_info(dataset["name"])
    model, summary = validate_model(cfg.get("model", MISSING) if "model" in cfg else MISSING,
                                    info.input_shape, info.num_classes,
                                    train.get("batch_size") or 64,
                                    train.get("dtype") or "float32",
                                    train.get("optimizer") or "sgd", chk)
    if chk.errors:
        raise SpecError(chk.errors, summary)
    out = {"model": model, "train": train, "dataset": dataset}
    if name is not None:
        out["name"] = name
    n = min(dataset["train_limit"] or info.train_size, info.train_size)
    summary["total_steps"] = total_steps(train, n)
    if summary["total_steps"] > MAX_TOTAL_STEPS:
        raise SpecError([{"loc": ["train", "epochs"], "msg":
                          f"train: this run would take {summary['total_steps']:,} steps; "
                          f"at most {MAX_TOTAL_STEPS:,} are allowed"}], summary)
    return out, summary


def steps_per_epoch(train: dict, n: int) -> int:
    b = train["batch_size"]
    if train.get("drop_last"):
        return max(1, n // b)
    return max(1, -(-n // b))


def total_steps(train: dict, n: int) -> int:
    if train.get("iterations"):
        return int(train["iterations"])
    return int(train["epochs"]) * steps_per_epoch(train, n)
