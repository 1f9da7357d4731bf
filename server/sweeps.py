"""Sweeps in the server: each trial an ordinary run on the server's worker pool.

A sweep (server/sweep/spec.py) is driven by the domain's ``core.Sweep`` and its Optuna study,
which live in this process. The executor is the run manager: a trial is a run created with
its ``sweep_id``, ``trial`` number and ``params``; the manager queues it with the other runs
(sharing ``--max-workers``), and this service keeps at most ``max_parallel`` of a sweep's
trials queued or running at once. The manager tells us (``RunManager.observer``) of each
trial run's engine events (evaluations reach Optuna as they are stored; a pruned trial is
stopped through the manager's normal stop command) and of its state changes.

The executor is pluggable (``TrialExecutor``): this service only creates trial runs, asks
for them to stop, deletes them, and listens to the ``observer`` hooks. Where a run's process
lives is the manager's business (its ``WorkerPool`` today); trials on Dask need a pool there
that starts, signals and reports runs through the same callbacks, and nothing here changes.

Statuses. A sweep is ``running``, ``stopping`` (stopped, trials still ending), ``finished``,
``stopped``, ``interrupted`` (the server stopped while it ran; ``resume`` re-queues) or
``failed`` (its spec no longer validates after an upgrade). A trial is one of
``core.STATUSES`` or ``interrupted``. A pruned trial's run ends ``stopped``, its ``error``
saying ``pruned by sweep ...: <reason>``; the trial is ``pruned`` with ``pruned_reason``.

Persistence (server/db.py): the sweep row (its spec as sent, its budget), one row per trial
(written in the same transaction as the sweep event that changed it) and the sweep's event
log. Optuna's storage stays in memory and is rebuilt from the trial rows (``add_trial``) at
start and on ``extend``. After a restart, a trial whose row was not final is settled from
its run (the runs table is the truth): finished runs give their final metrics and stored
evaluations, interrupted runs make interrupted trials. Nothing finished is ever re-run.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import math
import secrets
import time
from typing import Protocol

from engine import SpecError, validate_run_config

from .broadcast import Message
from .eventlog import EventLog, dumps
from .manager import ACTIVE, TERMINAL, Run, RunManager, StorageUnavailable
from .sweep.core import FINAL, Sweep, Trial, bsde_row
from .sweep.search import Proposal, Search, _encode
from .sweep.spec import MAX_TRIALS, canon, public, validate_sweep

log = logging.getLogger("backprop_lab.sweeps")

SWEEP_ID_PREFIX = "s-"
#: a running trial's ``trial_progress`` (step, loss) goes on the sweep stream at most this often
PROGRESS_SECONDS = 1.0
RESUME_HINT = "POST /api/sweeps/{id}/resume re-queues its interrupted trials and goes on"
SWEEPS_CHANNEL = "sweeps"
SWEEP_STATUSES = ("running", "stopping", "finished", "stopped", "interrupted", "failed")
SWEEP_DONE = ("finished", "stopped", "failed")      # the stream closes (until extend/resume)
TRIAL_STATUSES = ("queued", "running", "completed", "pruned", "diverged", "failed", "stopped",
                  "interrupted")
TRIAL_DONE = FINAL + ("interrupted",)
#: every event type on a sweep's stream (server/API.md, "Sweeps", lists each)
SWEEP_EVENTS = ("sweep_started", "trial_queued", "trial_started", "trial_progress", "trial_eval",
                "trial_pruning", "trial_finished", "sweep_extended", "sweep_status",
                "sweep_finished")


def new_sweep_id() -> str:
    return SWEEP_ID_PREFIX + secrets.token_hex(5)


def is_sweep_id(value: str) -> bool:
    return (len(value) == 12 and value.startswith(SWEEP_ID_PREFIX)
            and all(c in "0123456789abcdef" for c in value[2:]))


class TrialExecutor(Protocol):
    """What the sweeps need from whatever runs trials (``RunManager`` is one)."""
    runs: dict[str, Run]
    observer: object       # gets run_event(run, event), run_status(run), run_deleted(run)

    def create(self, config: dict, summary: dict, preset: str | None,
               trial: tuple[str, int, dict] | None = None) -> Run: ...

    def request_stop(self, run: Run, why: str) -> None: ...

    async def delete(self, run: Run) -> None: ...


class SweepError(Exception):
    """A command on sweeps refused; the message says why."""


class SweepNotFound(SweepError):
    def __init__(self, sweep_id: str):
        super().__init__(f"sweep {sweep_id[:40]!r} not found")


class SweepConflict(SweepError):
    """The sweep's state does not allow the command."""


