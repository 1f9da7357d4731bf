"""Websockets: one run's (or sweep's) event stream with replay, and the feeds of all runs
(and sweeps).

``/ws/runs/{id}?after_seq=N`` replays stored events with ``seq > N`` in chunks, then
reads the last chunk and subscribes in the same tick of the event loop (no await
in between). Events are stored and broadcast on that same thread, so nothing can
fall between the replay and the live stream, and live messages with
``seq <= cursor`` are skipped: no gap, no duplicate. A client that falls behind the
broadcaster's tail (it reads slowly, or the server published a large batch at once) does
the same again from its cursor: it reads what it missed from the store and rejoins the
tail, so every client that reads gets every stored event once, however fast the run.
Its frames are JSON arrays of events (many per frame: one websocket message per event
cost the server, and the worker training beside it, more than the events themselves).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from ..broadcast import FRAME_CHARS, FRAME_EVENTS
from ..errors import error_body
from ..manager import RUNS_CHANNEL, TERMINAL, RunManager, is_run_id
from ..sweeps import SWEEP_DONE, SWEEPS_CHANNEL, is_sweep_id

router = APIRouter()
log = logging.getLogger("backprop_lab.ws")
REPLAY_CHUNK = 2 * FRAME_EVENTS   # stored rows read at a time


class _Gone(Exception):
    """The client left, or was dropped for being stuck."""


async def _deny(ws: WebSocket, status: int, loc: list, msg: str) -> None:
    await ws.send_denial_response(JSONResponse(error_body([{"loc": loc, "msg": msg}]), status))


class _Client:
    """Sends with a deadline and watches the receive side (disconnect, binary frames)."""

    def __init__(self, ws: WebSocket, manager: RunManager):
        self.ws = ws
        self.manager = manager
        self.stuck = manager.settings.client_stuck_seconds
        self.close_code: int | None = None
        self.close_reason = ""
        self.sub = None
        self.cursor = 0                  # the newest seq sent (run streams)
        self.watcher: asyncio.Task | None = None

    async def start(self) -> None:
        await self.ws.accept()
        self.watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    self._end(None, "client left")
                    return
                if msg.get("bytes") is not None:
                    self._end(1003, "binary frames are not accepted")
                    return
                # text from the client is ignored: commands go over HTTP
        except (WebSocketDisconnect, RuntimeError):
            self._end(None, "client left")

    def _end(self, code: int | None, reason: str) -> None:
        if self.close_reason:
            return
        self.close_code, self.close_reason = code, reason
        if self.sub is not None:
            self.sub.close(reason, code or 1000)

    async def send(self, text: str) -> None:
        if self.close_reason:
            raise _Gone
        try:
            async with asyncio.timeout(self.stuck):      # no task per message, unlike wait_for
                await self.ws.send_text(text)
        except TimeoutError:
            self.manager.broadcaster.dropped += 1
            log.info("websocket client dropped: stuck for %.0f s", self.stuck)
            self._end(None, "stuck")       # no close frame: the socket cannot take one
            raise _Gone from None
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._end(None, "client left")
            raise _Gone from None

    async def finish(self, code: int, reason: str) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        if self.close_code is None and self.close_reason:
            return           # the client left or is stuck: nothing can be sent
        code = self.close_code or code
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code, (self.close_reason or reason)[:120]), 2)


def parse_seq(raw: str) -> int | None:
    """``raw`` as a seq, or None. ASCII digits only: ``str.isdigit`` and ``int`` also take
    other scripts' digits (``"\u0663"`` is 3 to ``int``; ``"\u00b2"`` passes ``isdigit`` and
    then fails ``int``); 18 digits keep it within SQLite's 64-bit integers."""
    if not (0 < len(raw) <= 18 and raw.isascii() and raw.isdigit()):
        return None
    return int(raw)


def frame(texts: list[str]) -> str:
    """One websocket frame: a JSON array of events (each already JSON text), oldest first."""
    return "[" + ",".join(texts) + "]"


def chunks(rows: list[tuple[int, str]]):
    """Stored ``(seq, text)`` rows in frames of at most FRAME_EVENTS / about FRAME_CHARS."""
    out: list[tuple[int, str]] = []
    size = 0
    for row in rows:
        if out and (len(out) >= FRAME_EVENTS or size + len(row[1]) > FRAME_CHARS):
            yield out
            out, size = [], 0
        out.append(row)
        size += len(row[1])
    if out:
        yield out


@router.websocket("/ws/runs/{run_id}")
async def run_stream(ws: WebSocket, run_id: str):
    """Frames are JSON arrays of events (server/API.md). Replayed rows go out as they are read;
    live ones as the broadcaster wakes this client: everything queued since the last frame, at
    most ~40 frames a second (fewer with many clients) however fast the run emits."""
    manager: RunManager = ws.app.state.manager
    after = await _after_seq(ws)
    if after is None:
        return
    run = manager.runs.get(run_id) if is_run_id(run_id) else None
    if run is None:
        return await _deny(ws, 404, ["path", "run_id"], f"run {run_id[:40]!r} not found")
    await _stream(ws, manager, run.id, after, "run finished",
                  lambda cursor: manager.store.events_after(run.id, cursor, REPLAY_CHUNK),
                  lambda: run.id not in manager.runs,
                  lambda: run.status in TERMINAL)


