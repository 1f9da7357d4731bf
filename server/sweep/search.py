"""The search and the early stopping of one sweep: an Optuna study driven by ask and tell.

The study lives in memory (``InMemoryStorage``), never in our SQLite file; the trials it
proposes are ours to run. Samplers: ``random`` is ``RandomSampler(seed)``, ``tpe`` is
``TPESampler(seed)``; a ``grid`` is enumerated here in the order the values are listed
(``spec.grid_points``) and each point is handed to Optuna with ``enqueue_trial``, so the
study still knows every trial. Pruners: ``median`` is ``MedianPruner``, ``asha`` is
``SuccessiveHalvingPruner``; a trial reports its objective metric after each evaluation, with
the evaluation's index (1, 2, ...) as Optuna's step, so trials with different batch sizes
compare at the same fraction of their run.

What Optuna is told at the end: ``completed`` -> the objective value; ``pruned`` and
``diverged`` -> PRUNED (so TPE ranks a diverged region below every completed trial);
``failed`` and ``stopped`` -> FAIL (ignored by the samplers).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from .spec import active

optuna.logging.set_verbosity(optuna.logging.WARNING)
_PRIMITIVE = (type(None), bool, int, float, str)


@dataclass
class Proposal:
    number: int                 # 1-based, as people count trials
    params: dict                # {PATH: value} for the parameters active in this trial


def _encode(values: list) -> tuple[list, bool]:
    """Optuna's categorical choices must be None/bool/int/float/str: other values (a schedule
    object) go in as their JSON text."""
    if all(isinstance(v, _PRIMITIVE) for v in values):
        return list(values), False
    return [json.dumps(v, sort_keys=True) for v in values], True


class Search:
    """Proposes trials, judges their evaluations, records their outcome."""

    def __init__(self, sweep: dict):
        self.sweep = sweep
        self.params = sweep["parameters"]
        self.order = sweep["order"]
        self.metric = sweep["objective"]["metric"]
        self.direction = sweep["objective"]["direction"]
        seed = sweep["seed"]
        method = sweep["method"]
        if method == "tpe":
            # a third of the budget (at most Optuna's default 10) explores at random first
            startup = max(1, min(10, sweep["max_trials"] // 3))
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
        else:
            sampler = optuna.samplers.RandomSampler(seed=seed)
        es = sweep.get("early_stopping") or {}
        if es.get("type") == "median":
            pruner = optuna.pruners.MedianPruner(n_startup_trials=es["n_startup_trials"],
                                                 n_warmup_steps=es["n_warmup_steps"],
                                                 interval_steps=es["interval_steps"])
        elif es.get("type") == "asha":
            pruner = optuna.pruners.SuccessiveHalvingPruner(
                min_resource=es["min_resource"], reduction_factor=es["reduction_factor"],
                min_early_stopping_rate=es["min_early_stopping_rate"])
        else:
            pruner = optuna.pruners.NopPruner()
        self.early = es or None
        self.study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                         sampler=sampler, pruner=pruner,
                                         direction=self.direction,
                                         study_name=sweep["name"])
        self.grid = list(sweep.get("grid") or [])
        self.choices = {p: _encode(q["values"]) for p, q in self.params.items() if "values" in q}
        self.trials: dict[int, optuna.Trial] = {}
        self.asked = 0
        self.decided: set[int] = set()     # pruned: no more reports

    @property
    def remaining(self) -> int:
        return self.sweep["max_trials"] - self.asked

    def ask(self) -> Proposal | None:
        """The next trial's parameters, or None when the budget is spent."""
        if self.remaining <= 0:
            return None
        point = self.grid[self.asked] if self.sweep["method"] == "grid" else self.start()
        if point is not None:
            fixed = {}
            for p, v in point.items():
                enc, as_json = self.choices.get(p, (None, False))
                fixed[p] = json.dumps(v, sort_keys=True) if as_json else v
            self.study.enqueue_trial(fixed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = self.study.ask()
        values: dict = {}
        for path in self.order:
            if path not in active(self.params, self.order, {**values, path: None}):
                continue
            values[path] = self._suggest(trial, path)
        self.asked += 1
        number = trial.number + 1
        self.trials[number] = trial
        return Proposal(number, values)

    def start(self) -> dict | None:
        """The base design's point for the sweep's first trial (``start_from_base``)."""
        return self.sweep.get("start_point") if self.asked == 0 else None

    def _suggest(self, trial: optuna.Trial, path: str):
        q = self.params[path]
        if "values" in q:
            enc, as_json = self.choices[path]
            v = trial.suggest_categorical(path, enc)
            return json.loads(v) if as_json else v
        if q["int"]:
            return trial.suggest_int(path, q["min"], q["max"], log=q["log"])
        return trial.suggest_float(path, q["min"], q["max"], log=q["log"])

    def report(self, number: int, index: int, value: float | None) -> dict | None:
        """A trial's objective after its ``index``-th evaluation. Returns the reason when it
        should stop now (``{"rule", "eval", "value", "threshold", "compared", "message"}``)."""
        trial = self.trials.get(number)
        if trial is None or number in self.decided or self.early is None or value is None:
            return None
        if not math.isfinite(value):
            value = float("nan")
        trial.report(value, index)
        if not trial.should_prune():
            return None
        self.decided.add(number)
        return self._reason(trial, index, value)

    def _reason(self, trial: optuna.Trial, index: int, value: float) -> dict:
        m, better = self.metric, ("above" if self.direction == "minimize" else "below")
        rule = self.early["type"]
        frozen = self.study._storage.get_trial(trial._trial_id)   # noqa: SLF001
        if rule == "median":
            done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            vals = np.array([t.intermediate_values[index] for t in done
                             if index in t.intermediate_values], dtype=float)
            own = np.asarray(list(frozen.intermediate_values.values()), dtype=float)
            best = (float(np.nanmax(own) if self.direction == "maximize" else np.nanmin(own))
                    if np.isfinite(own).any() else float("nan"))
            threshold = float(np.nanpercentile(vals, 50)) if np.isfinite(vals).any() else None
            if threshold is None or not math.isfinite(best):
                msg = f"{m} was not a finite number at evaluation {index}"
            else:
                msg = (f"at evaluation {index}, its best {m} so far {best:.4g} was {better} the "
                       f"median {threshold:.4g} of the {len(vals)} completed trials there")
            return {"rule": "median", "eval": index, "value": best, "threshold": threshold,
                    "compared": int(len(vals)), "message": msg}
        # asha: the rung the trial failed is the last one it recorded a value for
        rung = 0
        while f"completed_rung_{rung + 1}" in frozen.system_attrs:
            rung += 1
        key = f"completed_rung_{rung}"
        competing = [t.system_attrs[key] for t in self.study.get_trials(deepcopy=False)
                     if key in t.system_attrs]
        threshold = None
        if key in frozen.system_attrs and competing:
            rf = self.early["reduction_factor"]
            k = max(0, len(competing) // rf - 1)
            ranked = sorted(competing, reverse=self.direction == "maximize")
            threshold = float(ranked[k])
        if threshold is None or not math.isfinite(value):
            msg = f"{m} was not a finite number at evaluation {index}"
        else:
            msg = (f"at evaluation {index} (rung {rung}), its {m} {value:.4g} was {better} the "
                   f"rung's cutoff {threshold:.4g} (the top 1/{self.early['reduction_factor']} "
                   f"of the {len(competing)} trials that reached it go on)")
        return {"rule": "asha", "eval": index, "rung": rung, "value": value,
                "threshold": threshold, "compared": len(competing), "message": msg}

    def tell(self, number: int, status: str, value: float | None) -> None:
        trial = self.trials.get(number)
        if trial is None:
            return
        if status == "completed" and value is not None and math.isfinite(value):
            self.study.tell(trial, value)
        elif status in ("pruned", "diverged"):
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
