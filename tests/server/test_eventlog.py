"""The event log in-process, on a real SQLite file: numbering, batched writes, a status
right after its cause, the snapshot throttle, and a full disk."""
from __future__ import annotations

import asyncio
import json

import pytest

from engine import get_preset, validate_config
from server.broadcast import FRAME_EVENTS, Broadcaster
from server.db import Store
from server.eventlog import STORE_SECONDS, EventLog
from server.manager import RunManager
from server.settings import Settings

RID = "r-0123456789"


class CountingStore(Store):
    """A real store that keeps each successful ``append`` (one per transaction)."""

    def __init__(self, path):
        super().__init__(path)
        self.appends: list[dict] = []

    def append(self, updates):
        super().append(updates)
        self.appends.append(updates)


class RecordingBroadcaster(Broadcaster):
    """Keeps every published message, and checks that a stored one was stored first."""

    def __init__(self, store: Store):
        super().__init__(512)
        self.store = store
        self.seen = []

    def publish(self, channel, msg):
        if msg.seq is not None and not msg.transient:
            assert self.store.events_after(channel, msg.seq - 1, 1)[0][0] == msg.seq, \
                f"seq {msg.seq} published before it was stored"
        if channel != "runs":
            self.seen.append(msg)
        super().publish(channel, msg)


@pytest.fixture
def store(tmp_path):
    s = CountingStore(tmp_path / "db.sqlite3")
    s.open()
    yield s
    s.close()


def insert_run(store: Store, run_id: str = RID) -> None:
    store.insert_run({"id": run_id, "name": "t", "status": "running", "config": {},
                      "summary": {}, "created_at": 0.0, "last_seq": 1},
                     [(1, "status", '{"type":"status","seq":1}')])


def progress(step: int) -> dict:
    return {"type": "progress", "step": step, "loss": 1.0 / step}


def stored_seqs(store: Store, run_id: str = RID) -> list[int]:
    return [seq for seq, _ in store.events_after(run_id, 0, 10_000)]


def row(store: Store, run_id: str = RID) -> dict:
    return next(r for r in store.all_runs() if r["id"] == run_id)


async def until(predicate, what: str) -> None:
    for _ in range(1000):            # bounded: 10 s at most
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_events_added_within_the_window_are_stored_and_published_in_one_write(store):
    insert_run(store)
    b = RecordingBroadcaster(store)
    frozen = [100.0]                 # the clock stands still: the window never passes by itself

    async def scenario():
        log = EventLog(RID, store, b, last_seq=1, clock=lambda: frozen[0])
        log.add({"type": "run_started"})
        log.write_soon()             # the first write after a quiet spell happens at once
        first = (len(store.appends), [m.seq for m in b.seen])
        for step in range(1, 6):
            log.add(progress(step))
            log.update({"latest": {"step": step}})
            log.write_soon()
        waiting = (log.held, stored_seqs(store), len(b.seen))
        await until(lambda: log.held == 0, "the timer's write")   # STORE_SECONDS later
        return log, first, waiting
    log, first, waiting = asyncio.run(scenario())
    assert STORE_SECONDS <= 0.05
    assert first == (1, [2])
    assert waiting == (5, [1, 2], 1)          # held: neither stored nor published
    assert len(store.appends) == 2            # the five went in one transaction
    (fields, rows), = store.appends[1].values()
    assert [r[0] for r in rows] == [3, 4, 5, 6, 7] and fields["latest"] == {"step": 5}
    assert [m.seq for m in b.seen] == [2, 3, 4, 5, 6, 7] and log.last_seq == 7
    assert row(store)["last_seq"] == 7 and row(store)["latest"] == {"step": 5}