class InvalidSweep(SweepError):
    """``errors``: ``[{"loc", "msg"}]`` with ``loc`` inside the request body."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__("; ".join(e["msg"] for e in errors))


# ---------------------------------------------------------------------------------- search


def _distributions(norm: dict) -> dict:
    import optuna.distributions as d
    out = {}
    for path, q in norm["parameters"].items():
        if "values" in q:
            out[path] = d.CategoricalDistribution(_encode(q["values"])[0])
        elif q["int"]:
            out[path] = d.IntDistribution(q["min"], q["max"], log=q["log"])
        else:
            out[path] = d.FloatDistribution(q["min"], q["max"], log=q["log"])
    return out


class ServerSearch(Search):
    """``Search`` with a budget that can grow, re-queued trials (``fixed``), and a study
    rebuilt from stored trials (``restore``). A grid proposes its first point not tried yet."""

    def __init__(self, norm: dict, budget: int):
        super().__init__(norm)
        self.budget = budget
        self.used = 0                 # trials counted against the budget
        self.tried: set[str] = set()
        self.fixed: list[tuple[dict, int]] = []    # (params, number it re-runs)
        self.requeue_of: int | None = None         # of the last proposal

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def encode(self, params: dict) -> dict:
        out = {}
        for p, v in params.items():
            enc, as_json = self.choices.get(p, (None, False))
            out[p] = json.dumps(v, sort_keys=True) if as_json else v
        return out

    def rungs(self, number: int) -> dict:
        """The trial's ASHA rung values in the study (``completed_rung_K``), to store."""
        trial = self.trials.get(number)
        if trial is None:
            return {}
        frozen = self.study._storage.get_trial(trial._trial_id)    # noqa: SLF001
        return {k: v for k, v in frozen.system_attrs.items() if k.startswith("completed_rung_")}

    def restore(self, trials: list[Trial], requeues: set[int],
                attrs: dict[int, dict] | None = None) -> None:
        """Tell the new study every stored trial, numbers 1..n in order (a gap becomes a
        failed trial without parameters, so Optuna's numbers stay ours - 1)."""
        import optuna
        from optuna.trial import TrialState, create_trial
        dists = _distributions(self.sweep)
        attrs = attrs or {}
        by_number = {t.number: t for t in trials}
        for n in range(1, max(by_number, default=0) + 1):
            t = by_number.get(n)
            if t is None:
                self.study.add_trial(create_trial(state=TrialState.FAIL))
                continue
            if n not in requeues:
                self.used += 1
            self.tried.add(canon(t.params))
            enc = self.encode(t.params)
            fits = all(p in dists and dists[p]._contains(dists[p].to_internal_repr(v))
                       for p, v in enc.items()) if enc else False
            inter = {e["eval"]: e.get(self.metric) for e in t.evals
                     if e.get(self.metric) is not None and math.isfinite(e[self.metric])}
            params = {"params": enc, "distributions": {p: dists[p] for p in enc}} if fits else {}
            if attrs.get(n):                # ASHA's rungs, so competitors survive a rebuild
                params["system_attrs"] = attrs[n]
            if t.status in ("queued", "running"):
                frozen = create_trial(state=TrialState.RUNNING, intermediate_values=inter,
                                      **params)
            elif t.status == "completed" and t.objective is not None \
                    and math.isfinite(t.objective) and fits:
                frozen = create_trial(state=TrialState.COMPLETE, value=t.objective,
                                      intermediate_values=inter, **params)
            elif t.status in ("pruned", "diverged") and fits:
                frozen = create_trial(state=TrialState.PRUNED, intermediate_values=inter,
                                      **params)
            else:
                frozen = create_trial(state=TrialState.FAIL, **params)
            self.study.add_trial(frozen)
            if t.status in ("queued", "running"):
                stored = self.study.get_trials(deepcopy=False)[-1]
                self.trials[n] = optuna.Trial(self.study, stored._trial_id)
                if t.pruned_reason is not None:
                    self.decided.add(n)
        self.asked = len(self.study.get_trials(deepcopy=False))

    def ask(self) -> Proposal | None:
        import warnings

        import optuna
        self.requeue_of = None
        if self.fixed:
            point, self.requeue_of = self.fixed.pop(0)
        else:
            if self.remaining <= 0:
                return None
            point = self.start()
            if self.sweep["method"] == "grid":
                point = next((p for p in self.grid if canon(p) not in self.tried), None)
                if point is None:
                    return None
            self.used += 1
        if point is not None:
            self.study.enqueue_trial(self.encode(point), skip_if_exists=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask()
        values: dict = {}
        if point is not None and self.requeue_of is not None:
            for path in point:          # so the study knows them, where they still fit
                try:
                    self._suggest(trial, path)
                except (KeyError, ValueError):
                    pass
            values = dict(point)        # a re-run keeps its values even if the space narrowed
        else:
            from .sweep.spec import active
            for path in self.order:
                if path not in active(self.params, self.order, {**values, path: None}):
                    continue
                values[path] = self._suggest(trial, path)
        self.asked += 1
        number = trial.number + 1
        self.trials[number] = trial
        self.tried.add(canon(values))
        return Proposal(number, values)


# ---------------------------------------------------------------------------------- one sweep


class _SweepStore:
    """What the sweep's EventLog writes through: its events and row fields, plus the trial
    rows changed since the last write, in one transaction."""

    def __init__(self, service: "SweepService", state: "SweepState"):
        self.service, self.state = service, state

    def append(self, updates: dict) -> None:
        st = self.state
        dirty = sorted(st.dirty)
        rows = [(st.id, n, st.run_ids.get(n), st.sweep.trials[n].status, st.trial_data(n))
                for n in dirty if n in st.sweep.trials]
        self.service.manager.store.append_sweep(updates, rows)
        st.dirty.difference_update(dirty)


class SweepState:
    """One sweep in the server: its spec as sent, the domain ``Sweep``, its trials' runs."""

    def __init__(self, id: str, raw: dict, norm: dict, budget: int, status: str,
                 created_at: float, finished_at: float | None = None, error: str | None = None,
                 last_seq: int = 0):
        self.id, self.raw, self.norm, self.budget = id, raw, norm, budget
        self.status, self.error = status, error
        self.created_at, self.finished_at = created_at, finished_at
        self.last_seq = last_seq
        self.sweep: Sweep = None          # type: ignore[assignment]
        self.run_ids: dict[int, str] = {}
        self.extra: dict[int, dict] = {}  # requeue_of, requeued_as, created_at, finished_at
        self.dirty: set[int] = set()
        self.elog: EventLog = None        # type: ignore[assignment]
        self.deleting = False
        self.progress_at: dict[int, float] = {}    # when each trial's last progress went out
        self.changed = asyncio.Event()

    @property
    def name(self) -> str:
        return self.norm["name"] if self.norm else str(self.raw.get("name") or self.id)

    def trial_data(self, n: int) -> dict:
        t = self.sweep.trials[n]
        return {**t.row(), "evals": t.evals, "run_id": self.run_ids.get(n),
                "stop_requested": t.stop_requested, **self.extra.get(n, {})}

    def trial_out(self, n: int) -> dict:
        d = self.trial_data(n)
        d.pop("stop_requested", None)
        d.pop("rungs", None)
        return d

    def active(self) -> list[Trial]:
        return [t for t in self.sweep.trials.values() if t.status in ("queued", "running")]

    def best(self) -> dict | None:
        b = self.sweep.best()
        return self.trial_out(b.number) if b else None

    def counts(self) -> dict:
        out: dict[str, int] = {}
        for t in self.sweep.trials.values():
            out[t.status] = out.get(t.status, 0) + 1
        return out

    def summary(self) -> dict:
        """The sweep without its trials (GET /api/sweeps rows)."""
        s = getattr(self.sweep, "search", None)     # none for a sweep that failed to load
        return {"id": self.id, "name": self.name, "status": self.status, "error": self.error,
                "method": self.norm["method"] if self.norm else self.raw.get("method"),
                "objective": self.norm["objective"] if self.norm else None,
                "max_parallel": self.norm["max_parallel"] if self.norm else None,
                "budget": self.budget, "remaining": max(0, s.remaining) if s else 0,
                "created_at": self.created_at, "finished_at": self.finished_at,
                "last_seq": self.last_seq, "counts": self.counts() if self.sweep else {},
                "best": self.best() if self.sweep else None}

    def detail(self) -> dict:
        out = self.summary()
        out["spec"] = self.raw
        out["sweep"] = public(self.norm) if self.norm else None
        out["trials"] = [self.trial_out(n) for n in sorted(self.sweep.trials)] \
            if self.sweep else []
        return out


# ---------------------------------------------------------------------------------- service


class SweepService:
    """Every sweep of this server; runs on the event loop's thread (the manager's)."""

    def __init__(self, manager: RunManager):
        self.manager = manager
        self.store = manager.store
        self.broadcaster = manager.broadcaster
        self.sweeps: dict[str, SweepState] = {}
        self.by_run: dict[str, tuple[str, int]] = {}
        self.closing = False
        self._pending: set[str] = set()     # sweeps whose next trials are due
        manager.observer = self

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        for row in self.store.all_sweeps():
            try:
                self._restore(row)
            except Exception:             # noqa: BLE001 - one bad row must not stop the server
                log.exception("sweep %s could not be restored", row.get("id"))
        for st in self.sweeps.values():
            self._pump_later(st)

    def close(self) -> None:
        """Before the manager closes: no new trial; running sweeps become interrupted as
        their trials are (the manager interrupts the runs)."""
        self.closing = True
        for st in self.sweeps.values():
            if st.status in ("running", "stopping"):
                self._set_status(st, "interrupted", "the server shut down while this sweep "
                                 f"ran; {RESUME_HINT}")

    def flush(self) -> None:
        for st in self.sweeps.values():
            if st.elog is not None:
                st.elog.write()

    def _elog(self, st: SweepState) -> EventLog:
        return EventLog(st.id, _SweepStore(self, st), self.broadcaster, st.last_seq,
                        on_written=lambda seq, st=st: setattr(st, "last_seq", seq),
                        on_failure=lambda why, st=st: log.error("sweep %s: %s", st.id, why),
                        id_key="sweep_id")

    def _make_sweep(self, st: SweepState, trials: list[Trial], requeues: set[int]) -> None:
        """The domain Sweep with a search rebuilt from ``trials`` (none for a new sweep)."""
        sw = Sweep(st.norm, emit=lambda e: None)
        sw.search = ServerSearch(st.norm, st.budget)
        sw.search.restore(trials, requeues, {n: x["rungs"] for n, x in st.extra.items()
                                             if x.get("rungs")})
        for t in trials:
            sw.trials[t.number] = t
        sw._emit = lambda e, st=st: self._on_sweep_event(st, e)   # noqa: SLF001
        st.sweep = sw

    def _restore(self, row: dict) -> None:
        raw, budget = row["spec"], row["budget"]
        try:
            norm = validate_sweep(self._spec_for(raw, budget))
        except SpecError as e:
            norm = None
            row["status"] = "failed"
            row["error"] = "its spec no longer validates: " + "; ".join(
                err["msg"] for err in e.errors)[:500]
        st = SweepState(row["id"], raw, norm, budget, row["status"], row["created_at"],
                        row["finished_at"], row["error"], row["last_seq"])
        self.sweeps[st.id] = st
        st.elog = self._elog(st)
        trials: list[Trial] = []
        for n, d in row["trials"].items():
            t = Trial(n, d["params"], status=d["status"], test_accuracy=d.get("test_accuracy"),
                      final_loss=d.get("final_loss"), objective=d.get("objective"),
                      train_seconds=d.get("train_seconds"), steps=d.get("steps") or 0,
                      evals=d.get("evals") or [], pruned_reason=d.get("pruned_reason"),
                      reason=d.get("reason"), stop_requested=d.get("stop_requested"))
            trials.append(t)
            if d.get("run_id"):
                st.run_ids[n] = d["run_id"]
            st.extra[n] = {k: d[k] for k in ("requeue_of", "requeued_as", "created_at",
                                               "finished_at", "rungs", "where") if d.get(k) is not None}
        known = {t.number for t in trials}
        for run in self.manager.runs.values():   # a trial whose row a crash lost
            if run.sweep_id == st.id and run.trial not in known:
                trials.append(Trial(run.trial, run.params or {}, status="queued"))
                st.run_ids[run.trial] = run.id
                st.dirty.add(run.trial)
        trials.sort(key=lambda t: t.number)
        for n, rid in st.run_ids.items():
            self.by_run[rid] = (st.id, n)
        changed = [t for t in trials if t.status not in TRIAL_DONE]
        for t in changed:
            self._settle_from_run(st, t)
            self._emit(st, {"type": "trial_finished", **t.row()} if t.status in TRIAL_DONE
                       else {"type": "trial_queued", "number": t.number, "params": t.params})
        if norm is None:
            st.sweep = Sweep.__new__(Sweep)
            st.sweep.trials = {t.number: t for t in trials}
            st.sweep.best = lambda: None
            st.elog.write()
            return
        requeues = {n for n, x in st.extra.items() if x.get("requeue_of")}
        self._make_sweep(st, trials, requeues)
        if st.status in ("running", "stopping"):
            left = st.sweep.search.remaining > 0 and (
                norm["method"] != "grid" or any(canon(p) not in st.sweep.search.tried
                                                for p in st.sweep.search.grid))
            interrupted = any(t.status == "interrupted" and not st.extra[t.number].get(
                "requeued_as") for t in trials) or left
            if st.status == "stopping":
                self._finish(st, "stopped")
            elif interrupted:
                self._set_status(st, "interrupted", "the server stopped while this sweep was "
                                 f"running; {RESUME_HINT}")
            else:
                self._finish(st, "finished")
        st.elog.write()

    def _settle_from_run(self, st: SweepState, t: Trial) -> None:
        """A trial whose row was not final when the server stopped: its run says how it
        ended (the runs table is written with each event; the trial row may lag)."""
        run = self.manager.runs.get(st.run_ids.get(t.number, ""))
        if run is None:
            t.status, t.reason = "failed", "its run was deleted"
            return
        if run.status in ACTIVE:        # cannot happen after RunManager.open
            return
        final = run.final or {}
        if final:
            evals = self.store.events_of_type(run.id, "eval")
            t.evals = [{"eval": i + 1, "step": e.get("step"), "epoch": e.get("epoch"),
                        **{k: e.get(k) for k in ("test_accuracy", "test_loss", "train_accuracy",
                                                 "train_loss")}} for i, e in enumerate(evals)]
            for e in self.store.events_of_type(run.id, "bsde_eval"):
                if e.get("step"):
                    t.evals.append(bsde_row(t, e))
            t.test_accuracy, t.final_loss = final.get("test_accuracy"), final.get("test_loss")
            t.train_seconds, t.steps = final.get("train_seconds"), final.get("step") or t.steps
            metric = st.norm["objective"]["metric"] if st.norm else "test_accuracy"
            t.objective = t.evals[-1][metric] if t.evals else None
        if run.status == "stopped" and (t.pruned_reason or t.stop_requested == "prune"):
            t.status = "pruned"
        elif run.status == "completed" and final:
            t.status = "completed"
        elif run.status == "interrupted":
            t.status, t.reason = "interrupted", run.error
        else:
            t.status = run.status if run.status in TRIAL_STATUSES else "failed"
            t.reason = t.reason or run.error

    # ------------------------------------------------------------ queries

    def get(self, sweep_id: str) -> SweepState:
        st = self.sweeps.get(sweep_id) if is_sweep_id(sweep_id) else None
        if st is None:
            raise SweepNotFound(sweep_id)
        return st

    def list(self) -> list[SweepState]:
        return sorted(self.sweeps.values(), key=lambda s: s.created_at, reverse=True)

    # ------------------------------------------------------------ commands

    @staticmethod
    def _spec_for(raw: dict, budget: int) -> dict:
        """The spec validated for a budget: random/tpe get it as max_trials; a grid is
        validated whole (the budget limits how many of its points run)."""
        spec = copy.deepcopy(raw)
        if spec.get("method") == "grid":
            spec.pop("max_trials", None)
        else:
            spec["max_trials"] = budget
        return spec

    def create(self, raw: dict) -> SweepState:
        if self.store.read_only:
            raise StorageUnavailable(f"sweeps cannot be created: {self.store.read_only}")
        if isinstance(raw, dict) and "series" in raw:
            raise InvalidSweep([{"loc": ["series"], "msg": "a series is several sweeps: create "
                                 "each of its sweeps with its own POST /api/sweeps"}])
        _refuse_paths(raw)
        try:
            norm = validate_sweep(raw)
        except SpecError as e:
            raise InvalidSweep([{"loc": list(err["loc"]), "msg": err["msg"]}
                                for err in e.errors]) from None
        _check_dataset(norm)
        budget = norm["max_trials"]
        if norm["method"] == "grid":
            norm = validate_sweep(self._spec_for(raw, budget))
        st = SweepState(new_sweep_id(), copy.deepcopy(raw), norm, budget, "running", time.time())
        while st.id in self.sweeps:      # pragma: no cover - 40 random bits
            st.id = new_sweep_id()
        ev = {"type": "sweep_started", "sweep": public(norm), "budget": budget,
              "seq": 1, "sweep_id": st.id, "ts": time.time()}
        try:
            self.store.insert_sweep({"id": st.id, "name": norm["name"], "status": "running",
                                     "spec": st.raw, "budget": budget,
                                     "created_at": st.created_at, "last_seq": 1},
                                    [(1, "sweep_started", dumps(ev))])
        except Exception as e:       # StoreError
            raise StorageUnavailable(f"the sweep could not be saved: {e}") from None
        st.last_seq = 1
        st.elog = self._elog(st)
        self._make_sweep(st, [], set())
        self.sweeps[st.id] = st
        self._feed(st)
        self._pump(st)
        return st

    async def stop(self, st: SweepState) -> SweepState:
        """Queued trials are cancelled, running ones stopped (waits a little for them)."""
        if st.status not in ("running", "interrupted"):
            return st
        if st.status == "interrupted":
            self._finish(st, "stopped")
            return st
        self._set_status(st, "stopping", None)
        for n in st.sweep.stop():
            self._stop_run(st, n, "stopped: the sweep was stopped")
        for t in list(st.active()):
            if t.status == "queued":
                self._stop_run(st, t.number, "stopped before it started: the sweep was stopped")
        self._pump(st)
        deadline = time.monotonic() + self.manager.settings.command_wait_seconds
        while st.status == "stopping" and time.monotonic() < deadline:
            st.changed.clear()
            try:
                await asyncio.wait_for(st.changed.wait(), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
        return st

    def extend(self, st: SweepState, trials: int, parameters: dict | None) -> SweepState:
        """Add ``trials`` to the budget and/or narrow parameters; the study is rebuilt from
        the trials so far, and the sweep runs again if it had ended."""
        if st.norm is None or st.deleting:
            raise SweepConflict(f"sweep {st.id} is {st.status}; it cannot be extended")
        if st.status == "stopping":
            raise SweepConflict(f"sweep {st.id} is stopping; extend it once it has stopped")
        if not trials and not parameters:
            raise InvalidSweep([{"loc": [], "msg": "give trials (how many to add) and/or "
                                                   "parameters (narrower values or ranges)"}])
        raw = copy.deepcopy(st.raw)
        errors: list[dict] = []
        for path, new in (parameters or {}).items():
            old = raw["parameters"].get(path)
            if old is None:
                errors.append({"loc": ["parameters", path],
                               "msg": f"parameters: {path} is not a parameter of this sweep "
                                      f"(extend narrows existing ones: "
                                      f"{', '.join(raw['parameters'])})"})
                continue
            if not isinstance(new, dict):
                errors.append({"loc": ["parameters", path], "msg": f"parameters: {path} must be "
                               "an object: {\"values\": [...]} or {\"min\", \"max\"}"})
                continue
            errors += _narrower(path, st.norm["parameters"][path], new)
            if "values" in new:
                merged = {k: v for k, v in old.items() if k not in ("min", "max", "log", "int")}
            else:
                merged = {k: v for k, v in old.items() if k != "values"}
            merged.update(new)
            raw["parameters"][path] = merged
        budget = st.budget + trials
        if budget > MAX_TRIALS:
            errors.append({"loc": ["trials"], "msg": f"trials: the sweep would have {budget:,} "
                                                     f"trials; at most {MAX_TRIALS:,} are allowed"})
        if errors:
            raise InvalidSweep(errors)
        if "max_trials" in raw:
            raw["max_trials"] = budget
        try:
            norm = validate_sweep(self._spec_for(raw, budget))
        except SpecError as e:
            raise InvalidSweep([{"loc": ["trials"] if err["loc"][:1] == ["max_trials"]
                                 else list(err["loc"]), "msg": err["msg"]}
                                for err in e.errors]) from None
        st.raw, st.norm, st.budget = raw, norm, budget
        old = st.sweep
        for n in old.trials:
            self._keep_rungs(st, n)
        trials_now = [old.trials[n] for n in sorted(old.trials)]
        requeues = {n for n, x in st.extra.items() if x.get("requeue_of")}
        self._make_sweep(st, trials_now, requeues)
        st.elog.update({"spec": raw, "budget": budget, "name": norm["name"]})
        self._emit(st, {"type": "sweep_extended", "trials": trials,
                        "parameters": parameters or {}, "budget": budget,
                        "sweep": public(norm)})
        if st.status in ("finished", "stopped", "interrupted"):
            self._set_status(st, "running", None)   # interrupted trials wait for resume
        else:
            st.elog.write()
        self._pump(st)
        return st

    def resume(self, st: SweepState) -> SweepState:
        """Re-queue the interrupted trials (new numbers, the same values; the old ones stay
        interrupted with ``requeued_as``) and go on with the rest of the budget."""
        if st.norm is None or st.deleting:
            raise SweepConflict(f"sweep {st.id} is {st.status}; it cannot be resumed")
        waiting = [t for t in st.sweep.trials.values() if t.status == "interrupted"
                   and not st.extra.get(t.number, {}).get("requeued_as")]
        if st.status == "running" and not waiting:
            return st
        if not waiting and st.sweep.search.remaining <= 0:
            raise SweepConflict(f"sweep {st.id} has no interrupted trial and no trial left in "
                                "its budget: extend it to run more")
        if st.status == "stopping":
            raise SweepConflict(f"sweep {st.id} is stopping; resume it once it has stopped")
        for t in sorted(waiting, key=lambda t: t.number):
            st.sweep.search.fixed.append((t.params, t.number))
        st.sweep.stopping = False
        st.sweep.status = "running"
        self._set_status(st, "running", None)
        self._pump(st)
        return st

    async def delete(self, st: SweepState) -> None:
        """Stop and delete the sweep's trial runs, then the sweep."""
        if self.store.read_only:
            raise StorageUnavailable(f"sweeps cannot be deleted: {self.store.read_only}")
        st.deleting = True
        st.sweep.stopping = True
        for n, rid in list(st.run_ids.items()):
            run = self.manager.runs.get(rid)
            if run is not None:
                await self.manager.delete(run)
            self.by_run.pop(rid, None)
        st.elog.discard()
        try:
            self.store.delete_sweep(st.id)
        except Exception as e:      # StoreError
            raise StorageUnavailable(f"the sweep could not be deleted: {e}") from None
        self.sweeps.pop(st.id, None)
        self.broadcaster.close_channel(st.id, "sweep deleted", 1000, drain=False)
        self.broadcaster.publish(SWEEPS_CHANNEL, Message(None, "sweep_deleted", dumps(
            {"type": "sweep_deleted", "sweep": {"id": st.id}})))

    # ------------------------------------------------------------ running trials

    def _pump_later(self, st: SweepState) -> None:
        """Start the next trials once the current callback is done (the manager calls us
        from inside its own state changes)."""
        if st.id in self._pending:
            return
        self._pending.add(st.id)

        def go():
            self._pending.discard(st.id)
            if self.sweeps.get(st.id) is st:
                self._pump(st)
        try:
            asyncio.get_running_loop().call_soon(go)
        except RuntimeError:
            self._pending.discard(st.id)

    def _pump(self, st: SweepState) -> None:
        """Keep up to ``max_parallel`` trials queued or running; finish when none is left."""
        if self.closing or st.deleting or st.norm is None:
            return
        if st.status == "running":
            active = len(st.active())
            while active < st.norm["max_parallel"]:
                t = st.sweep.next_trial()
                if t is None:
                    break
                self._launch(st, t)
                if t.status in ("queued", "running"):
                    active += 1
        if not st.active():
            if st.status == "running":
                self._finish(st, "finished")
            elif st.status == "stopping":
                self._finish(st, "stopped")
        st.elog.write()

    def _launch(self, st: SweepState, t: Trial) -> None:
        search: ServerSearch = st.sweep.search          # type: ignore[assignment]
        extra = st.extra.setdefault(t.number, {})
        extra["created_at"] = time.time()
        where = "dask" if self.manager.dask is not None else "local"
        extra["where"] = where
        if search.requeue_of is not None:
            extra["requeue_of"] = search.requeue_of
            st.extra.setdefault(search.requeue_of, {})["requeued_as"] = t.number
            st.dirty.add(search.requeue_of)
        try:
            _, summary = validate_run_config(t.config)
            run = self.manager.create(t.config, summary, st.norm["base"].get("preset"),
                                      trial=(st.id, t.number, t.params), where=where)
        except (StorageUnavailable, SpecError) as e:
            st.sweep._finish(t, "failed", reason=f"its run could not be created: {e}")  # noqa
            return
        st.run_ids[t.number] = run.id
        self.by_run[run.id] = (st.id, t.number)
        self._emit(st, {"type": "trial_queued", "number": t.number, "params": t.params,
                        **({"requeue_of": search.requeue_of} if search.requeue_of else {})})
        if run.status != "queued":       # a free worker took it inside create()
            self.run_status(run)

    def _stop_run(self, st: SweepState, n: int, why: str) -> None:
        run = self.manager.runs.get(st.run_ids.get(n, ""))
        if run is not None:
            self.manager.request_stop(run, why)

    def _finish(self, st: SweepState, status: str) -> None:
        st.sweep.status = status
        st.finished_at = time.time()
        self._emit(st, {"type": "sweep_finished", "status": status,
                        "wall_seconds": round(st.finished_at - st.created_at, 3),
                        "counts": st.counts(), "best": st.best()})
        self._set_status(st, status, None, event=False)

    def _set_status(self, st: SweepState, status: str, error: str | None,
                    event: bool = True) -> None:
        st.status, st.error = status, error
        fields = {"status": status, "error": error}
        if status in SWEEP_DONE:
            fields["finished_at"] = st.finished_at
        else:
            st.finished_at = fields["finished_at"] = None
        if event:
            self._emit(st, {"type": "sweep_status", "status": status, "error": error})
        st.elog.update(fields)
        st.elog.write()
        if status in SWEEP_DONE:
            self.broadcaster.close_channel(st.id, f"sweep {status}", 1000)
        self._feed(st)
        st.changed.set()

    def _feed(self, st: SweepState) -> None:
        self.broadcaster.publish(SWEEPS_CHANNEL, Message(None, "sweep_updated", dumps(
            {"type": "sweep_updated", "sweep": st.summary()})))

    # ------------------------------------------------------------ events

    def _emit(self, st: SweepState, event: dict) -> None:
        event.setdefault("ts", time.time())
        n = event.get("number")
        if n is not None:
            if st.run_ids.get(n):
                event["run_id"] = st.run_ids[n]
            if event["type"] != "trial_progress":     # the row keeps no live step
                st.dirty.add(n)
        st.elog.add(event)

    @staticmethod
    def _keep_rungs(st: SweepState, n: int) -> None:
        rungs = st.sweep.search.rungs(n) if hasattr(st.sweep.search, "rungs") else {}
        if rungs:
            st.extra.setdefault(n, {})["rungs"] = rungs

    def _on_sweep_event(self, st: SweepState, event: dict) -> None:
        """An event of the domain ``Sweep`` (trial_started, trial_eval, trial_pruning,
        trial_finished)."""
        event.pop("sweep", None)         # the sweep's name: the stream carries sweep_id
        if event["type"] == "trial_finished":
            st.extra.setdefault(event["number"], {})["finished_at"] = time.time()
            self._keep_rungs(st, event["number"])
        self._emit(st, event)
        if event["type"] == "trial_eval":
            st.elog.write_soon()
        else:
            st.elog.write()
        if event["type"] == "trial_finished":
            self._feed(st)          # counts and best changed

    # ------------------------------------------------------------ from the manager

    def _lookup(self, run: Run) -> tuple[SweepState, Trial] | None:
        key = self.by_run.get(run.id)
        if key is None:
            return None
        st = self.sweeps.get(key[0])
        if st is None or st.deleting or st.norm is None:
            return None
        t = st.sweep.trials.get(key[1])
        return (st, t) if t is not None else None

    def run_event(self, run: Run, event: dict) -> None:
        with _contained("run_event", run):
            self._run_event(run, event)

    def run_status(self, run: Run) -> None:
        with _contained("run_status", run):
            self._run_status(run)

    def run_deleted(self, run: Run) -> None:
        with _contained("run_deleted", run):
            self._run_deleted(run)

    def _run_event(self, run: Run, event: dict) -> None:
        found = self._lookup(run)
        if found is None:
            return
        st, t = found
        if event.get("type") == "run_finished" and t.status == "queued":
            st.sweep.started(t.number)
        if event.get("type") == "progress":
            now = time.monotonic()
            if t.status == "running" and now - st.progress_at.get(t.number, -1e9) >= \
                    PROGRESS_SECONDS:
                st.progress_at[t.number] = now
                self._emit(st, {"type": "trial_progress", "number": t.number,
                                **{k: event.get(k) for k in ("step", "epoch", "loss",
                                                             "accuracy")}})
                st.elog.write_soon()
        if st.sweep.on_event(t.number, event) == "stop":
            reason = (t.pruned_reason or {}).get("message", "")
            self.manager.request_stop(run, f"pruned by sweep {st.name}: {reason}")

    def _run_status(self, run: Run) -> None:
        found = self._lookup(run)
        if found is None:
            return
        st, t = found
        if run.status == "running" and t.status == "queued":
            st.sweep.started(t.number)
        elif run.status in TERMINAL and t.status not in TRIAL_DONE:
            if run.status == "interrupted":
                t.status, t.reason = "interrupted", run.error
                st.sweep.search.tell(t.number, "failed", None)
                st.extra.setdefault(t.number, {})["finished_at"] = time.time()
                self._emit(st, {"type": "trial_finished", **t.row()})
                st.elog.write()
            elif t.status == "queued":
                st.sweep._finish(t, "stopped",  # noqa: SLF001
                                 reason=run.error or "stopped before it started")
            else:
                st.sweep.ended(t.number, run.error)
        if run.status in TERMINAL:
            self._pump_later(st)

    def _run_deleted(self, run: Run) -> None:
        found = self._lookup(run)
        if found is None:
            return
        st, t = found
        if t.status not in TRIAL_DONE:
            if t.status == "queued":
                st.sweep._finish(t, "stopped", reason="its run was deleted")   # noqa: SLF001
            else:
                t.stop_requested = t.stop_requested or "stop"
                st.sweep.ended(t.number, "its run was deleted")
        st.run_ids.pop(t.number, None)
        self.by_run.pop(run.id, None)
        st.dirty.add(t.number)
        st.elog.write()
        self._pump_later(st)


@contextlib.contextmanager
def _contained(hook: str, run: Run):
    """A fault in a sweep's bookkeeping is logged; it never breaks the run's own lifecycle
    (these hooks run inside the manager's event handling)."""
    try:
        yield
    except Exception:      # noqa: BLE001
        log.exception("sweep %s: %s of run %s failed", run.sweep_id, hook, run.id)


# ---------------------------------------------------------------------------------- checks


def _refuse_paths(raw) -> None:
    """No server paths from a client (as for runs): dataset.path anywhere in the spec."""
    if not isinstance(raw, dict):
        return
    base = raw.get("base")
    if isinstance(base, dict):
        ds = base.get("dataset")
        if isinstance(ds, dict) and ds.get("path") is not None:
            raise InvalidSweep([{"loc": ["base", "dataset", "path"], "msg": "base: dataset.path "
                                 "is not accepted over HTTP; choose the dataset by name"}])
        over = base.get("overrides")
        if isinstance(over, dict):
            for k in ("path", "dataset.path"):
                if k in over:
                    raise InvalidSweep([{"loc": ["base", "overrides", k], "msg": "base: a "
                                         "dataset path is not accepted over HTTP"}])
    params = raw.get("parameters")
    if isinstance(params, dict) and "dataset.path" in params:
        raise InvalidSweep([{"loc": ["parameters", "dataset.path"], "msg": "parameters: "
                             "dataset.path is not accepted over HTTP"}])


def _check_dataset(norm: dict) -> None:
    from engine import is_bsde, list_datasets
    if is_bsde(norm["config"]):            # a Deep BSDE base samples its own paths
        return
    names = {norm["config"]["dataset"]["name"]}
    q = norm["parameters"].get("dataset.name")
    if q and "values" in q:
        names |= {v for v in q["values"] if isinstance(v, str)}
    avail = {d["name"] for d in list_datasets() if d["available"]}
    for name in sorted(names - avail):
        loc = ["parameters", "dataset.name"] if q and name in q.get("values", []) else ["base"]
        raise InvalidSweep([{"loc": loc, "msg": f"dataset: {name} is not installed on this "
                                                 "server"}])


def _narrower(path: str, old: dict, new: dict) -> list[dict]:
    """Errors unless ``new`` lies within ``old`` (a subset of its values, or a range inside)."""
    loc = ["parameters", path]
    if "values" in new:
        if "values" not in old:
            return [{"loc": loc + ["values"], "msg": f"parameters: {path} is a range; narrow it "
                                                     "with min and max"}]
        if not isinstance(new["values"], list):
            return []                       # validate_sweep says what is wrong
        have = {canon(v) for v in old["values"]}
        return [{"loc": loc + ["values", i], "msg": f"parameters: {path}: {v!r} is not one of "
                 f"its values; extend can only narrow a parameter"}
                for i, v in enumerate(new["values"]) if _canon_or(v) not in have]
    if "min" in new or "max" in new:
        if "values" in old:
            return [{"loc": loc, "msg": f"parameters: {path} is a list of values; narrow it "
                                        "with a shorter values list"}]
        out = []
        for key in ("min", "max"):
            v = new.get(key, old[key])
            if isinstance(v, (int, float)) and not isinstance(v, bool) and \
                    not old["min"] <= v <= old["max"]:
                out.append({"loc": loc + [key], "msg": f"parameters: {path}: {key} {v:g} is "
                            f"outside its range {old['min']:g} to {old['max']:g}; extend can "
                            "only narrow a parameter"})
        return out
    return []


def _canon_or(v) -> str:
    try:
        return canon(v)
    except (TypeError, ValueError):
        return repr(v)
