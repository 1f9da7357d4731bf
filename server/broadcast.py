"""Fan-out of stream messages to websocket clients, each with its own bounded queue.

Publishing never blocks and never waits on a client (training never waits on a
browser). When a client's queue is full, its oldest queued ``progress`` message
is dropped to make room (a newer one supersedes it); if nothing in the queue can
be dropped, the client is marked closed and its socket is closed with 1013 so
it can reconnect with ``after_seq``. As in encode/broadcaster, a subscription is
a context manager that always unregisters.

A client's task takes what is queued in batches (``take``), so a websocket sends one
frame per batch rather than one per message; ``gather`` lets it wait for more messages,
woken early only when ``flush_at`` are pending (not by every message).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Iterator

#: message kinds a slow client may miss (a later one of the same kind supersedes them)
COALESCABLE = frozenset({"progress", "run_latest"})
#: a run stream's frames: at most one per FRAME_SECONDS per client (sooner once FRAME_EVENTS
#: are pending), each with at most FRAME_EVENTS events and about FRAME_CHARS of JSON text
FRAME_SECONDS = 0.025
FRAME_EVENTS = 256
FRAME_CHARS = 1 << 20


@dataclass(slots=True)
class Message:
    seq: int | None   # the event's sequence number (None on the runs feed)
    kind: str         # event type, decides whether it may be coalesced
    text: str         # the exact JSON text sent
    transient: bool = False   # streamed but not stored (its seq is the newest stored one)


class Subscriber:
    """One client's queue. ``get`` returns None once the subscriber is closed and drained."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        # woken before the queue is full, so a reading client never has messages coalesced
        self.flush_at = max(1, min(FRAME_EVENTS, maxsize // 2))
        self.queue: deque[Message] = deque()
        self._wakeup = asyncio.Event()       # something is queued (or closed)
        self._full = asyncio.Event()         # flush_at are queued (or closed)
        self.closed: str | None = None       # why it was closed
        self.close_code = 1000
        self.coalesced = 0

    def put(self, msg: Message) -> None:
        if self.closed:
            return
        q = self.queue
        if len(q) >= self.maxsize:
            for i, old in enumerate(q):
                if old.kind in COALESCABLE:
                    del q[i]
                    self.coalesced += 1
                    break
            else:
                self.close("queue full: the client is not reading fast enough", 1013)
                return
        q.append(msg)
        self._wakeup.set()
        if len(q) >= self.flush_at:
            self._full.set()

    def close(self, reason: str, code: int = 1013, drain: bool = False) -> None:
        """Stop taking messages. ``drain``: deliver what is queued first (a normal end)."""
        if not self.closed:
            self.closed, self.close_code = reason, code
            if not drain:
                self.queue.clear()
            self._wakeup.set()
            self._full.set()

    async def get(self) -> Message | None:
        while not self.queue:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self.queue.popleft()

    async def ready(self) -> bool:
        """Wait until something is queued. False once the subscriber is closed and drained."""
        while not self.queue:
            if self.closed:
                return False
            self._wakeup.clear()
            await self._wakeup.wait()
        return True

    async def gather(self, seconds: float) -> None:
        """Let messages accumulate for up to ``seconds``; return early once ``flush_at`` are
        queued or the subscriber is closed."""
        if seconds <= 0 or self.closed or len(self.queue) >= self.flush_at:
            return
        self._full.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._full.wait()
        except TimeoutError:
            pass

    def take(self, max_count: int, max_chars: int) -> list[Message]:
        """Pop the oldest messages: at most ``max_count``, and no more text than ``max_chars``
        in all (but always at least one, however long)."""
        q, out, size = self.queue, [], 0
        while q and len(out) < max_count:
            n = len(q[0].text)
            if out and size + n > max_chars:
                break
            out.append(q.popleft())
            size += n
        return out


class Broadcaster:
    """Channels of subscribers; ``publish`` is synchronous and O(subscribers)."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.channels: dict[str, set[Subscriber]] = {}
        self.dropped = 0        # clients closed for falling behind or being stuck

    @contextlib.contextmanager
    def subscription(self, channel: str) -> Iterator[Subscriber]:
        sub = Subscriber(self.maxsize)
        self.channels.setdefault(channel, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self.channels.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.channels[channel]

    def publish(self, channel: str, msg: Message) -> None:
        for sub in tuple(self.channels.get(channel, ())):
            was_open = not sub.closed
            sub.put(msg)
            if was_open and sub.closed:
                self.dropped += 1

    def close_channel(self, channel: str, reason: str, code: int = 1000,
                      drain: bool = True) -> None:
        for sub in tuple(self.channels.get(channel, ())):
            sub.close(reason, code, drain)

    def close_all(self, reason: str, code: int = 1001) -> None:
        for channel in tuple(self.channels):
            self.close_channel(channel, reason, code, drain=False)

    @property
    def clients(self) -> int:
        return sum(len(s) for s in self.channels.values())
