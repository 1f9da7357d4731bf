"""Fan-out of stream messages to websocket clients, each with its own bounded queue.

Publishing never blocks and never waits on a client (training never waits on a
browser). When a client's queue is full, its oldest queued ``progress`` message
is dropped to make room (a newer one supersedes it); if nothing in the queue can
be dropped, the client is marked closed and its socket is closed with 1013 so
it can reconnect with ``after_seq``. As in encode/broadcaster, a subscription is
a context manager that always unregisters.

Clients are woken per channel, not per message: publishing only queues, and a channel's
clients are woken at most once per ``Broadcaster.interval`` (at once after a quiet spell),
each taking everything queued for it as one websocket frame. A frame costs the server a
send and the client a receive whatever it holds (on a 2-core machine the training worker
pays for both), so the interval grows with the channel's clients: at most
``CHANNEL_FRAMES_PER_SECOND`` frames per channel, and never more often than one per
``FRAME_SECONDS`` per client. A client whose queue reaches ``flush_at`` is woken at once,
so one that keeps up never has messages coalesced.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Iterator

#: message kinds a slow client may miss (a later one of the same kind supersedes them)
COALESCABLE = frozenset({"progress", "run_latest"})
#: a client gets at most one frame per FRAME_SECONDS, and a channel's clients together at most
#: CHANNEL_FRAMES_PER_SECOND (with 50 clients: one frame per 125 ms each)
FRAME_SECONDS = 0.025
CHANNEL_FRAMES_PER_SECOND = 400
#: a frame holds at most FRAME_EVENTS messages and about FRAME_CHARS of JSON text
FRAME_EVENTS = 256
FRAME_CHARS = 1 << 20


@dataclass(slots=True)
class Message:
    seq: int | None   # the event's sequence number (None on the runs feed)
    kind: str         # event type, decides whether it may be coalesced
    text: str         # the exact JSON text sent
    transient: bool = False   # streamed but not stored (its seq is the newest stored one)


class Subscriber:
    """One client's queue. ``ready`` waits for the channel's next wake-up."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        # woken before the queue is full, so a reading client never has messages coalesced
        self.flush_at = max(1, min(FRAME_EVENTS, maxsize // 2))
        self.queue: deque[Message] = deque()
        self._wakeup = asyncio.Event()       # the channel flushed, the queue filled, or closed
        self.closed: str | None = None       # why it was closed
        self.close_code = 1000
        self.coalesced = 0

    def put(self, msg: Message) -> None:
        """Queue without waking the client (``wake`` does), unless the queue is filling up."""
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
        if len(q) >= self.flush_at:
            self._wakeup.set()

    def wake(self) -> None:
        if self.queue:
            self._wakeup.set()

    def close(self, reason: str, code: int = 1013, drain: bool = False) -> None:
        """Stop taking messages. ``drain``: deliver what is queued first (a normal end)."""
        if not self.closed:
            self.closed, self.close_code = reason, code
            if not drain:
                self.queue.clear()
            self._wakeup.set()

    async def ready(self) -> bool:
        """Wait until the channel wakes this client with something queued. False once the
        subscriber is closed and drained (a closed one drains without waiting)."""
        while True:
            if self.closed:
                return bool(self.queue)
            if self._wakeup.is_set():
                self._wakeup.clear()
                if self.queue:
                    return True
            await self._wakeup.wait()

    async def get(self) -> Message | None:
        """The next message, one at a time (the runs feed). None once closed and drained."""
        while not self.queue:
            if not await self.ready():
                return None
        return self.queue.popleft()

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
        if q:                 # more than one frame's worth: the rest goes without waiting
            self._wakeup.set()
        return out


class Broadcaster:
    """Channels of subscribers; ``publish`` is synchronous and O(subscribers)."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.channels: dict[str, set[Subscriber]] = {}
        self.dropped = 0        # clients closed for falling behind or being stuck
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._woken_at: dict[str, float] = {}

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
                    timer = self._timers.pop(channel, None)
                    if timer is not None:
                        timer.cancel()
                    self._woken_at.pop(channel, None)

    def interval(self, channel: str) -> float:
        """Seconds between two wake-ups of a channel's clients."""
        return max(FRAME_SECONDS, len(self.channels.get(channel, ())) / CHANNEL_FRAMES_PER_SECOND)

    def publish(self, channel: str, msg: Message) -> None:
        subs = self.channels.get(channel)
        if not subs:
            return
        for sub in tuple(subs):
            was_open = not sub.closed
            sub.put(msg)
            if was_open and sub.closed:
                self.dropped += 1
        if channel not in self._timers:
            loop = asyncio.get_running_loop()
            wait = self._woken_at.get(channel, 0.0) + self.interval(channel) - loop.time()
            if wait <= 0:   # after a quiet spell: now (the clients run once this callback ends)
                self._wake(channel)
            else:
                self._timers[channel] = loop.call_later(wait, self._wake, channel)

    def _wake(self, channel: str) -> None:
        self._timers.pop(channel, None)
        subs = self.channels.get(channel)
        if subs:
            self._woken_at[channel] = asyncio.get_running_loop().time()
            for sub in subs:
                sub.wake()

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
