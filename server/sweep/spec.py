"""Validate a sweep spec (plain JSON), the way ``engine.spec`` validates a run config.

A sweep is::

    {"name"?, "base": {"preset": NAME, "overrides"?: {...}} | {"model", "train", "dataset"},
     "method": "grid" | "random" | "tpe",
     "parameters": {PATH: {"values": [...]} | {"min", "max", "log"?, "int"?}, "when"?: {PATH: v}},
     "objective"?: {"metric": "test_accuracy", "direction": "maximize"},
     "max_trials"?, "max_parallel"?, "seed"?, "early_stopping"?: {"type": "median" | "asha", ...},
     "start_from_base"?: false}

``start_from_base`` (random and tpe): the first trial runs the base design's own values of the
searched parameters (Optuna's ``enqueue_trial``), so the search starts from a known point (a
floor for the best, unless early stopping cuts that trial); each such value must lie in the
space.

PATH is a dotted path into the run config (``train.lr``, ``train.init.std``, ``model.2.units``,
``dataset.train_limit``). Whether a PATH exists and a value fits is decided by the engine:
each value (each end of a range) is set into the validated base config and the result goes
through ``engine.spec.validate_config``, so the rules live in one place. Every problem is
reported at once as ``{"loc": [...], "msg": ...}`` in a ``SpecError``.

A *series* (``{"name", "series": [spec, ...]}``) is several sweeps run one after the other;
the ``student-report`` preset is one.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from typing import Any

from engine.presets import PRESETS, apply_overrides, get_preset
from engine.fields import Field
from engine import is_bsde, validate_run_config
from engine.bsde import BSDE_PRESETS
from engine.spec import MISSING, SpecError, _Checker, _fmt
from engine.spec import validate_config  # noqa: F401  (kept for callers of this module)

METHODS = ("grid", "random", "tpe")
#: objective metrics: what the final evaluation measures, with their natural direction
METRICS = {"test_accuracy": "maximize", "test_loss": "minimize",
           "train_accuracy": "maximize", "train_loss": "minimize",
           # a Deep BSDE base's: the validation loss, and u0's error against the reference
           "valid_loss": "minimize", "relative_error": "minimize"}
BSDE_METRICS = ("valid_loss", "relative_error")
MAX_GRID = 10_000          # combinations in a grid
MAX_TRIALS = 10_000        # trials in one sweep
MAX_PARAMETERS = 32
MAX_VALUES = 1_000         # entries in one "values" list
MAX_PARALLEL = 64
MAX_SERIES = 20
#: a grid's plain product is enumerated (to drop combinations a "when" makes identical)
#: only up to this size, so no spec can make us allocate a huge list
MAX_PRODUCT = 1_000_000

_TOP = ("name", "base", "method", "parameters", "objective", "max_trials", "max_parallel",
        "seed", "early_stopping", "start_from_base")
_PARAM_KEYS = ("values", "min", "max", "log", "int", "when")
EARLY_STOPPING = {
    # Optuna's MedianPruner: prune when the trial's best value so far is worse than the median
    # of the completed trials at the same evaluation.
    "median": {"n_startup_trials": Field("int", 5, 0, 1000),
               "n_warmup_steps": Field("int", 0, 0, 1000),
               "interval_steps": Field("int", 1, 1, 1000), "evals": Field("int", 4, 1, 100)},
    # Optuna's SuccessiveHalvingPruner (asynchronous successive halving)
    "asha": {"min_resource": Field("int", 1, 1, 1000),
             "reduction_factor": Field("int", 3, 2, 100),
             "min_early_stopping_rate": Field("int", 0, 0, 100), "evals": Field("int", 4, 1, 100)},
}


def canon(v: Any) -> str:
    """A value's identity for comparisons (``1`` and ``1.0`` differ, dict order does not)."""
    return json.dumps(v, sort_keys=True, allow_nan=False)


