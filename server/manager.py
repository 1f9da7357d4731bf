"""The runs: their states, their event streams and their workers, on the event loop.

States: ``queued -> running (<-> paused) -> completed | stopped | diverged | failed |
interrupted``. Every event of a run (the engine's, plus the server's ``status`` events)
gets the next sequence number, is stored, and only then is broadcast, all on the loop's
thread: so a replay read followed by a subscription in the same tick has no gap and no
duplicate.

Snapshots (kernels and feature maps) are the heavy events: at most one per
``snapshot_live_interval`` is streamed and at most one per ``snapshot_store_interval``
is stored. A streamed snapshot that is not stored is sent with ``"transient": true``
and the ``seq`` of the newest stored event. The newest snapshot is always stored before
``run_finished``, so a finished run's history ends with its final weights' picture.

The engine's ordinary events (progress, eval, snapshots) are stored in batches: what arrives
within ``STORE_SECONDS`` of the previous write waits for the next one, so a fast run costs one
SQLite transaction per ~25 ms rather than one per step. Held events have no seq yet and are
neither stored nor streamed (stored, then streamed, both in one callback), so the replay and
live stream stay gapless. Anything that changes the run's state is written at once, after
whatever was held.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import SpecError, validate_config

from .broadcast import Broadcaster, Message
from .db import Store, StoreError
from .errors import ApiError
from .settings import Settings
from .workers import WorkerHandle, WorkerPool, exit_reason

log = logging.getLogger("backprop_lab.runs")

ACTIVE = ("queued", "running", "paused")
TERMINAL = ("completed", "stopped", "diverged", "failed", "interrupted")
RUN_ID_PREFIX = "r-"
RUNS_CHANNEL = "runs"
#: engine events arriving within this long of the previous write are stored together
STORE_SECONDS = 0.025


def new_run_id() -> str:
    return RUN_ID_PREFIX + secrets.token_hex(5)


def is_run_id(value: str) -> bool:
    """Server-chosen ids only: ``r-`` and 10 hex digits (safe in paths)."""
    return (len(value) == 12 and value.startswith(RUN_ID_PREFIX)
            and all(c in "0123456789abcdef" for c in value[2:]))


def dumps(obj) -> str:
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


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
    # not stored
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    snap_live_at: float = 0.0
    snap_stored_at: float = 0.0
    pending_snapshot: dict | None = field(default=None, repr=False)
    feed_at: float = 0.0
    worker_error: str | None = None
    # events held for the next write (see STORE_SECONDS)
    held_events: list = field(default_factory=list, repr=False)
    held_transient: dict = field(default_factory=dict, repr=False)
    held_fields: dict = field(default_factory=dict, repr=False)
    flush_timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    stored_at: float = 0.0

    def row(self) -> dict:
        return {k: getattr(self, k) for k in (
            "id", "name", "preset", "status", "error", "config", "summary", "created_at",
            "started_at", "finished_at", "last_seq", "latest", "final", "best_test_accuracy",
            "weights_step")}

    def public(self) -> dict:
        """The Run object of server/API.md (``weights_step``: the step of the saved weights)."""
        return self.row()


class RunManager:
    """Owns the store, the worker pool and the broadcaster for runs."""

    def __init__(self, settings: Settings, store: Store, broadcaster: Broadcaster):
        self.settings = settings
        self.store = store
        self.broadcaster = broadcaster
        self.runs: dict[str, Run] = {}
        self.pool = WorkerPool(settings.max_workers, settings.heartbeat_seconds,
                               settings.heartbeat_timeout_seconds, settings.checkpoint_seconds,
                               settings.shutdown_grace_seconds, self._on_messages, self._on_exit)
        self.closing = False

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Load stored runs; runs left active by a previous server become ``interrupted``."""
        for row in self.store.all_runs():
            run = Run(**row)
            self.runs[run.id] = run
        for run in self.runs.values():
            if run.status in ACTIVE:
                was = run.status
                self._set_status(run, "interrupted",
                                 "the server stopped while this run was "
                                 f"{was}; no worker was left at restart (history kept)")
        self.pool.open()
        self._schedule()

    async def close(self) -> None:
        """Stop every worker; runs still active become ``interrupted``."""
        self.closing = True
        await self.pool.close()
        for run in self.runs.values():
            self._flush(run)
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
            raise ApiError(404, ["path", "run_id"], f"run {run_id[:40]!r} not found")
        return run

    def list(self) -> list[Run]:
        return sorted(self.runs.values(), key=lambda r: r.created_at, reverse=True)

    def checkpoint_path(self, run: Run) -> Path:
        return self.settings.runs_dir / run.id / "checkpoint.npz"

    # ------------------------------------------------------------ storing + broadcasting

    def _hold(self, run: Run, events: list[dict], fields: dict,
              transient: dict[int, list[dict]]) -> None:
        """Store and stream these with the next write: now if the last one was at least
        STORE_SECONDS ago, else when that much time has passed since it."""
        offset = len(run.held_events)
        run.held_events += events
        for i, ts in transient.items():     # "after the i-th event" of the combined list
            run.held_transient.setdefault(i + offset, []).extend(ts)
        run.held_fields.update(fields)
        if run.flush_timer is not None:
            return
        wait = run.stored_at + STORE_SECONDS - time.monotonic()
        if wait <= 0 or self.closing:
            self._flush(run)
        else:
            run.flush_timer = asyncio.get_running_loop().call_later(wait, self._flush, run)

    def _flush(self, run: Run) -> bool:
        """Write what ``_hold`` kept. False if the store failed (the run then fails)."""
        if run.flush_timer is not None:
            run.flush_timer.cancel()
            run.flush_timer = None
        if not (run.held_events or run.held_transient or run.held_fields):
            return True
        events, fields, transient = run.held_events, run.held_fields, run.held_transient
        run.held_events, run.held_fields, run.held_transient = [], {}, {}
        run.stored_at = time.monotonic()
        return self._commit(run, events, fields, transient)

    def _drop_held(self, run: Run) -> None:
        if run.flush_timer is not None:
            run.flush_timer.cancel()
            run.flush_timer = None
        run.held_events, run.held_fields, run.held_transient = [], {}, {}

    def _commit(self, run: Run, events: list[dict], fields: dict | None = None,
                transient_after: dict[int, list[dict]] | None = None) -> bool:
        """Give ``events`` the next seqs, store them with ``fields``, then broadcast them.

        ``transient_after[i]``: unstored messages to stream after the i-th event (i = -1:
        before the first). Returns False if the store failed (the run then fails).
        """
        if run.held_events or run.held_transient or run.held_fields:
            if not self._flush(run):      # held events come first
                return False
        fields = dict(fields or {})
        rows, out = [], []
        transient_after = transient_after or {}
        seq = run.last_seq
        for t in transient_after.get(-1, ()):
            out.append(Message(seq, t["type"], dumps({**t, "seq": seq, "run_id": run.id,
                                                      "transient": True}), True))
        for i, ev in enumerate(events):
            seq += 1
            ev["seq"], ev["run_id"] = seq, run.id
            text = dumps(ev)
            rows.append((seq, ev["type"], text))
            out.append(Message(seq, ev["type"], text))
            for t in transient_after.get(i, ()):
                out.append(Message(seq, t["type"], dumps({**t, "seq": seq, "run_id": run.id,
                                                          "transient": True}), True))
        fields["last_seq"] = seq
        if run.id in self.runs:
            try:
                self.store.append({run.id: (fields, rows)})
            except StoreError as e:
                self._storage_failed(run, str(e))
                return False
        run.last_seq = seq
        for msg in out:
            self.broadcaster.publish(run.id, msg)
        return True

    def _storage_failed(self, run: Run, why: str) -> None:
        """Events that cannot be stored are not streamed either (no replay could repeat
        them): the run stops, and live clients are told with an unstored status event."""
        log.error("run %s: %s", run.id, why)
        self._drop_held(run)
        if run.status in ("running", "paused"):
            self.pool.send(run.id, {"cmd": "stop"})
            self.pool.kill(run.id, "its events could not be stored")
        if run.status in TERMINAL and run.error:
            return
        run.status, run.error = "failed", f"could not store its events: {why}"
        run.finished_at = time.time()
        msg = {"type": "status", "status": run.status, "error": run.error, "ts": time.time(),
               "seq": run.last_seq, "run_id": run.id, "transient": True}
        self.broadcaster.publish(run.id, Message(run.last_seq, "status", dumps(msg), True))
        self.broadcaster.close_channel(run.id, "run failed", 1011)
        self._feed("run_updated", run)
        run.changed.set()

    def _status_event(self, run: Run) -> dict:
        return {"type": "status", "status": run.status, "error": run.error, "ts": time.time()}

    def _set_status(self, run: Run, status: str, error: str | None = None,
                    extra_fields: dict | None = None, events_before: list[dict] | None = None):
        run.status = status
        if error is not None:
            run.error = error
        now = time.time()
        fields = {"status": status, "error": run.error, **(extra_fields or {})}
        if status == "running" and run.started_at is None:
            run.started_at = fields["started_at"] = now
        if status in TERMINAL:
            run.finished_at = fields["finished_at"] = now
        if self.store.read_only:   # serving history only: state is shown, not stored
            self._drop_held(run)
            run.changed.set()
            return
        self._commit(run, (events_before or []) + [self._status_event(run)], fields)
        if status in TERMINAL:
            self.broadcaster.close_channel(run.id, f"run {status}", 1000)
        self._feed("run_updated", run)
        run.changed.set()

    def _feed(self, kind: str, run: Run) -> None:
        """The runs feed (WS /ws/runs): creations, state changes, deletions, `latest`."""
        wire = "run_updated" if kind == "run_latest" else kind
        self.broadcaster.publish(RUNS_CHANNEL, Message(None, kind, dumps(
            {"type": wire, "run": run.public()})))

    # ------------------------------------------------------------ commands

    def create(self, config: dict, summary: dict, preset: str | None) -> Run:
        if self.store.read_only:
            raise ApiError(503, ["data_dir"], f"runs cannot be created: {self.store.read_only}")
        run = Run(id=new_run_id(), name=config.get("name") or preset or "run", preset=preset,
                  status="queued", config=config, summary=summary, created_at=time.time())
        while run.id in self.runs:   # pragma: no cover - 40 random bits
            run.id = new_run_id()
        ev = self._status_event(run)
        ev["seq"], ev["run_id"] = 1, run.id
        try:
            self.store.insert_run({**run.row(), "last_seq": 1}, [(1, "status", dumps(ev))])
        except StoreError as e:
            raise ApiError(503, ["data_dir"], f"the run could not be saved: {e}") from None
        run.last_seq = 1
        self.runs[run.id] = run
        self._feed("run_created", run)
        self._schedule()
        return run

    def _schedule(self) -> None:
        if self.closing:
            return
        while self.pool.free_slots > 0:
            queued = [r for r in self.runs.values() if r.status == "queued"]
            if not queued:
                return
            run = min(queued, key=lambda r: r.created_at)
            try:
                self.pool.start(run.id, run.config, self.checkpoint_path(run))
            except OSError as e:
                self._set_status(run, "failed", f"could not start a worker: {e}")
                continue
            self._set_status(run, "running")

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
            self.pool.send(run.id, {"cmd": "stop"})
            await self._wait(run, TERMINAL)
        return run      # already finished: stopping again is harmless

    async def pause(self, run: Run) -> Run:
        if run.status == "running":
            self.pool.send(run.id, {"cmd": "pause"})
            await self._wait(run, ("paused",) + TERMINAL)
        elif run.status != "paused":
            raise ApiError(409, ["path", "run_id"],
                           f"run {run.id} is {run.status}; only a running run can be paused")
        return run

    async def resume(self, run: Run) -> Run:
        if run.status == "paused":
            self.pool.send(run.id, {"cmd": "resume"})
            await self._wait(run, ("running",) + TERMINAL)
        elif run.status != "running":
            raise ApiError(409, ["path", "run_id"],
                           f"run {run.id} is {run.status}; only a paused run can be resumed")
        return run

    def set_hparams(self, run: Run, changes: dict) -> Run:
        """Check the new values with the engine's own rules, then send them to the worker."""
        if run.status not in ("running", "paused"):
            raise ApiError(409, ["path", "run_id"], f"run {run.id} is {run.status}; "
                           "hyperparameters change only while it is running or paused")
        if not changes:
            raise ApiError(422, ["body"], "give at least one of lr, momentum, weight_decay")
        cfg = copy.deepcopy(run.config)
        cfg["train"].update(changes)
        try:
            validate_config(cfg)
        except SpecError as e:
            raise ApiError(422, errors=[{"loc": ["body", *e_loc[1:]], "msg": err["msg"]}
                                        for err in e.errors
                                        for e_loc in [err["loc"]]]) from None
        self.pool.send(run.id, {"cmd": "set", "changes": changes})
        return run

    async def delete(self, run: Run) -> None:
        if run.status in ("running", "paused"):
            await self.pool.stop_worker(run.id)
        if self.store.read_only:
            raise ApiError(503, ["data_dir"], f"runs cannot be deleted: {self.store.read_only}")
        try:
            self.store.delete_run(run.id)
        except StoreError as e:
            raise ApiError(503, ["data_dir"], f"the run could not be deleted: {e}") from None
        self._drop_held(run)
        self.runs.pop(run.id, None)
        shutil.rmtree(self.settings.runs_dir / run.id, ignore_errors=True)
        self.broadcaster.close_channel(run.id, "run deleted", 1000, drain=False)
        self._feed("run_deleted", run)
        run.changed.set()
        self._schedule()

    # ------------------------------------------------------------ from the workers

    def _on_messages(self, run_id: str, batch: list) -> None:
        run = self.runs.get(run_id)
        if run is None:
            return
        events: list[dict] = []
        transient: dict[int, list[dict]] = {}
        fields: dict = {}
        new_status: tuple | None = None
        now = time.monotonic()
        s = self.settings
        for m in batch:
            k = m.get("k")
            if k == "checkpoint":
                run.weights_step = fields["weights_step"] = m.get("step")
                continue
            if k == "error":
                run.worker_error = m.get("msg")
                continue
            if k != "event":
                continue
            e = m["e"]
            e["ts"] = m.get("ts")
            t = e.get("type")
            if t == "snapshot":
                if run.snap_live_at and now - run.snap_live_at < s.snapshot_live_interval:
                    run.pending_snapshot = e          # too soon to stream; kept for the end
                    continue
                run.snap_live_at = now
                if not run.snap_stored_at or now - run.snap_stored_at >= s.snapshot_store_interval:
                    run.snap_stored_at, run.pending_snapshot = now, None
                    events.append(e)
                else:
                    run.pending_snapshot = e
                    transient.setdefault(len(events) - 1, []).append(e)
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
                if run.pending_snapshot is not None:
                    events.append(run.pending_snapshot)
                    run.pending_snapshot = None
                run.final = {k2: e.get(k2) for k2 in ("test_accuracy", "test_loss", "train_seconds",
                                                      "images_per_second", "step")}
                fields["final"] = run.final
                new_status = (e.get("status", "completed"), run.error
                              if e.get("status") == "diverged" else None)
            events.append(e)
            if new_status is not None and t in ("paused", "resumed", "run_finished"):
                # state changes are stored right after the engine event that caused them
                self._hold(run, events, fields, transient)
                if not self._flush(run):
                    return
                events, transient, fields = [], {}, {}
                self._set_status(run, *new_status)
                new_status = None
        if events or transient or fields:
            self._hold(run, events, fields, transient)
        if run.latest and now - run.feed_at >= s.runs_feed_interval:
            run.feed_at = now
            self._feed("run_latest", run)

    def _on_exit(self, h: WorkerHandle, code: int | None) -> None:
        run = self.runs.get(h.run_id)
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
        try:
            self.store.append({run.id: ({"weights_step": None}, [])})
        except StoreError as e:
            log.error("run %s: %s", run.id, e)
        self._feed("run_updated", run)