def test_write_now_includes_what_was_held_in_order(store):
    insert_run(store)
    b = RecordingBroadcaster(store)

    async def scenario():
        log = EventLog(RID, store, b, last_seq=1, clock=lambda: 0.0)
        log.add(progress(1))
        log.write_soon()
        log.add(progress(2))
        log.write_soon()                       # held (and a timer set)
        log.add({"type": "status", "status": "paused"})
        log.update({"status": "paused"})
        assert log.write()                     # at once, the held progress first
        await asyncio.sleep(STORE_SECONDS * 2)  # the cancelled timer writes nothing more
        return log
    asyncio.run(scenario())
    assert [[r[0] for r in next(iter(a.values()))[1]] for a in store.appends] == [[2], [3, 4]]
    assert [m.kind for m in b.seen] == ["progress", "progress", "status"]
    assert row(store)["status"] == "paused"


def test_snapshots_are_throttled_live_and_in_storage_and_the_last_is_kept(store):
    insert_run(store)
    b = RecordingBroadcaster(store)

    def snap(step):
        return {"type": "snapshot", "step": step}

    async def scenario():
        log = EventLog(RID, store, b, last_seq=1, snapshot_live_interval=0.25,
                       snapshot_store_interval=5.0)
        log.snapshot(snap(1), now=10.0)        # stored (the first)
        log.snapshot(snap(2), now=10.1)        # too soon to stream: kept for the end
        log.add(progress(3))
        log.snapshot(snap(4), now=10.5)        # streamed, not stored: transient
        log.add(progress(5))
        assert log.write()
        log.flush_snapshot()                   # before run_finished: the newest is stored
        log.add({"type": "run_finished", "step": 6})
        assert log.write()
    asyncio.run(scenario())
    sent = [json.loads(m.text) for m in b.seen]
    assert [(m["type"], m["step"], m["seq"], m.get("transient", False)) for m in sent] == [
        ("snapshot", 1, 2, False), ("progress", 3, 3, False), ("snapshot", 4, 3, True),
        ("progress", 5, 4, False), ("snapshot", 4, 5, False), ("run_finished", 6, 6, False)]
    assert stored_seqs(store) == [1, 2, 3, 4, 5, 6]


def test_a_full_disk_publishes_nothing_unstored_and_ends_the_history(store):
    insert_run(store)
    b = RecordingBroadcaster(store)
    failures: list[str] = []

    async def scenario():
        log = EventLog(RID, store, b, last_seq=1, on_failure=failures.append)
        log.add(progress(1))
        assert log.write()
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages}")     # the disk is full now
        log.add(progress(2))
        log.add({"type": "snapshot", "kernels": "x" * 200_000})
        log.add_transient({"type": "snapshot", "kernels": "y"})
        log.update({"latest": {"step": 2}})
        ok = log.write()
        store.conn.execute("PRAGMA max_page_count = 1000000")      # room again
        log.add(progress(3))
        later = log.write()
        return log, ok, later
    log, ok, later = asyncio.run(scenario())
    assert ok is False and later is False
    assert len(failures) == 1 and "full" in failures[0] and log.failed == failures[0]
    assert [m.seq for m in b.seen] == [2]                 # nothing of the failed write
    assert stored_seqs(store) == [1, 2] and log.last_seq == 2 and log.held == 0
    assert row(store)["last_seq"] == 2 and row(store)["latest"] is None


# ------------------------------------------------------------------ through the lifecycle


@pytest.fixture
def manager(tmp_path, store):
    async def make():
        m = RunManager(Settings(data_dir=tmp_path, max_workers=1), store,
                       RecordingBroadcaster(store))
        m.pool.max_workers = 0          # no worker process: the tests play the worker
        config, summary = validate_config(get_preset("mlp"))
        run = m.create(config, summary, "mlp")
        m._set_status(run, "running")
        return m, run
    return make


def event(e: dict) -> dict:
    return {"k": "event", "e": e, "ts": 1.0}