def parse_path(path: str) -> list:
    """``"model.2.units"`` -> ``["model", 2, "units"]`` (numeric segments become ints)."""
    return [int(s) if s.isdigit() else s for s in path.split(".")]


def set_path(config: dict, path: str, value: Any) -> dict:
    """A copy of ``config`` with ``value`` at ``path``. Raises ``KeyError`` with a reason when
    the path leads nowhere (an unknown section, a layer index past the end, a non-object)."""
    out = copy.deepcopy(config)
    parts = parse_path(path)
    if not path or any(p == "" for p in parts) or parts[0] not in ("model", "train", "dataset"):
        raise KeyError(f"{path!r} is not a path into the run config: it must start with "
                       f"model, train or dataset (like train.lr or model.2.units)")
    node: Any = out
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        here = ".".join(str(p) for p in parts[:i]) or "the config"
        if isinstance(node, list):
            if not isinstance(seg, int):
                raise KeyError(f"{here} is a list of layers: the next part of {path!r} must be "
                               f"a layer index, got {seg!r}")
            if seg >= len(node):
                raise KeyError(f"{here} has {len(node)} layers (indices 0 to {len(node) - 1}); "
                               f"there is no layer {seg}")
        elif isinstance(node, dict):
            if isinstance(seg, int):
                raise KeyError(f"{here} is an object: {seg} is not one of its fields")
            if not last and seg not in node:
                raise KeyError(f"{here} has no field {seg!r}")
        else:
            raise KeyError(f"{here} is {_fmt(node)}, not an object: {path!r} goes past it")
        if last:
            node[seg] = value
        else:
            nxt = node[seg]
            if isinstance(nxt, str) and seg in ("init", "schedule"):   # "he" -> {"type": "he"}
                nxt = node[seg] = {"type": nxt}
            node = nxt
    return out


def get_path(config: dict, path: str) -> Any:
    """The value at ``path`` in a validated config (``KeyError`` when there is none)."""
    node: Any = config
    for seg in parse_path(path):
        if isinstance(node, list) and isinstance(seg, int) and seg < len(node):
            node = node[seg]
        elif isinstance(node, dict) and seg in node:
            node = node[seg]
        else:
            raise KeyError(path)
    return node


def _in_space(q: dict, v: Any) -> bool:
    if "values" in q:
        return canon(v) in {canon(x) for x in q["values"]}
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return q["min"] <= v <= q["max"] and (not q["int"] or float(v).is_integer())


def _space_text(q: dict) -> str:
    if "values" in q:
        return "the values " + ", ".join(_fmt(x) for x in q["values"])
    return f"the range {q['min']:g}..{q['max']:g}"


def _base_point(chk: _Checker, config: dict, params: dict, order: list[str]) -> dict | None:
    """The base design's values of the parameters active at them (``start_from_base``)."""
    point: dict = {}
    for path in order:
        if path not in active(params, order, {**point, path: None}):
            continue
        try:
            v = get_path(config, path)
        except KeyError:
            chk.err(["start_from_base"], f"start_from_base: the base design has no value at "
                                         f"{path}")
            return None
        if not _in_space(params[path], v):
            chk.err(["start_from_base"], f"start_from_base: the base design's {path} = {_fmt(v)} "
                                         f"is outside {_space_text(params[path])}")
            return None
        point[path] = v
    return point


