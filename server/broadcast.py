"""Fan-out of stream messages to websocket clients: one shared tail per channel, a cursor
per client.

Publishing appends a message to its channel's tail (the newest ``maxsize`` messages, and
at most ``TAIL_CHARS`` of text) once, whatever the number of clients; it never blocks and
never waits on a client (training never waits on a browser). Each subscriber is a position
in that tail. Nothing is ever dropped or coalesced: a client whose position falls off the
tail's start (it read too slowly, or the server fell behind and published more at once than
the tail holds) is *lagging*, and ``take`` says so (``None``); the run stream then reads
what it missed from the store, where every message with a ``seq`` was written before it was
published, and ``resync``\\s to the tail's end in the same tick (server/routes/ws.py). So
every client that reads gets every stored event exactly once, at any rate. Only the runs
feed, which has no store, closes a lagging client with 1013 (it reconnects and re-reads the
list). A client that stops reading altogether is dropped by its send deadline (ws.py).

Clients are woken per channel, not per message: a channel's clients are woken at most once
per ``Broadcaster.interval`` (at once after a quiet spell), each taking everything it has
not seen as one websocket frame. A frame costs the server a send and the client a receive
whatever it holds (on a 2-core machine the training worker pays for both), so the interval
grows with the channel's clients: at most ``CHANNEL_FRAMES_PER_SECOND`` frames per channel,
and never more often than one per ``FRAME_SECONDS`` per client. Once a frame's worth (or
half the tail) has been published since the last wake-up, the clients are woken at once.
As in encode/broadcaster, a subscription is a context manager that always unregisters.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Iterator

#: a client gets at most one frame per FRAME_SECONDS, and a channel's clients together at most
#: CHANNEL_FRAMES_PER_SECOND (with 50 clients: one frame per 125 ms each)
FRAME_SECONDS = 0.025
CHANNEL_FRAMES_PER_SECOND = 400
#: a frame holds at most FRAME_EVENTS messages and about FRAME_CHARS of JSON text
FRAME_EVENTS = 256
FRAME_CHARS = 1 << 20
#: a channel's tail keeps at most this much text (snapshots are ~100 kB each)
TAIL_CHARS = 8 << 20


@dataclass(slots=True)
class Message:
    seq: int | None   # the event's sequence number (None on the runs feed)
    kind: str         # event type
    text: str         # the exact JSON text sent
    transient: bool = False   # streamed but not stored (its seq is the newest stored one)


class _Channel:
    """The newest messages of one channel: ``tail[i]`` is message number ``base + i``."""

    __slots__ = ("subs", "tail", "base", "chars", "timer", "woken_at", "woken_end")

    def __init__(self):
        self.subs: set[Subscriber] = set()
        self.tail: deque[Message] = deque()
        self.base = 0             # number of the oldest message kept
        self.chars = 0            # text held in the tail
        self.timer: asyncio.TimerHandle | None = None
        self.woken_at = float("-inf")
        self.woken_end = 0        # `end` at the last wake-up

    @property
    def end(self) -> int:
        """Number of the next message published."""
        return self.base + len(self.tail)


class Subscriber:
    """One client's position in its channel's tail. ``ready`` waits for the next wake-up."""

    def __init__(self, channel: _Channel, broadcaster: "Broadcaster"):
        self._channel = channel
        self._broadcaster = broadcaster
        self.pos = channel.end               # the next message this client gets
        self._wakeup = asyncio.Event()       # the channel woke it, or it was closed
        self.closed: str | None = None       # why it was closed
        self.close_code = 1000
        self._stop = 0                       # once closed: the end of what it still gets

    @property
    def lagging(self) -> bool:
        """Messages it has not taken have left the tail: catch up elsewhere, then ``resync``."""
        return self.pos < self._channel.base

    @property
    def waiting(self) -> int:
        """Messages published that it has not taken."""
        return (self._stop if self.closed else self._channel.end) - self.pos

    def resync(self) -> None:
        """Continue from the tail's end (the caller has read everything before it)."""
        self.pos = max(self.pos, self._stop if self.closed else self._channel.end)

    def wake(self) -> None:
        if self.waiting > 0:
            self._wakeup.set()

    def close(self, reason: str, code: int = 1013, drain: bool = False) -> None:
        """Stop taking messages. ``drain``: what is published so far is still delivered (a
        normal end)."""
        if not self.closed:
            self.closed, self.close_code = reason, code
            self._stop = self._channel.end if drain else self.pos
            self._wakeup.set()

    async def ready(self) -> bool:
        """Wait until the channel wakes this client with something to take (or lagging).
        False once it is closed and has taken everything it still gets."""
        while True:
            if self.closed:
                return self.waiting > 0
            if self._wakeup.is_set():
                self._wakeup.clear()
                if self.waiting > 0:
                    return True
            await self._wakeup.wait()

    def take(self, max_count: int, max_chars: int) -> list[Message] | None:
        """The oldest messages not taken: at most ``max_count``, and no more text than
        ``max_chars`` in all (but always at least one, however long). None if lagging."""
        ch = self._channel
        if self.pos < ch.base:
            return None
        stop = min(self.pos + max_count, self._stop if self.closed else ch.end)
        out, size = [], 0
        for msg in itertools.islice(ch.tail, self.pos - ch.base, stop - ch.base):
            n = len(msg.text)
            if out and size + n > max_chars:
                break
            out.append(msg)
            size += n
        self.pos += len(out)
        if self.waiting > 0:       # more than one frame's worth: the rest goes without waiting
            self._wakeup.set()
        return out

    async def get(self) -> Message | None:
        """The next message, one at a time (the runs feed, which has no store to catch up
        from: a lagging client is closed with 1013). None once closed and drained."""
        while True:
            if self.lagging:
                if not self.closed:
                    self._broadcaster.dropped += 1
                self.close("the client is not reading fast enough", 1013)
                return None
            if self.waiting > 0:
                msg = self._channel.tail[self.pos - self._channel.base]
                self.pos += 1
                return msg
            if not await self.ready():
                return None


