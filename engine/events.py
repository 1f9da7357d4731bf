"""The events a training run emits: the only way the engine reports.

Each event is a dataclass with a ``type``; ``to_dict()`` gives plain data with
NumPy arrays left as arrays, and ``to_json_dict()`` makes it JSON-safe: arrays
become compact uint8 payloads (``encode_array``) and non-finite floats become
``None`` (JSON has no NaN). The server stores and forwards these dicts, adding ``seq``,
``run_id`` and ``ts`` (server/API.md).
"""
from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np


@dataclass
class Event:
    type: ClassVar[str] = "event"
    #: fields left out of ``to_dict`` while they are None (a bsde run's additions)
    omit_if_none: ClassVar[tuple] = ()

    def to_dict(self) -> dict:
        d = {"type": self.type}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None or f.name not in self.omit_if_none:
                d[f.name] = v
        return d

    def to_json_dict(self) -> dict:
        return jsonable(self.to_dict())


@dataclass
class RunStarted(Event):
    """Before the first step: the normalised config, the layer summary and the plan."""
    type: ClassVar[str] = "run_started"
    config: dict
    summary: dict
    total_steps: int
    steps_per_epoch: int
    train_size: int
    test_size: int
    class_names: list
    start_step: int = 0          # a fork's first step is start_step + 1 (its parent's step K)


@dataclass
class Progress(Event):
    """After every step. ``loss``/``accuracy`` are of that batch; ``images_per_sec``
    is a moving average over training steps only (evaluation excluded)."""
    type: ClassVar[str] = "progress"
    step: int
    epoch: int
    loss: float
    accuracy: float
    lr: float
    images_per_sec: float
    step_ms: float
    elapsed: float
    u0: float | None = None       # a bsde run's u0 after the step (absent for image runs)
    omit_if_none: ClassVar[tuple] = ("u0",)


@dataclass
class Eval(Event):
    """A full evaluation: a fixed train subset and the test set (``train_*`` are None
    when ``eval_train_size`` is 0)."""
    type: ClassVar[str] = "eval"
    step: int
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    confusion: list               # [true][predicted] counts, num_classes x num_classes
    misclassified: list           # [{"index", "label", "predicted"}], the first 32
    eval_seconds: float


@dataclass
class Snapshot(Event):
    """What the first weighted layer looks like now.

    ``kernels``: ``(F, kh, kw, C)`` for Conv2D; for Dense, each unit's weights in
    the input's image shape ``(units, H, W, C)``, or ``(units, D)`` if flat.
    ``feature_maps``: ``(P, OH, OW, F)`` (conv) or ``(P, units)`` (dense) for the
    probe test images. ``norms``: per parameter tensor, weight and gradient L2 norms.
    """
    type: ClassVar[str] = "snapshot"
    step: int
    epoch: int
    layer: int
    kernels: Any
    feature_maps: Any
    probe_indices: list
    probe_labels: list
    norms: list


@dataclass
class BsdeEval(Event):
    """A bsde run on its fixed validation paths: the loss, u0, the relative error against the
    equation's reference value (None without one) and ``z0_loss``, the lowest loss a network
    whose z stays zero gets on the same paths (below it, z has been learned)."""
    type: ClassVar[str] = "bsde_eval"
    step: int
    valid_loss: float
    u0: float
    reference: float | None
    relative_error: float | None
    z0_loss: float
    eval_seconds: float


@dataclass
class BsdeSnapshot(Event):
    """A bsde run's picture: ``times`` (N + 1,), ``z_mean_abs`` (N,) the mean |z_i| over the
    validation paths at each time step, ``paths`` (k, N + 1) the network's u(t_i, X_i) on k
    validation paths, ``exact_paths`` the same from the closed form (None without one)."""
    type: ClassVar[str] = "bsde_snapshot"
    step: int
    times: list
    z_mean_abs: list
    paths: list
    exact_paths: list | None


@dataclass
class HparamsChanged(Event):
    type: ClassVar[str] = "hparams_changed"
    step: int
    changes: dict                 # {"lr": new, ...}
    previous: dict


@dataclass
class Paused(Event):
    type: ClassVar[str] = "paused"
    step: int


@dataclass
class Resumed(Event):
    type: ClassVar[str] = "resumed"
    step: int


@dataclass
class TempoChanged(Event):
    """From ``step`` on, at most ``steps_per_second`` steps per second (null: full speed)."""
    type: ClassVar[str] = "tempo_changed"
    step: int
    steps_per_second: float | None


@dataclass
class Continued(Event):
    """The run continues from its checkpoint at ``step`` (after a stop, a crash or a restart):
    the steps after ``step`` that an earlier attempt may have reported are void, and the
    steps that follow are exactly those an uninterrupted run would have taken."""
    type: ClassVar[str] = "continued"
    step: int
    epoch: int
    total_steps: int


@dataclass
class Diverged(Event):
    """The run diverged at ``step``; that step's update was not applied.

    Either the loss or a gradient became NaN or infinite, or the loss exploded while
    staying finite (above ``Trainer.EXPLODED_FACTOR`` times the first step's loss and
    above ``Trainer.EXPLODED_MIN``).
    ``reason`` says which and the value, ``where`` what overflowed (the loss, the model's
    output, a named gradient), ``suggestion`` what to try (usually a lower ``lr``).
    """
    type: ClassVar[str] = "diverged"
    step: int
    epoch: int
    reason: str
    where: str
    suggestion: str
    lr: float


@dataclass
class RunFinished(Event):
    """The last event. ``status``: completed, stopped or diverged."""
    type: ClassVar[str] = "run_finished"
    status: str
    step: int
    epoch: int
    test_loss: float | None
    test_accuracy: float | None
    train_seconds: float
    images_per_second: float
    images_seen: int
    wall_seconds: float
    result: dict | None = None    # a bsde run's: u0, reference, relative_error, valid_loss, z0_loss
    omit_if_none: ClassVar[tuple] = ("result",)


EVENT_TYPES = {cls.type: cls for cls in (RunStarted, Progress, Eval, Snapshot, HparamsChanged,
                                        Paused, Resumed, TempoChanged, Continued, Diverged,
                                        RunFinished, BsdeEval, BsdeSnapshot)}


def encode_array(a: np.ndarray) -> dict:
    """Quantise an array to uint8 over its own range: ``value ~ min + q * (max - min) / 255``.

    A 16x5x5 kernel grid is 400 bytes instead of a JSON list of floats.
    """
    a = np.asarray(a, dtype=np.float64)
    finite = a[np.isfinite(a)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 0.0
    span = hi - lo
    q = np.zeros(a.shape, np.uint8) if span == 0 else np.clip(
        np.round((np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo) - lo) * (255.0 / span)), 0, 255
    ).astype(np.uint8)
    return {"__array__": "uint8", "shape": list(a.shape), "min": lo, "max": hi,
            "b64": base64.b64encode(q.tobytes()).decode("ascii")}


def decode_array(d: dict) -> np.ndarray:
    """Inverse of ``encode_array`` (up to quantisation), as float32."""
    q = np.frombuffer(base64.b64decode(d["b64"]), dtype=np.uint8).reshape(d["shape"])
    return (d["min"] + q.astype(np.float32) * ((d["max"] - d["min"]) / 255.0)).astype(np.float32)


def jsonable(obj: Any) -> Any:
    """Plain JSON data: arrays encoded, NumPy scalars unwrapped, NaN/inf as None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return encode_array(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


__all__ = ["Event", "EVENT_TYPES", "encode_array", "decode_array", "jsonable", "asdict", "field",
           *[c.__name__ for c in EVENT_TYPES.values()]]