def _base_config(chk: _Checker, base: Any) -> dict | None:
    """The base run config, validated; its errors located under ``["base", ...]``."""
    if not isinstance(base, dict):
        chk.err(["base"], f"base must be an object: {{\"preset\": NAME, \"overrides\": {{...}}}} "
                          f"or a run config {{model, train, dataset}}, got {_fmt(base)}")
        return None
    if "preset" in base:
        for key in base:
            if key not in ("preset", "overrides"):
                chk.err(["base", key], f"base: unknown field {key!r} next to preset "
                                       f"(allowed: preset, overrides)")
        name = base["preset"]
        if not isinstance(name, str) or (name not in PRESETS and name not in BSDE_PRESETS):
            chk.err(["base", "preset"], f"base: preset must be one of "
                                        f"{', '.join([*PRESETS, *BSDE_PRESETS])}, got {_fmt(name)}")
            return None
        over = base.get("overrides", {})
        if not isinstance(over, dict):
            chk.err(["base", "overrides"], f"base: overrides must be an object, got {_fmt(over)}")
            return None
        cfg = get_preset(name)
        flat = {k: v for k, v in over.items() if "." not in k}
        try:
            cfg = apply_overrides(cfg, flat)
        except SpecError as e:          # a bsde preset's unknown override
            for err in e.errors:
                chk.err(["base", *err["loc"]], "base: " + err["msg"])
            return None
        where = {k: ["base", "overrides", k] for k in over}
        for key, value in over.items():
            if "." in key:
                try:
                    cfg = set_path(cfg, key, value)
                except KeyError as e:
                    chk.err(["base", "overrides", key], f"base overrides: {e.args[0]}")
                    return None
        try:
            cfg, _ = validate_run_config(cfg)
        except SpecError as e:
            for err in e.errors:
                chk.err(_override_loc(err["loc"], where), "base: " + err["msg"])
            return None
        return cfg
    try:
        cfg, _ = validate_run_config(base)
    except SpecError as e:
        for err in e.errors:
            chk.err(["base"] + list(err["loc"]), "base: " + err["msg"])
        return None
    return cfg


def _override_loc(loc: list, where: dict) -> list:
    """Locate an error in an overridden preset at the override that caused it."""
    for key, at in where.items():
        if "." in key:
            target = parse_path(key)
        elif key in ("train_limit", "test_limit", "path", "normalize"):
            target = ["dataset", key]
        elif key == "dataset":
            target = ["dataset", "name"]
        elif key == "name":
            target = ["name"]
        else:
            target = ["train", key]
        if list(loc[:len(target)]) == target:
            return at
    return ["base"] + list(loc)


def _check_value(chk: _Checker, config: dict, path: str, value: Any, loc: list) -> bool:
    """Set one value into the base config and let the engine judge it."""
    try:
        cfg = set_path(config, path, value)
    except KeyError as e:
        chk.err(["parameters", path], f"parameters: {e.args[0]}")
        return False
    try:
        validate_run_config(cfg)
    except SpecError as e:
        target = parse_path(path)
        for err in e.errors:
            if list(err["loc"]) == target and "unknown field" in err["msg"]:
                # the path names no field: one error for the parameter, not one per value
                chk.err(["parameters", path], f"parameters: {path}: {err['msg']}")
                return False
        for err in e.errors:
            chk.err(loc, f"parameters: {path} = {_fmt(value)}: {err['msg']}")
        return False
    return True


