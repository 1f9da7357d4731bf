"""The run lifecycle, on the event loop: states, commands, workers, the runs feed.

States: ``queued -> running (<-> paused) -> completed | stopped | diverged | failed |
interrupted``. Each run's events (the engine's, plus the server's ``status`` events) go
through its :class:`~server.eventlog.EventLog`, which numbers, stores and then publishes
them; this module decides what they mean for the run (its row's ``latest``, ``final``,
``best_test_accuracy``, its state) and writes a state change right after the event that
caused it.

Errors are the domain's (``RunNotFound``, ``RunConflict``, ``StorageUnavailable``,
``InvalidChanges``); server/errors.py says what each is over HTTP.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import SpecError, validate_run_config

from .broadcast import Broadcaster, Message
from .db import Store, StoreError
from .eventlog import EventLog, dumps
from .settings import Settings
from .workers import WorkerHandle, WorkerPool, exit_reason

log = logging.getLogger("backprop_lab.runs")

ACTIVE = ("queued", "running", "paused")
TERMINAL = ("completed", "stopped", "diverged", "failed", "interrupted")
RUN_ID_PREFIX = "r-"
RUNS_CHANNEL = "runs"


def new_run_id() -> str:
    return RUN_ID_PREFIX + secrets.token_hex(5)


def is_run_id(value: str) -> bool:
    """Server-chosen ids only: ``r-`` and 10 hex digits (safe in paths)."""
    return (len(value) == 12 and value.startswith(RUN_ID_PREFIX)
            and all(c in "0123456789abcdef" for c in value[2:]))


# ---------------------------------------------------------------------------------- errors


class RunError(Exception):
    """A command the lifecycle refuses; the message says why, for a person."""


class RunNotFound(RunError):
    def __init__(self, run_id: str):
        self.run_id = run_id
        super().__init__(f"run {run_id[:40]!r} not found")


class RunConflict(RunError):
    """The run's state does not allow the command (e.g. pausing a finished run)."""

    def __init__(self, run_id: str, reason: str):
        self.run_id = run_id
        super().__init__(reason)


class StorageUnavailable(RunError):
    """The data folder cannot be written (read-only, disk full)."""


class InvalidChanges(RunError):
    """Hyperparameter changes the engine refuses: ``errors`` as ``[{"loc": [field], "msg"}]``,
    ``loc`` inside the changes (``[]``: the changes as a whole)."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__("; ".join(e["msg"] for e in errors))


# ---------------------------------------------------------------------------------- runs


@dataclass
class Run:
    """A run's row, kept in memory and written through to the store."""
    id: str
    name: str
    preset: str | None
    status: str
    config: dict
    summary: dict
    created_at: float
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    last_seq: int = 0
    latest: dict | None = None
    final: dict | None = None
    best_test_accuracy: float | None = None
    weights_step: int | None = None
    sweep_id: str | None = None           # a sweep's trial: its sweep, number and values
    trial: int | None = None
    params: dict | None = None
    parent_id: str | None = None          # a fork: the run and the step it started from
    fork_step: int | None = None
    where: str | None = "local"           # "local" (the server's pool) or "dask"
    notes: str | None = None              # the person's own words about the run, and tags
    tags: list | None = None
    # not stored
    start: dict | None = field(default=None, repr=False)   # the worker's start (continue/fork)
    start_paused: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    feed_at: float = 0.0                  # the last `latest` sent on the runs feed
    worker_error: str | None = None

    def row(self) -> dict:
        """The stored row, which is also the Run object of server/API.md (``weights_step``:
        the step of the saved weights)."""
        return {k: getattr(self, k) for k in (
            "id", "name", "preset", "status", "error", "config", "summary", "created_at",
            "started_at", "finished_at", "last_seq", "latest", "final", "best_test_accuracy",
            "weights_step", "sweep_id", "trial", "params", "parent_id", "fork_step", "where",
            "notes", "tags")}


