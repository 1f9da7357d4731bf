"""A sweep's state: its trials, what happens to them, and the events that say so.

``Sweep`` does no I/O and starts no process: an executor (``runner.LocalRunner`` today; the
server's worker pool or Dask later) asks it for the next trial, feeds it each trial's engine
events and exit, and does what it answers (stop a trial that is pruned). Everything it learns
goes out as plain JSON dicts through ``emit``:

* ``sweep_started`` ``{"sweep"}``, ``sweep_finished`` ``{"status", "wall_seconds"}``
* ``trial_started`` ``{"number", "params"}``
* ``trial_eval`` ``{"number", "eval", "step", "epoch", "test_accuracy", "test_loss",
  "train_accuracy", "train_loss"}`` after each of a trial's evaluations
* ``trial_pruning`` ``{"number", "reason"}`` when a trial is told to stop early
* ``trial_finished`` ``{"number", "status", ...the trial's row}``

Every event also carries ``"sweep": name``. A trial's status is one of queued, running,
completed, pruned, diverged, failed, stopped.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from engine import validate_run_config
from engine.spec import SpecError

from .search import Search
from .spec import public, set_path

STATUSES = ("queued", "running", "completed", "pruned", "diverged", "failed", "stopped")
FINAL = ("completed", "pruned", "diverged", "failed", "stopped")
_EVAL_KEYS = ("test_accuracy", "test_loss", "train_accuracy", "train_loss")


@dataclass
class Trial:
    number: int
    params: dict
    config: dict | None = None
    status: str = "queued"
    test_accuracy: float | None = None
    final_loss: float | None = None       # the test loss at the end of the trial
    objective: float | None = None        # the objective metric at the last evaluation
    train_seconds: float | None = None
    steps: int = 0
    evals: list = field(default_factory=list)
    pruned_reason: dict | None = None
    reason: str | None = None             # why it diverged, failed or stopped
    started: float | None = None
    finished: float | None = None
    stop_requested: str | None = None     # "prune" | "stop"

    def row(self) -> dict:
        return {"number": self.number, "params": self.params, "status": self.status,
                "test_accuracy": self.test_accuracy, "final_loss": self.final_loss,
                "objective": self.objective, "train_seconds": self.train_seconds,
                "steps": self.steps, "pruned_reason": self.pruned_reason, "reason": self.reason}


def bsde_row(t, event: dict) -> dict:
    """A Deep BSDE run's ``bsde_eval`` as a trial's eval row: its validation loss is also its
    ``test_loss``; ``valid_loss`` and ``relative_error`` are its objectives."""
    return {"eval": len(t.evals) + 1, "step": event["step"], "epoch": 1, "test_accuracy": None,
            "test_loss": event.get("valid_loss"), "train_accuracy": None, "train_loss": None,
            "valid_loss": event.get("valid_loss"), "relative_error": event.get("relative_error")}


def trial_config(sweep: dict, params: dict, number: int = 0) -> dict:
    """The base config with the trial's values set, validated. With early stopping the trial
    evaluates ``early_stopping.evals`` times (``train.eval_every`` set to match)."""
    cfg = sweep["config"]
    for path, value in params.items():
        cfg = set_path(cfg, path, value)
    cfg["name"] = f"{sweep['name'][:180]} #{number}"
    cfg, summary = validate_run_config(cfg)
    es = sweep.get("early_stopping")
    if es:
        cfg["train"]["eval_every"] = max(1, -(-summary["total_steps"] // es["evals"]))
        cfg, _ = validate_run_config(cfg)
    return cfg


class Sweep:
    """One sweep's trials and search. Not thread-safe: one executor thread drives it."""

    def __init__(self, sweep: dict, emit: Callable[[dict], None] | None = None):
        self.spec = sweep
        self.name = sweep["name"]
        self.metric = sweep["objective"]["metric"]
        self.maximize = sweep["objective"]["direction"] == "maximize"
        self._emit = emit or (lambda e: None)
        self.search = Search(sweep)
        self.trials: dict[int, Trial] = {}
        self.stopping = False
        self.t0 = time.perf_counter()
        self.status = "running"
        self.emit({"type": "sweep_started", "sweep": public(sweep)})

    def emit(self, event: dict) -> None:
        self._emit({**event, "sweep": self.name} if event["type"] != "sweep_started" else event)

    # ------------------------------------------------------------ executor -> sweep

    def next_trial(self) -> Trial | None:
        """The next trial to run (status ``queued``), or None when there is none. A trial
        whose combination the engine refuses ends ``failed`` at once; the next one is tried."""
        while not self.stopping:
            prop = self.search.ask()
            if prop is None:
                return None
            t = Trial(prop.number, prop.params)
            self.trials[t.number] = t
            try:
                t.config = trial_config(self.spec, prop.params, t.number)
            except SpecError as e:
                self._finish(t, "failed", reason=f"the engine refused this combination: {e}")
                continue
            return t
        return None

    def started(self, number: int) -> None:
        t = self.trials[number]
        t.status, t.started = "running", time.perf_counter()
        self.emit({"type": "trial_started", "number": number, "params": t.params})

    def on_event(self, number: int, event: dict) -> str | None:
        """An engine event of a running trial (its ``to_json_dict()``). Returns ``"stop"``
        when the trial must be stopped now (pruned)."""
        t = self.trials.get(number)
        if t is None or t.status != "running":
            return None
        kind = event.get("type")
        if kind == "progress":
            t.steps = event["step"]
        elif kind == "eval" or (kind == "bsde_eval" and event["step"] > 0):
            row = ({"eval": len(t.evals) + 1, "step": event["step"], "epoch": event["epoch"],
                    **{k: event.get(k) for k in _EVAL_KEYS}} if kind == "eval" else bsde_row(t, event))
            t.evals.append(row)
            t.objective = row[self.metric]
            self.emit({"type": "trial_eval", "number": number, **row})
            if t.stop_requested is None:
                reason = self.search.report(number, row["eval"], row[self.metric])
                if reason is not None:
                    reason.update(step=row["step"], epoch=row["epoch"], metric=self.metric)
                    t.pruned_reason, t.stop_requested = reason, "prune"
                    self.emit({"type": "trial_pruning", "number": number, "reason": reason})
                    return "stop"
        elif kind == "diverged":
            t.reason = f"{event['reason']}: {event['where']}; {event['suggestion']}"
        elif kind == "run_finished":
            t.test_accuracy, t.final_loss = event.get("test_accuracy"), event.get("test_loss")
            t.train_seconds, t.steps = event.get("train_seconds"), event.get("step", t.steps)
            status = event["status"]
            if status == "stopped":
                status = "pruned" if t.stop_requested == "prune" else "stopped"
                if status == "stopped" and not t.reason:
                    t.reason = "the sweep was stopped"
            self._finish(t, status)
        return None

    def ended(self, number: int, error: str | None = None) -> None:
        """The trial's process is gone. Without a ``run_finished`` before, it failed."""
        t = self.trials.get(number)
        if t is None or t.status in FINAL:
            return
        if t.stop_requested == "stop":        # asked to stop; how it left does not matter
            self._finish(t, "stopped", reason="the sweep was stopped")
        else:
            self._finish(t, "failed", reason=error or "the trial ended without finishing")

    def stop(self) -> list[int]:
        """Stop the sweep: no new trials; returns the running trials the executor must stop."""
        self.stopping = True
        self.status = "stopped"
        out = []
        for t in self.trials.values():
            if t.status == "running" and t.stop_requested is None:
                t.stop_requested = "stop"
                out.append(t.number)
        return out

    def _finish(self, t: Trial, status: str, reason: str | None = None) -> None:
        t.status, t.finished = status, time.perf_counter()
        if reason:
            t.reason = reason
        if status == "completed" and t.evals:
            t.objective = t.evals[-1][self.metric]
        self.search.tell(t.number, status, t.objective if status == "completed" else None)
        self.emit({"type": "trial_finished", **t.row()})

    # ------------------------------------------------------------ results

    def ranked(self) -> list[Trial]:
        """Completed trials best first, then pruned ones by the value they reached, then the
        rest by number."""
        order = {"completed": 0, "pruned": 1, "stopped": 2, "diverged": 3, "failed": 4}
        sign = -1 if self.maximize else 1

        def key(t: Trial):
            v = t.objective if t.objective is not None and math.isfinite(t.objective) else None
            return (order.get(t.status, 5), v is None, sign * v if v is not None else 0,
                    t.number)
        return sorted(self.trials.values(), key=key)

    def best(self) -> Trial | None:
        done = [t for t in self.ranked() if t.status == "completed" and t.objective is not None]
        return done[0] if done else None

    def finish(self) -> dict:
        """Close the sweep; returns the summary ``{"sweep", "trials", "best", "wall_seconds"}``."""
        if self.status == "running":
            self.status = "finished"
        wall = time.perf_counter() - self.t0
        self.emit({"type": "sweep_finished", "status": self.status, "wall_seconds": wall})
        best = self.best()
        counts = {s: sum(t.status == s for t in self.trials.values()) for s in STATUSES}
        return {"sweep": {**public(self.spec), "status": self.status,
                          "counts": {k: v for k, v in counts.items() if v}},
                "trials": [t.row() for t in sorted(self.trials.values(), key=lambda t: t.number)],
                "best": best.row() if best else None, "wall_seconds": round(wall, 3)}