def _check_parameter(chk: _Checker, config: dict | None, path: Any, raw: Any,
                     method: str | None) -> dict | None:
    loc = ["parameters", path]
    if not isinstance(raw, dict):
        chk.err(loc, f"parameters: {path} must be an object: {{\"values\": [...]}} or "
                     f"{{\"min\", \"max\"}}, got {_fmt(raw)}")
        return None
    for key in raw:
        if key not in _PARAM_KEYS:
            chk.err(loc + [key], f"parameters: {path}: unknown field {key!r} "
                                 f"(allowed: {', '.join(_PARAM_KEYS)})")
    has_values, has_range = "values" in raw, "min" in raw or "max" in raw
    out: dict = {}
    if has_values and has_range:
        chk.err(loc, f"parameters: {path}: give either values or min/max, not both")
        return None
    if not has_values and not has_range:
        chk.err(loc, f"parameters: {path}: give a list of values or a range with min and max")
        return None
    if has_values:
        for key in ("log", "int"):
            if key in raw:
                chk.err(loc + [key], f"parameters: {path}: {key} applies to a min/max range, "
                                     f"not to a list of values")
        values = raw["values"]
        if not isinstance(values, list):
            chk.err(loc + ["values"], f"parameters: {path}: values must be a list, "
                                      f"got {_fmt(values)}")
            return None
        if not values:
            chk.err(loc + ["values"], f"parameters: {path}: values is empty; give at least one")
            return None
        if len(values) > MAX_VALUES:
            chk.err(loc + ["values"], f"parameters: {path}: {len(values):,} values; at most "
                                      f"{MAX_VALUES:,} are allowed")
            return None
        seen: dict[str, int] = {}
        for i, v in enumerate(values):
            try:
                key = canon(v)
            except (TypeError, ValueError):
                chk.err(loc + ["values", i], f"parameters: {path}: value {i + 1} is not plain JSON")
                continue
            if key in seen:
                chk.err(loc + ["values", i], f"parameters: {path}: value {_fmt(v)} is listed twice "
                                             f"(entries {seen[key] + 1} and {i + 1})")
            seen.setdefault(key, i)
            if config is not None and not _check_value(chk, config, path, v, loc + ["values", i]):
                if chk.errors[-1]["loc"] == ["parameters", path]:
                    return None     # the path itself is wrong: one error, not one per value
        out["values"] = list(values)
    else:
        n0 = len(chk.errors)
        log = chk.value(f"parameters: {path}", loc + ["log"], "log", Field("bool", False),
                        raw.get("log", MISSING))
        is_int = chk.value(f"parameters: {path}", loc + ["int"], "int", Field("bool", False),
                           raw.get("int", MISSING))
        ends = {}
        for key in ("min", "max"):
            v = raw.get(key, MISSING)
            if v is MISSING:
                chk.err(loc + [key], f"parameters: {path}: a range needs both min and max")
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                chk.err(loc + [key], f"parameters: {path}: {key} must be a finite number, "
                                     f"got {_fmt(v)}")
            elif is_int and not (isinstance(v, int) or float(v).is_integer()):
                chk.err(loc + [key], f"parameters: {path}: {key} must be a whole number for an "
                                     f"int range, got {_fmt(v)}")
            else:
                ends[key] = int(v) if is_int else v
        if len(chk.errors) > n0:
            return None
        lo, hi = ends["min"], ends["max"]
        if lo > hi:
            chk.err(loc + ["min"], f"parameters: {path}: min {lo:g} is greater than max {hi:g}")
            return None
        if log and lo <= 0:
            chk.err(loc + ["min"], f"parameters: {path}: a log range needs min > 0, got {lo:g}")
            return None
        if method == "grid" and not is_int:
            chk.err(loc, f"parameters: {path}: a grid needs a list of values (or an int range); "
                         f"a float range suits random or tpe")
            return None
        if config is not None:
            if not _check_value(chk, config, path, lo, loc + ["min"]):
                return None
            if hi != lo and not _check_value(chk, config, path, hi, loc + ["max"]):
                return None
        out.update(min=lo, max=hi, log=bool(log), int=bool(is_int))
    if "when" in raw:
        out["when"] = raw["when"]        # checked once every parameter is known
    return out