class RunManager:
    """Owns the store, the worker pool, the broadcaster and one event log per run."""

    def __init__(self, settings: Settings, store: Store, broadcaster: Broadcaster):
        self.settings = settings
        self.store = store
        self.broadcaster = broadcaster
        self.runs: dict[str, Run] = {}
        self.logs: dict[str, EventLog] = {}
        self.pool = WorkerPool(settings.max_workers, settings.heartbeat_seconds,
                               settings.heartbeat_timeout_seconds, settings.checkpoint_seconds,
                               settings.shutdown_grace_seconds, self._on_messages, self._on_exit)
        self.dask = None
        self._retry = None
        if settings.dask:
            from .dask_pool import DaskPool
            self.dask = DaskPool(settings.dask, settings.dask_local_workers,
                                 settings.checkpoint_seconds, settings.shutdown_grace_seconds,
                                 self._on_messages, self._on_exit,
                                 progress_rate=settings.dask_progress_rate)
        self.closing = False
        #: the sweeps (server/sweeps.py) hear of their trials' runs: ``run_event(run, event)``
        #: for each engine event stored, ``run_status(run)`` after each state change,
        #: ``run_deleted(run)``
        self.observer = None

    def _add(self, run: Run) -> None:
        self.runs[run.id] = run
        self.logs[run.id] = EventLog(
            run.id, self.store, self.broadcaster, run.last_seq,
            snapshot_live_interval=self.settings.snapshot_live_interval,
            snapshot_store_interval=self.settings.snapshot_store_interval,
            on_written=lambda seq, run=run: setattr(run, "last_seq", seq),
            on_failure=lambda why, run=run: self._storage_failed(run, why))

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Load stored runs; runs left active by a previous server become ``interrupted``."""
        for row in self.store.all_runs():
            self._add(Run(**row))
        for run in self.runs.values():
            if run.status in ACTIVE:
                was = run.status
                self._set_status(run, "interrupted",
                                 "the server stopped while this run was "
                                 f"{was}; no worker was left at restart (history kept)")
        self.pool.open()
        if self.dask is not None:
            self.dask.open()
        self._schedule()

    async def close(self) -> None:
        """Stop every worker; runs still active become ``interrupted``."""
        self.closing = True
        await self.pool.close()
        if self.dask is not None:
            await self.dask.close()
        for run in self.runs.values():
            self._write(run)
            if run.status in ACTIVE:
                step = (run.latest or {}).get("step", 0)
                self._set_status(run, "interrupted",
                                 f"the server shut down at step {step}"
                                 if run.status != "queued" else
                                 "the server shut down before this run started")
        self.broadcaster.close_all("server shutting down", 1001)

    # ------------------------------------------------------------ queries

    def get(self, run_id: str) -> Run:
        run = self.runs.get(run_id) if is_run_id(run_id) else None
        if run is None:
            raise RunNotFound(run_id)
        return run

    def list(self) -> list[Run]:
        return sorted(self.runs.values(), key=lambda r: r.created_at, reverse=True)

    def pool_of(self, run: Run):
        """The pool that runs ``run``: the local worker processes, or the Dask cluster."""
        return self.dask if run.where == "dask" and self.dask is not None else self.pool

    def checkpoint_path(self, run: Run) -> Path:
        return self.settings.runs_dir / run.id / "checkpoint.npz"

    # ------------------------------------------------------------ the event log

    def _write(self, run: Run) -> bool:
        """Write what the run's log holds now; False if the store failed."""
        return self.logs[run.id].write()

    def _storage_failed(self, run: Run, why: str) -> None:
        """Events that cannot be stored are not published either (no replay could repeat
        them): the run stops, and live clients are told with an unstored status event."""
        if run.status in ("running", "paused"):
            self.pool_of(run).send(run.id, {"cmd": "stop"})
            self.pool_of(run).kill(run.id, "its events could not be stored")
        run.status, run.error = "failed", f"could not store its events: {why}"
        run.finished_at = time.time()
        self.logs[run.id].publish_transient(self._status_event(run))
        self.broadcaster.close_channel(run.id, "run failed", 1011)
        self._feed("run_updated", run)
        run.changed.set()

    def _status_event(self, run: Run) -> dict:
        return {"type": "status", "status": run.status, "error": run.error, "ts": time.time()}

    def _set_status(self, run: Run, status: str, error: str | None = None) -> None:
        """Change the state and write it, after whatever the run's log holds."""
        run.status = status
        if error is not None:
            run.error = error
        now = time.time()
        fields = {"status": status, "error": run.error}
        if status == "running" and run.started_at is None:
            run.started_at = fields["started_at"] = now
        if status in TERMINAL:
            run.finished_at = fields["finished_at"] = now
        elog = self.logs[run.id]
        if self.store.read_only:   # serving history only: state is shown, not stored
            elog.discard()
            run.changed.set()
            return
        elog.add(self._status_event(run))
        elog.update(fields)
        if not self._write(run):
            return                 # _storage_failed has told everyone
        if status in TERMINAL:
            self.broadcaster.close_channel(run.id, f"run {status}", 1000)
        self._feed("run_updated", run)
        run.changed.set()
        if run.sweep_id is not None and self.observer is not None:
            self.observer.run_status(run)

    def _feed(self, kind: str, run: Run) -> None:
        """The runs feed (WS /ws/runs): creations, state changes, deletions, `latest`."""
        wire = "run_updated" if kind == "run_latest" else kind
        self.broadcaster.publish(RUNS_CHANNEL, Message(None, kind, dumps(
            {"type": wire, "run": run.row()})))

    # ------------------------------------------------------------ commands

    def create(self, config: dict, summary: dict, preset: str | None,
               trial: tuple[str, int, dict] | None = None,
               fork: tuple[str, int, Path] | None = None, start_paused: bool = False,
               where: str = "local") -> Run:
        """A queued run; ``trial``: ``(sweep_id, number, params)`` for a sweep's trial;
        ``fork``: ``(parent id, step, checkpoint path)`` for a run forked from a checkpoint."""
        if self.store.read_only:
            raise StorageUnavailable(f"runs cannot be created: {self.store.read_only}")
        run = Run(id=new_run_id(), name=config.get("name") or preset or "run", preset=preset,
                  status="queued", config=config, summary=summary, created_at=time.time())
        if trial is not None:
            run.sweep_id, run.trial, run.params = trial
        run.start_paused = start_paused
        run.where = where
        if fork is not None:
            run.parent_id, run.fork_step, source = fork
        while run.id in self.runs:   # pragma: no cover - 40 random bits
            run.id = new_run_id()
        if fork is not None:         # its own copy: the parent may be deleted meanwhile
            own = self.checkpoint_path(run)
            try:
                own.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, own)
            except OSError as e:
                raise StorageUnavailable(f"the fork's checkpoint could not be copied: {e}") from None
            run.start = {"mode": "fork", "from": str(own)}
        ev = self._status_event(run)
        ev["seq"], ev["run_id"] = 1, run.id
        try:
            self.store.insert_run({**run.row(), "last_seq": 1}, [(1, "status", dumps(ev))])
        except StoreError as e:
            raise StorageUnavailable(f"the run could not be saved: {e}") from None
        run.last_seq = 1
        self._add(run)
        self._feed("run_created", run)
        self._schedule()
        return run

    def _schedule(self) -> None:
        if self.closing:
            return
        full: set = set()
        while True:
            queued = [r for r in self.runs.values() if r.status == "queued"
                      and id(self.pool_of(r)) not in full]
            if not queued:
                if self.dask is not None and id(self.dask) in full and not self._retry:
                    # Dask's workers come and go (a restarted or a new one): look again soon
                    self._retry = asyncio.get_running_loop().call_later(1.0, self._retry_schedule)
                return
            run = min(queued, key=lambda r: r.created_at)
            pool = self.pool_of(run)
            if pool.free_slots <= 0:
                full.add(id(pool))
                continue
            try:
                pool.start(run.id, run.config, self.checkpoint_path(run), start=run.start,
                                history_budget=int(self.settings.checkpoint_budget_mb * 2**20))
                run.start = None
                if run.start_paused:     # read by the trainer before its first step
                    pool.send(run.id, {"cmd": "pause"})
                    run.start_paused = False
            except Exception as e:  # noqa: BLE001 - OSError locally; anything from Dask
                self._set_status(run, "failed", f"could not start a worker: {e}")
                continue
            self._set_status(run, "running")

    def _retry_schedule(self) -> None:
        self._retry = None
        self._schedule()

    async def _wait(self, run: Run, states: tuple[str, ...]) -> None:
        deadline = time.monotonic() + self.settings.command_wait_seconds
        while run.status not in states:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            run.changed.clear()
            try:
                await asyncio.wait_for(run.changed.wait(), left)
            except asyncio.TimeoutError:
                return

    async def stop(self, run: Run) -> Run:
        if run.status == "queued":
            self._set_status(run, "stopped", "stopped before it started")
        elif run.status in ("running", "paused"):
            self.pool_of(run).send(run.id, {"cmd": "stop"})
            await self._wait(run, TERMINAL)
        return run      # already finished: stopping again is harmless

    def request_stop(self, run: Run, why: str) -> None:
        """Stop ``run`` without waiting (a sweep prunes it): the normal stop command, and
        ``why`` as the run's ``error`` so its row says who stopped it."""
        if run.status == "queued":
            self._set_status(run, "stopped", why)
        elif run.status in ("running", "paused"):
            run.error = why
            self.pool_of(run).send(run.id, {"cmd": "stop"})

    async def pause(self, run: Run) -> Run:
        if run.status == "running":
            self.pool_of(run).send(run.id, {"cmd": "pause"})
            await self._wait(run, ("paused",) + TERMINAL)
        elif run.status != "paused":
            raise RunConflict(run.id, f"run {run.id} is {run.status}; only a running run can "
                                      "be paused")
        return run

    async def resume(self, run: Run) -> Run:
        if run.status == "paused":
            self.pool_of(run).send(run.id, {"cmd": "resume"})
            await self._wait(run, ("running",) + TERMINAL)
        elif run.status != "running":
            raise RunConflict(run.id, f"run {run.id} is {run.status}; only a paused run can "
                                      "be resumed")
        return run

    async def continue_run(self, run: Run) -> Run:
        """Queue a stopped, interrupted or failed run to go on from its latest checkpoint,
        with the same id and event stream (its next event is ``continued``)."""
        why = {"completed": "it completed; to train it longer, fork it (POST /api/runs/{id}/"
                            "fork with more epochs)",
               "diverged": "it diverged; fork it from its last good checkpoint with a lower lr "
                           "(GET /api/runs/{id}/checkpoints lists them)"}.get(run.status)
        if run.status in ACTIVE:
            why = f"it is {run.status}"
        if why is None and run.sweep_id is not None:
            why = "it is a sweep's trial; re-queue it from its sweep"
        source = self.continue_source(run) if why is None else None
        if why is None and source is None:
            why = ("it has no checkpoint with its training state at the step the server last "
                   "heard of (it stopped before the first one, or its weights were uploaded)")
        if why:
            raise RunConflict(run.id, f"run {run.id} cannot continue: {why}".replace("{id}", run.id))
        if self.store.read_only:
            raise StorageUnavailable(f"runs cannot continue: {self.store.read_only}")
        deadline = time.monotonic() + self.settings.command_wait_seconds
        while run.id in self.pool_of(run).handles:         # its last worker is still exiting
            if time.monotonic() > deadline:
                raise RunConflict(run.id, f"run {run.id} cannot continue yet: its last worker "
                                          "is still exiting; try again in a moment")
            await asyncio.sleep(0.05)
        if run.status in ACTIVE:
            raise RunConflict(run.id, f"run {run.id} cannot continue: it is {run.status}")
        run.start = {"mode": "continue", "from": str(source)}
        run.final, run.finished_at, run.worker_error = None, None, None
        self.logs[run.id].update({"final": None, "finished_at": None})
        run.error = None
        self._set_status(run, "queued", None)
        self._schedule()
        return run

    def continue_source(self, run: Run) -> Path | None:
        """The checkpoint a continued run starts from: the one at ``weights_step``, the last
        step the server heard of (so no event after it is missing), with training state."""
        from engine import Model

        from .checkpoints import path_for
        if run.weights_step is None:
            return None
        latest = self.checkpoint_path(run)
        for path in (latest, latest.with_name(latest.stem + ".prev.npz"),
                     path_for(latest.parent, run.weights_step)):
            try:
                spec, _ = Model.read_checkpoint(path)
            except (OSError, ValueError, KeyError):
                continue
            meta = spec.get("meta", {})
            if meta.get("step") == run.weights_step and meta.get("resume"):
                return path
        return None

    def set_tempo(self, run: Run, steps_per_second: float | None) -> Run:
        """At most ``steps_per_second`` steps per second (None: full speed), from now on."""
        if run.status not in ("running", "paused"):
            raise RunConflict(run.id, f"run {run.id} is {run.status}; the tempo changes only "
                                      "while it is running or paused")
        self.pool_of(run).send(run.id, {"cmd": "tempo", "steps_per_second": steps_per_second})
        return run

    def step(self, run: Run, steps: int) -> Run:
        """Take ``steps`` steps of a paused run; it stays paused."""
        if run.status != "paused":
            raise RunConflict(run.id, f"run {run.id} is {run.status}; Step is for a paused run "
                                      "(pause it first)")
        self.pool_of(run).send(run.id, {"cmd": "step", "steps": steps})
        return run

    def set_notes(self, run: Run, notes: str | None, tags: list | None) -> Run:
        """Replace the run's notes and/or tags (any state); stored at once, then on the feed."""
        if self.store.read_only:
            raise StorageUnavailable(f"notes cannot be saved: {self.store.read_only}")
        fields = {}
        if notes is not None:
            run.notes = fields["notes"] = notes
        if tags is not None:
            run.tags = fields["tags"] = tags
        elog = self.logs[run.id]
        elog.update(fields)
        if not elog.write():
            raise StorageUnavailable(f"the notes could not be saved: {elog.failed}")
        self._feed("run_updated", run)
        run.changed.set()
        return run

    def set_hparams(self, run: Run, changes: dict) -> Run:
        """Check the new values with the engine's own rules, then send them to the worker."""
        if run.status not in ("running", "paused"):
            raise RunConflict(run.id, f"run {run.id} is {run.status}; hyperparameters change "
                                      "only while it is running or paused")
        if not changes:
            raise InvalidChanges([{"loc": [],
                                   "msg": "give at least one of lr, momentum, weight_decay"}])
        cfg = copy.deepcopy(run.config)
        cfg["train"].update(changes)
        try:
            validate_run_config(cfg)
        except SpecError as e:     # the engine's loc is ["train", field, ...]
            raise InvalidChanges([{"loc": list(err["loc"][1:]), "msg": err["msg"]}
                                  for err in e.errors]) from None
        self.pool_of(run).send(run.id, {"cmd": "set", "changes": changes})
        return run

    async def delete(self, run: Run) -> None:
        if run.status in ("running", "paused"):
            await self.pool_of(run).stop_worker(run.id)
        if self.store.read_only:
            raise StorageUnavailable(f"runs cannot be deleted: {self.store.read_only}")
        try:
            self.store.delete_run(run.id)
        except StoreError as e:
            raise StorageUnavailable(f"the run could not be deleted: {e}") from None
        self.logs.pop(run.id).discard()
        self.runs.pop(run.id, None)
        shutil.rmtree(self.settings.runs_dir / run.id, ignore_errors=True)
        self.broadcaster.close_channel(run.id, "run deleted", 1000, drain=False)
        self._feed("run_deleted", run)
        run.changed.set()
        if run.sweep_id is not None and self.observer is not None:
            self.observer.run_deleted(run)
        self._schedule()

    # ------------------------------------------------------------ from the workers

    def _on_messages(self, run_id: str, batch: list) -> None:
        run = self.runs.get(run_id)
        if run is None:
            return
        elog = self.logs[run_id]
        fields: dict = {}
        now = time.monotonic()
        for m in batch:
            k = m.get("k")
            if k == "checkpoint":
                run.weights_step = fields["weights_step"] = m.get("step")
                continue
            if k == "error":
                run.worker_error = m.get("msg")
                continue
            if k == "warning":      # the server validated the change; the engine still refused
                log.warning("run %s: %s", run_id, m.get("msg"))
                continue
            if k != "event":
                continue
            e = m["e"]
            e["ts"] = m.get("ts")
            t = e.get("type")
            new_status: tuple | None = None
            if t == "snapshot":
                elog.snapshot(e, now)
                continue
            if t == "progress":
                run.latest = {k2: e.get(k2) for k2 in ("step", "epoch", "loss", "accuracy", "lr",
                                                       "images_per_sec")}
                fields["latest"] = run.latest
            elif t == "eval":
                acc = e.get("test_accuracy")
                if acc is not None and (run.best_test_accuracy is None
                                        or acc > run.best_test_accuracy):
                    run.best_test_accuracy = fields["best_test_accuracy"] = acc
            elif t == "paused":
                new_status = ("paused", None)
            elif t == "resumed":
                new_status = ("running", None)
            elif t == "diverged":
                run.error = (f"diverged: {e.get('reason')}; {e.get('where')}. "
                             f"Try: {e.get('suggestion')}")
            elif t == "run_finished":
                elog.flush_snapshot()
                run.final = {k2: e.get(k2) for k2 in ("test_accuracy", "test_loss", "train_seconds",
                                                      "images_per_second", "step", "result")
                             if k2 != "result" or e.get("result") is not None}
                fields["final"] = run.final
                new_status = (e.get("status", "completed"), run.error
                              if e.get("status") == "diverged" else None)
            elog.add(e)
            if run.sweep_id is not None and self.observer is not None and t in (
                    "progress", "eval", "bsde_eval", "diverged", "run_finished"):
                self.observer.run_event(run, e)
            if new_status is not None:
                # the state change is stored right after the engine event that caused it
                elog.update(fields)
                fields = {}
                self._set_status(run, *new_status)
                if elog.failed:
                    return
        elog.update(fields)
        if self.closing:
            self._write(run)
        else:
            elog.write_soon()
        if run.latest and now - run.feed_at >= self.settings.runs_feed_interval:
            run.feed_at = now
            self._feed("run_latest", run)

    def _on_exit(self, h: WorkerHandle, code: int | None) -> None:
        run = self.runs.get(h.run_id)
        if run is not None and self.pool_of(run).handles.get(h.run_id) is not None:
            run = None                   # a continued run's new worker holds it now
        if run is not None and run.status in ("running", "paused"):
            step = (run.latest or {}).get("step", 0)
            if h.shutting_down:
                self._set_status(run, "interrupted", f"the server shut down at step {step}")
            elif run.worker_error:
                self._set_status(run, "failed", run.worker_error)
            else:
                why = h.kill_reason or exit_reason(code)
                self._set_status(run, "failed", f"{why} at step {step}")
        self._schedule()

    def weights_imported(self, run: Run) -> None:
        """Uploaded weights replaced the run's checkpoint (their step is unknown)."""
        run.weights_step = None
        if not self.store.read_only:
            self.logs[run.id].update({"weights_step": None})
            self._write(run)
        self._feed("run_updated", run)