@router.websocket("/ws/sweeps/{sweep_id}")
async def sweep_stream(ws: WebSocket, sweep_id: str):
    """A sweep's events, as a run's: the same frames, replay with ``after_seq``, and close
    once the sweep has ended (finished, stopped, failed) and everything is sent."""
    manager: RunManager = ws.app.state.manager
    sweeps = ws.app.state.sweeps
    after = await _after_seq(ws)
    if after is None:
        return
    st = sweeps.sweeps.get(sweep_id) if is_sweep_id(sweep_id) else None
    if st is None:
        return await _deny(ws, 404, ["path", "sweep_id"], f"sweep {sweep_id[:40]!r} not found")
    await _stream(ws, manager, st.id, after, "sweep ended",
                  lambda cursor: manager.store.sweep_events_after(st.id, cursor, REPLAY_CHUNK),
                  lambda: sweeps.sweeps.get(st.id) is not st,
                  lambda: st.status in SWEEP_DONE)


async def _after_seq(ws: WebSocket) -> int | None:
    raw = ws.query_params.get("after_seq", "0")
    after = parse_seq(raw)
    if after is None:
        await _deny(ws, 422, ["query", "after_seq"],
                    "after_seq must be a non-negative integer of at most 18 ASCII "
                    f"digits, got {raw[:40]!r}")
    return after


async def _stream(ws: WebSocket, manager: RunManager, channel: str, after: int, ended: str,
                  read, gone, finished_now) -> None:
    """Replay ``read(cursor)`` (stored ``(seq, text)`` rows after the cursor), then follow the
    broadcaster's ``channel``; close when ``gone()`` or ``finished_now()`` after the replay."""
    client = _Client(ws, manager)
    await client.start()
    code, reason = 1000, ended
    with contextlib.ExitStack() as stack:
        try:
            client.cursor, sub = after, None
            while True:
                # stored events after the cursor, then the live tail: at first, and again
                # whenever this client falls behind the tail (broadcast.py)
                while True:
                    rows = read(client.cursor)
                    if len(rows) < REPLAY_CHUNK or gone():
                        # no await between this read and joining the live tail
                        if sub is None:
                            sub = client.sub = stack.enter_context(
                                manager.broadcaster.subscription(channel))
                        else:
                            sub.resync()
                        finished = finished_now() or gone()
                        break
                    await _send_rows(client, rows)
                await _send_rows(client, rows)
                if finished:
                    if sub.closed:          # e.g. the run failed to store its events (1011)
                        code, reason = sub.close_code, sub.closed
                    break
                if not await _send_live(client, sub):
                    code, reason = sub.close_code, sub.closed or ""
                    break
        except _Gone:
            pass
        await client.finish(code, reason)


async def _send_rows(client: _Client, rows: list[tuple[int, str]]) -> None:
    """Send stored ``(seq, text)`` rows in frames, oldest first."""
    for part in chunks(rows):
        await client.send(frame([text for _, text in part]))
        client.cursor = part[-1][0]


async def _send_live(client: _Client, sub) -> bool:
    """Send what the broadcaster wakes this client with (stored events newer than its cursor,
    and transient ones). True when the client fell behind the tail (the caller catches up
    from the store), False when the subscription ended."""
    while await sub.ready():             # the channel's next wake-up (broadcast.py)
        msgs = sub.take(FRAME_EVENTS, FRAME_CHARS)
        if msgs is None:
            return True
        texts = []
        for msg in msgs:
            if msg.transient:
                texts.append(msg.text)
            elif msg.seq > client.cursor:
                texts.append(msg.text)
                client.cursor = msg.seq
        if texts:
            await client.send(frame(texts))
    return False


@router.websocket("/ws/runs")
async def runs_feed(ws: WebSocket):
    """``{"type": "run_created" | "run_updated" | "run_deleted", "run": Run}`` for every run."""
    manager: RunManager = ws.app.state.manager
    client = _Client(ws, manager)
    await client.start()
    code, reason = 1001, "server shutting down"
    with manager.broadcaster.subscription(RUNS_CHANNEL) as sub:
        client.sub = sub
        try:
            while True:
                msg = await sub.get()
                if msg is None:
                    code, reason = sub.close_code, sub.closed or ""
                    break
                await client.send(msg.text)
        except _Gone:
            pass
    await client.finish(code, reason)


@router.websocket("/ws/sweeps")
async def sweeps_feed(ws: WebSocket):
    """``{"type": "sweep_updated", "sweep": summary}`` and ``{"type": "sweep_deleted",
    "sweep": {"id"}}`` for every sweep."""
    manager: RunManager = ws.app.state.manager
    client = _Client(ws, manager)
    await client.start()
    code, reason = 1001, "server shutting down"
    with manager.broadcaster.subscription(SWEEPS_CHANNEL) as sub:
        client.sub = sub
        try:
            while True:
                msg = await sub.get()
                if msg is None:
                    code, reason = sub.close_code, sub.closed or ""
                    break
                await client.send(msg.text)
        except _Gone:
            pass
    await client.finish(code, reason)