def _check_when(chk: _Checker, params: dict) -> list[str] | None:
    """Check the conditions; return the parameters in an order where each comes after those
    its ``when`` names (None on a cycle)."""
    for path, p in params.items():
        when = p.get("when")
        if when is None:
            continue
        loc = ["parameters", path, "when"]
        if not isinstance(when, dict) or not when:
            chk.err(loc, f"parameters: {path}: when must be an object like "
                         f"{{\"train.optimizer\": \"sgd\"}}, got {_fmt(when)}")
            p.pop("when")
            continue
        for other, v in when.items():
            if other == path:
                chk.err(loc + [other], f"parameters: {path}: when cannot name the parameter itself")
            elif other not in params:
                chk.err(loc + [other], f"parameters: {path}: when names {other}, which is not a "
                                       f"parameter of this sweep (parameters: {', '.join(params)})")
            elif "values" in params[other]:
                try:
                    ok = canon(v) in {canon(x) for x in params[other]["values"]}
                except (TypeError, ValueError):
                    ok = False
                if not ok:
                    chk.err(loc + [other], f"parameters: {path}: when {other} is {_fmt(v)}, but "
                                           f"that is not one of {other}'s values")
            else:
                q = params[other]
                number = isinstance(v, (int, float)) and not isinstance(v, bool)
                if not number or not q["min"] <= v <= q["max"]:
                    chk.err(loc + [other], f"parameters: {path}: when {other} is {_fmt(v)}, but "
                                           f"{other} ranges over {q['min']:g} to {q['max']:g}")
    order: list[str] = []
    pending = dict(params)
    while pending:
        ready = [k for k, p in pending.items()
                 if all(o in order or o not in params or o == k for o in p.get("when", {}))]
        if not ready:
            chk.err(["parameters", next(iter(pending)), "when"],
                    f"parameters: the when conditions of {', '.join(pending)} form a cycle")
            return None
        for k in ready:
            order.append(k)
            del pending[k]
    return order


def active(params: dict, order: list[str], values: dict) -> dict:
    """The parameters whose ``when`` holds, in ``order``, with their value from ``values``."""
    out: dict = {}
    for path in order:
        when = params[path].get("when", {})
        if all(o in out and canon(out[o]) == canon(v) for o, v in when.items()):
            if path in values:
                out[path] = values[path]
    return out


def grid_size_bound(params: dict) -> int:
    n = 1
    for p in params.values():
        n *= len(p["values"]) if "values" in p else p["max"] - p["min"] + 1
    return n


def grid_points(params: dict, order: list[str]) -> list[dict]:
    """Every combination, in the order the values are listed (the first parameter varies
    slowest); a parameter whose ``when`` fails is left out, and combinations that became
    identical are kept once."""
    names = list(params)
    axes = [p["values"] if "values" in p else list(range(p["min"], p["max"] + 1))
            for p in params.values()]
    seen, out = set(), []
    for combo in itertools.product(*axes):
        point = active(params, order, dict(zip(names, combo)))
        key = canon(point)
        if key not in seen:
            seen.add(key)
            out.append(point)
    return out