def test_a_state_change_is_stored_in_the_same_write_right_after_its_cause(manager, store):
    async def scenario():
        m, run = await manager()
        with m.broadcaster.subscription(run.id) as sub:
            m._on_messages(run.id, [event(progress(1))])
            m._on_messages(run.id, [event(progress(2)), event({"type": "paused", "step": 2})])
            paused = (run.status, store.appends[-1])
            m._on_messages(run.id, [event({"type": "resumed", "step": 2}),
                                    event({"type": "snapshot", "step": 3}),
                                    event({"type": "run_finished", "status": "completed",
                                           "step": 3, "test_accuracy": 0.5})])
            frames = []
            while await sub.ready():
                frames += sub.take(FRAME_EVENTS, 1 << 30)
        return run, paused, frames, sub.close_code
    run, (status, last), frames, code = asyncio.run(scenario())
    assert status == "paused"
    (fields, rows), = last.values()
    kinds = [r[1] for r in rows]
    assert kinds[-2:] == ["paused", "status"] and '"paused"' in rows[-1][2]
    assert fields["status"] == "paused" and rows[-1][0] == rows[-2][0] + 1
    (fields, rows), = store.appends[-1].values()
    assert [r[1] for r in rows] == ["snapshot", "run_finished", "status"]
    assert fields["status"] == "completed" and fields["final"]["test_accuracy"] == 0.5
    assert run.status == "completed"
    assert run.last_seq == rows[-1][0] == row(store, run.id)["last_seq"]
    assert stored_seqs(store, run.id) == list(range(1, run.last_seq + 1))
    assert [m.seq for m in frames] == list(range(3, run.last_seq + 1)) and code == 1000


def test_a_storage_failure_fails_the_run_and_tells_live_clients(manager, store):
    async def scenario():
        m, run = await manager()
        with m.broadcaster.subscription(run.id) as sub:
            m._on_messages(run.id, [event(progress(1))])
            before = run.last_seq
            pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
            store.conn.execute(f"PRAGMA max_page_count = {pages}")
            m._on_messages(run.id, [event({"type": "paused", "step": 1, "pad": "x" * 100_000})])
            got = []
            while await sub.ready():
                got += sub.take(FRAME_EVENTS, 1 << 30)
        return run, before, got, sub.close_code
    run, before, got, code = asyncio.run(scenario())
    assert run.status == "failed" and "could not store its events" in run.error
    assert "full" in run.error and run.last_seq == before
    assert [(m.kind, m.transient) for m in got][-1] == ("status", True) and code == 1011
    assert all(m.kind != "paused" for m in got)           # never stored, never streamed
    assert stored_seqs(store, run.id) == list(range(1, before + 1))


# ------------------------------------------------------------------ through the run stream


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_a_stream_client_behind_the_tail_catches_up_from_the_store(tmp_path):
    """The app in-process (no worker): one write of 300 events into an 8-message tail leaves
    the client behind; it must get every stored event exactly once (it lost 292 before)."""
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from server.main import create_app

    app = create_app(Settings(data_dir=tmp_path, max_workers=1, client_queue_size=8))
    with TestClient(app, base_url="http://localhost") as client:
        m = app.state.manager
        m.pool.max_workers = 0          # the test plays the worker
        config, summary = validate_config(get_preset("mlp"))
        run = client.portal.call(m.create, config, summary, "mlp")
        client.portal.call(m._set_status, run, "running")
        got, code = [], None
        with client.websocket_connect(f"ws://localhost/ws/runs/{run.id}") as ws:
            got += json.loads(ws.receive_text())          # the replay: queued, running
            client.portal.call(m._on_messages, run.id,
                               [event(progress(s)) for s in range(1, 301)])
            client.portal.call(m._on_messages, run.id, [event(
                {"type": "run_finished", "status": "completed", "step": 300})])
            try:
                for _ in range(1000):
                    got += json.loads(ws.receive_text())
            except WebSocketDisconnect as e:
                code = e.code
        last = run.last_seq
    assert code == 1000 and last == 2 + 300 + 2
    assert [e["seq"] for e in got] == list(range(1, last + 1))
    assert [e["step"] for e in got if e["type"] == "progress"] == list(range(1, 301))
