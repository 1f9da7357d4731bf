"""One run's event log: sequence numbers, batched writes, the snapshot throttle, publishing.

Every stored event of a run gets the next ``seq``, is written to the store, and only then
is published to the run's channel, all on the event loop's thread. So a replay read
followed by a subscription in the same tick has no gap and no duplicate, and anything a
client has seen can be replayed.

Batching: what is added within ``STORE_SECONDS`` of the previous write waits for the next
one (``write_soon``), so a fast run costs one SQLite transaction per ~25 ms rather than one
per step. Held events have no seq yet and are neither stored nor published. ``write`` writes
whatever is held at once, in the order it was added: the lifecycle adds a status event and
calls it, so a status is stored (in the same transaction) right after the event that
caused it.

Snapshots (kernels and feature maps) are the heavy events: at most one per
``snapshot_live_interval`` is published and at most one per ``snapshot_store_interval`` is
stored. A published snapshot that is not stored has ``"transient": true`` and the ``seq`` of
the newest stored event. The newest snapshot is kept (``pending_snapshot``) and stored by
``flush_snapshot`` before ``run_finished``, so a finished run's history ends with its final
weights' picture.

A failed write (disk full, read-only file) drops what was held: none of it is published,
since no replay could repeat it. The log then refuses everything after (a history ends
cleanly at its last stored event rather than continuing after a hole) and calls
``on_failure(why)`` once; the lifecycle stops the run.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Callable

from .broadcast import Broadcaster, Message
from .db import Store, StoreError

log = logging.getLogger("backprop_lab.eventlog")

#: events added within this long of the previous write are stored together
STORE_SECONDS = 0.025


def dumps(obj) -> str:
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


class EventLog:
    """The event log of run ``run_id``, continuing after ``last_seq`` (the newest stored seq).

    ``store``: where events and run-row ``fields`` are written (one transaction per write).
    ``broadcaster``: events are published on the channel named ``run_id`` once stored.
    ``on_written(last_seq)``: called after each write that stored events.
    ``on_failure(why)``: called once, on the loop's thread, when a write fails.
    """

    def __init__(self, run_id: str, store: Store, broadcaster: Broadcaster, last_seq: int = 0,
                 *, snapshot_live_interval: float = 0.25, snapshot_store_interval: float = 5.0,
                 on_written: Callable[[int], None] | None = None,
                 on_failure: Callable[[str], None] | None = None,
                 store_seconds: float = STORE_SECONDS, clock: Callable[[], float] = time.monotonic,
                 id_key: str = "run_id"):
        self.run_id = run_id
        self.id_key = id_key         # the stream's id in each event ("sweep_id" on a sweep's)
        self.store = store
        self.broadcaster = broadcaster
        self.last_seq = last_seq
        self.snapshot_live_interval = snapshot_live_interval
        self.snapshot_store_interval = snapshot_store_interval
        self.on_written = on_written
        self.on_failure = on_failure
        self.store_seconds = store_seconds
        self.clock = clock
        self.failed: str | None = None        # why the store refused a write (then: read-only)
        self.pending_snapshot: dict | None = None   # newest snapshot not stored
        self._held: list[tuple[dict, bool]] = []    # (event, stored?) in the order added
        self._fields: dict = {}                     # run-row fields for the next write
        self._timer: asyncio.TimerHandle | None = None
        self._written_at = float("-inf")
        self._snap_live_at: float | None = None
        self._snap_stored_at: float | None = None

    # ------------------------------------------------------------ adding

    @property
    def held(self) -> int:
        """Events waiting for the next write."""
        return len(self._held)

    def add(self, event: dict) -> None:
        """Hold ``event`` for the next write, which gives it its seq."""
        if not self.failed:
            self._held.append((event, True))

    def add_transient(self, event: dict) -> None:
        """Publish ``event`` with the next write, at its place among the stored ones, unstored."""
        if not self.failed:
            self._held.append((event, False))

    def update(self, fields: dict) -> None:
        """Run-row fields written with the next write (later values win)."""
        if not self.failed:
            self._fields.update(fields)

    def snapshot(self, event: dict, now: float | None = None) -> None:
        """A snapshot from the worker: published if none was within the live interval, and
        stored too if none was within the store interval; else kept as ``pending_snapshot``."""
        now = self.clock() if now is None else now
        if (self._snap_live_at is not None
                and now - self._snap_live_at < self.snapshot_live_interval):
            self.pending_snapshot = event          # too soon to publish; kept for the end
            return
        self._snap_live_at = now
        if (self._snap_stored_at is None
                or now - self._snap_stored_at >= self.snapshot_store_interval):
            self._snap_stored_at, self.pending_snapshot = now, None
            self.add(event)
        else:
            self.pending_snapshot = event
            self.add_transient(event)

    def flush_snapshot(self) -> None:
        """Store the newest snapshot not stored yet (before ``run_finished``)."""
        if self.pending_snapshot is not None:
            self.add(self.pending_snapshot)
            self.pending_snapshot = None

    # ------------------------------------------------------------ writing

    def write_soon(self) -> None:
        """Write what is held now if the previous write was at least ``store_seconds`` ago,
        else once that much time has passed since it."""
        if self._timer is not None or not (self._held or self._fields):
            return
        wait = self._written_at + self.store_seconds - self.clock()
        if wait <= 0:
            self.write()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self.write)

    def write(self) -> bool:
        """Number, store (one transaction) and then publish everything held, in order.
        False if the store failed (or had failed before): then nothing held is published."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.failed:
            return False
        if not (self._held or self._fields):
            return True
        held, fields = self._held, self._fields
        self._held, self._fields = [], {}
        self._written_at = self.clock()
        rows: list[tuple[int, str, str]] = []
        out: list[Message] = []
        seq = self.last_seq
        for ev, stored in held:
            if stored:
                seq += 1
                ev["seq"], ev[self.id_key] = seq, self.run_id
                text = dumps(ev)
                rows.append((seq, ev["type"], text))
                out.append(Message(seq, ev["type"], text))
            else:
                out.append(Message(seq, ev["type"], dumps(
                    {**ev, "seq": seq, self.id_key: self.run_id, "transient": True}), True))
        if rows:
            fields["last_seq"] = seq
        try:
            self.store.append({self.run_id: (fields, rows)})
        except StoreError as e:
            self._fail(str(e))
            return False
        self.last_seq = seq
        if rows and self.on_written is not None:
            self.on_written(seq)
        for msg in out:
            self.broadcaster.publish(self.run_id, msg)
        return True

    def publish_transient(self, event: dict) -> None:
        """Publish ``event`` now, unstored, with the newest stored seq (e.g. why it failed)."""
        msg = {**event, "seq": self.last_seq, self.id_key: self.run_id, "transient": True}
        self.broadcaster.publish(self.run_id, Message(self.last_seq, event["type"], dumps(msg),
                                                      True))

    def discard(self) -> None:
        """Drop what is held (the run is deleted, or its state is not stored)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held, self._fields = [], {}

    def _fail(self, why: str) -> None:
        log.error("run %s: %s", self.run_id, why)
        self.discard()
        self.pending_snapshot = None
        self.failed = why
        if self.on_failure is not None:
            self.on_failure(why)