class Broadcaster:
    """Channels of subscribers; ``publish`` is synchronous and O(1) in the subscribers
    (a wake-up, at most ``CHANNEL_FRAMES_PER_SECOND`` a second, is O(subscribers))."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize     # messages kept per channel
        self.flush_at = max(1, min(FRAME_EVENTS, maxsize // 2))
        self.channels: dict[str, _Channel] = {}
        self.dropped = 0        # clients closed for falling behind or being stuck

    @contextlib.contextmanager
    def subscription(self, channel: str) -> Iterator[Subscriber]:
        ch = self.channels.get(channel)
        if ch is None:
            ch = self.channels[channel] = _Channel()
        sub = Subscriber(ch, self)
        ch.subs.add(sub)
        try:
            yield sub
        finally:
            ch.subs.discard(sub)
            if not ch.subs and self.channels.get(channel) is ch:
                del self.channels[channel]
                if ch.timer is not None:
                    ch.timer.cancel()

    def interval(self, channel: str) -> float:
        """Seconds between two wake-ups of a channel's clients."""
        ch = self.channels.get(channel)
        return max(FRAME_SECONDS, (len(ch.subs) if ch else 0) / CHANNEL_FRAMES_PER_SECOND)

    def publish(self, channel: str, msg: Message) -> None:
        ch = self.channels.get(channel)
        if ch is None:          # nobody listens: a later subscriber starts after this anyway
            return
        ch.tail.append(msg)
        ch.chars += len(msg.text)
        while len(ch.tail) > self.maxsize or (ch.chars > TAIL_CHARS and len(ch.tail) > 1):
            ch.chars -= len(ch.tail.popleft().text)
            ch.base += 1
        if ch.end - ch.woken_end >= self.flush_at:
            self._wake(ch)      # a frame's worth is waiting: no need to wait for the pace
        elif ch.timer is None:
            loop = asyncio.get_running_loop()
            wait = ch.woken_at + self.interval(channel) - loop.time()
            if wait <= 0:   # after a quiet spell: now (the clients run once this callback ends)
                self._wake(ch)
            else:
                ch.timer = loop.call_later(wait, self._wake, ch)

    def _wake(self, ch: _Channel) -> None:
        if ch.timer is not None:
            ch.timer.cancel()
            ch.timer = None
        ch.woken_at = asyncio.get_running_loop().time()
        ch.woken_end = ch.end
        for sub in ch.subs:
            sub.wake()

    def close_channel(self, channel: str, reason: str, code: int = 1000,
                      drain: bool = True) -> None:
        ch = self.channels.get(channel)
        for sub in tuple(ch.subs if ch else ()):
            sub.close(reason, code, drain)

    def close_all(self, reason: str, code: int = 1001) -> None:
        for channel in tuple(self.channels):
            self.close_channel(channel, reason, code, drain=False)

    @property
    def clients(self) -> int:
        return sum(len(ch.subs) for ch in self.channels.values())
