"""The field record every table of the config is made of, and the initialisers' fields.

A ``Field`` says what a config field holds and what it defaults to; ``engine.spec`` checks
values against it, ``GET /api/spec`` serves it and the page builds its inputs from it, so
a default or a range is written once. Layer classes keep their own field tables
(``Layer.fields`` in engine/layers.py and engine/conv.py); the train, schedule and dataset
tables are in engine/spec.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: the default of a required field: leaving it out is an error
MISSING = _Missing()

#: kinds checked by ``engine.spec._Checker.value``; the others ("schedule", "probes",
#: "table", "dataset_name", "path") are checked by code of their own in engine/spec.py
INT, FLOAT, BOOL, CHOICE, INIT = "int", "float", "bool", "choice", "init"


@dataclass(frozen=True)
class Field:
    """One config field: its ``kind``, ``default`` (``MISSING``: required), and for numbers
    the inclusive range ``min``..``max``; ``choices`` for a ``"choice"``."""

    kind: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple = ()
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is MISSING


# ---------------------------------------------------------------- initialisers

#: each initialiser's own parameters (``init_array`` in engine/layer_base.py reads its
#: defaults here; GET /api/spec serves them for the page's inputs)
INIT_FIELDS: dict[str, dict[str, Field]] = {
    "normal": {"std": Field(FLOAT, 0.01, 0.0, 100.0, help="N(0, std^2)")},
    "uniform": {"limit": Field(FLOAT, 0.05, 0.0, 100.0, help="U(-limit, limit)")},
    "glorot": {},
    "xavier": {},
    "he": {},
}
#: what every initialiser also takes: biases drawn from N(0, bias_std^2) instead of zeros
INIT_COMMON_FIELDS: dict[str, Field] = {"bias_std": Field(FLOAT, 0.0, 0.0, 100.0)}
INIT_TYPES = tuple(INIT_FIELDS)
#: the initialiser of a layer with none of its own, when the run config names none either
DEFAULT_INIT_TYPE = "glorot"


def init_fields(kind: str) -> dict[str, Field]:
    """Every field an initialiser of type ``kind`` takes (``bias_std`` first)."""
    return {**INIT_COMMON_FIELDS, **INIT_FIELDS[kind]}


def init_default(kind: str, name: str) -> Any:
    return init_fields(kind)[name].default