def validate_sweep(spec: Any) -> dict:
    """Validate a sweep spec; return it normalised, with ``config`` (the validated base run
    config), ``order`` (parameters in condition order) and, for a grid, ``grid`` (the points).
    Raises ``SpecError`` listing every problem."""
    if not isinstance(spec, dict):
        raise SpecError([{"loc": [], "msg": f"a sweep must be an object, got {_fmt(spec)}"}])
    chk = _Checker()
    for key in spec:
        if key not in _TOP:
            chk.err([key], f"unknown field {key!r} (allowed: {', '.join(_TOP)})")
    name = spec.get("name")
    if name is not None and not (isinstance(name, str) and 0 < len(name) <= 200
                                 and all(c.isprintable() for c in name)):
        chk.err(["name"], "name must be printable text of 1 to 200 characters")
        name = None
    if "base" not in spec:
        chk.err(["base"], "base is required: {\"preset\": NAME} or a run config")
        config = None
    else:
        config = _base_config(chk, spec["base"])
    method = spec.get("method", MISSING)
    if method is MISSING:
        chk.err(["method"], f"method is required: one of {', '.join(METHODS)}")
        method = None
    elif method not in METHODS:
        chk.err(["method"], f"method must be one of {', '.join(METHODS)}, got {_fmt(method)}")
        method = None
    raw_params = spec.get("parameters", MISSING)
    params: dict = {}
    if raw_params is MISSING:
        chk.err(["parameters"], "parameters is required: {PATH: {\"values\": [...]}, ...}")
    elif not isinstance(raw_params, dict) or not raw_params:
        chk.err(["parameters"], f"parameters must be an object with at least one parameter, "
                                f"got {_fmt(raw_params)}")
    elif len(raw_params) > MAX_PARAMETERS:
        chk.err(["parameters"], f"{len(raw_params)} parameters; at most {MAX_PARAMETERS} "
                                f"are allowed")
    else:
        for path, raw in raw_params.items():
            p = _check_parameter(chk, config, path, raw, method)
            if p is not None:
                params[path] = p
    order = _check_when(chk, params) if params and len(params) == len(raw_params) else None

    obj = spec.get("objective", {})
    objective = {"metric": "test_accuracy", "direction": "maximize"}
    if not isinstance(obj, dict):
        chk.err(["objective"], f"objective must be an object like {{\"metric\": \"test_accuracy\", "
                               f"\"direction\": \"maximize\"}}, got {_fmt(obj)}")
    else:
        for key in obj:
            if key not in ("metric", "direction"):
                chk.err(["objective", key], f"objective: unknown field {key!r} (allowed: metric, "
                                            f"direction)")
        metric = obj.get("metric", "test_accuracy")
        if metric not in METRICS:
            chk.err(["objective", "metric"], f"objective: metric must be one of "
                                             f"{', '.join(METRICS)}, got {_fmt(metric)}")
        else:
            objective["metric"] = metric
            objective["direction"] = METRICS[metric]
        direction = obj.get("direction", objective["direction"])
        if direction not in ("maximize", "minimize"):
            chk.err(["objective", "direction"], f"objective: direction must be maximize or "
                                                f"minimize, got {_fmt(direction)}")
        else:
            objective["direction"] = direction

    bsde = config is not None and is_bsde(config)
    if bsde and "metric" not in (obj if isinstance(obj, dict) else {}):
        objective = {"metric": "valid_loss", "direction": "minimize"}
    if bsde and objective["metric"] not in BSDE_METRICS:
        chk.err(["objective", "metric"], f"objective: a Deep BSDE base measures "
                                         f"{' or '.join(BSDE_METRICS)}, not {objective['metric']}")
    elif config is not None and not bsde and objective["metric"] in BSDE_METRICS:
        chk.err(["objective", "metric"], f"objective: {objective['metric']} is a Deep BSDE "
                                         f"metric; an image base measures test_accuracy, ...")
    if (objective["metric"].startswith("train_") and config is not None and not bsde
            and not config["train"]["eval_train_size"]):
        chk.err(["objective", "metric"], f"objective: {objective['metric']} is measured on "
                                         f"train.eval_train_size images, which the base sets to 0")
    nums = chk.fields("sweep", [], {k: spec[k] for k in ("max_trials", "max_parallel", "seed")
                                    if k in spec},
                      {"max_trials": Field("int", None, 1, MAX_TRIALS),
                       "max_parallel": Field("int", 1, 1, MAX_PARALLEL),
                       "seed": Field("int", 0, 0, 2 ** 32 - 1)})
    max_trials = nums.get("max_trials")
    if method in ("random", "tpe") and "max_trials" not in spec:
        chk.err(["max_trials"], f"max_trials is required for {method}: how many trials to run "
                                f"(at most {MAX_TRIALS:,})")

    early = spec.get("early_stopping")
    early_out = None
    if early is not None:
        loc = ["early_stopping"]
        kind = early.get("type", MISSING) if isinstance(early, dict) else MISSING
        if not isinstance(early, dict):
            chk.err(loc, f"early_stopping must be an object like {{\"type\": \"median\"}}, "
                         f"got {_fmt(early)}")
        elif not isinstance(kind, str) or kind not in EARLY_STOPPING:
            chk.err(loc + ["type"], f"early_stopping: type must be median or asha, got "
                                    f"{_fmt(None if kind is MISSING else kind)}")
        else:
            rules = {"type": Field("choice", kind, choices=(kind,)), **EARLY_STOPPING[kind]}
            early_out = chk.fields("early_stopping", loc, early, rules)
            if "train.eval_every" in params:
                chk.err(["parameters", "train.eval_every"],
                        "parameters: train.eval_every cannot be swept with early_stopping, "
                        "which sets it so each trial evaluates early_stopping.evals times")

    start = spec.get("start_from_base", False)
    start_point = None
    if not isinstance(start, bool):
        chk.err(["start_from_base"], f"start_from_base must be true or false, got {_fmt(start)}")
    elif start and method == "grid":
        chk.err(["start_from_base"], "start_from_base applies to random and tpe: a grid runs its "
                                     "points in the order they are listed")
    elif start and config is not None and order is not None:
        start_point = _base_point(chk, config, params, order)

    grid = None
    if method == "grid" and order is not None and not chk.errors:
        bound = grid_size_bound(params)
        if bound > MAX_PRODUCT:
            chk.err(["parameters"], f"this grid has {bound:,} combinations; at most "
                                    f"{MAX_GRID:,} are allowed")
        else:
            grid = grid_points(params, order)
            if len(grid) > MAX_GRID:
                chk.err(["parameters"], f"this grid has {len(grid):,} combinations; at most "
                                        f"{MAX_GRID:,} are allowed")
    if chk.errors:
        raise SpecError(chk.errors)
    if grid is not None:
        max_trials = min(max_trials or len(grid), len(grid))
        grid = grid[:max_trials]
    base = spec["base"]
    default = f"{base['preset']}-{method}" if "preset" in base else f"{method}-sweep"
    out = {"name": name or default,
           "base": copy.deepcopy(base), "method": method, "parameters": params,
           "objective": objective, "max_trials": max_trials,
           "max_parallel": nums["max_parallel"], "seed": nums["seed"],
           "early_stopping": early_out, "config": config, "order": order,
           "start_from_base": start_point is not None}
    if start_point is not None:
        out["start_point"] = start_point
    if grid is not None:
        out["grid"] = grid
    return out


def validate_series(spec: Any) -> dict:
    """A sweep, or a series ``{"name", "series": [sweep, ...], "title"?, "description"?}``.
    Returns ``{"name", "series": [normalised sweep, ...]}`` (one entry for a plain sweep) plus
    any ``title``/``description``/``reference`` given; errors of a series' sweep ``i`` are
    located under ``["series", i]``."""
    if isinstance(spec, dict) and "series" in spec:
        errors: list[dict] = []
        for key in spec:
            if key not in ("name", "series", "title", "description", "reference"):
                errors.append({"loc": [key], "msg": f"unknown field {key!r} next to series "
                                                    f"(allowed: name, series, title, description)"})
        parts = spec["series"]
        if not isinstance(parts, list) or not 0 < len(parts) <= MAX_SERIES:
            errors.append({"loc": ["series"], "msg": f"series must be a list of 1 to "
                                                     f"{MAX_SERIES} sweeps"})
            raise SpecError(errors)
        out = []
        for i, part in enumerate(parts):
            try:
                out.append(validate_sweep(part))
            except SpecError as e:
                errors += [{"loc": ["series", i] + list(err["loc"]), "msg": err["msg"]}
                           for err in e.errors]
        if errors:
            raise SpecError(errors)
        names = [s["name"] for s in out]
        if len(set(names)) != len(names):
            raise SpecError([{"loc": ["series"],
                              "msg": "the sweeps of a series need distinct names"}])
        res = {k: spec[k] for k in ("title", "description", "reference") if k in spec}
        res.update(name=str(spec.get("name") or "series"), series=out)
        return res
    one = validate_sweep(spec)
    return {"name": one["name"], "series": [one]}


def public(sweep: dict) -> dict:
    """A normalised sweep as JSON for events and summaries (without the grid's points)."""
    return {k: v for k, v in sweep.items() if k not in ("grid", "order", "start_point")}
