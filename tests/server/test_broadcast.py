"""The broadcaster in-process: what one wake-up delivers, big backlogs, coalescing, closing."""
from __future__ import annotations

import asyncio

from server.broadcast import FRAME_EVENTS, Broadcaster, Message


def progress(seq: int) -> Message:
    return Message(seq, "progress", f'{{"seq":{seq}}}')


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_one_wake_up_delivers_everything_published_before_it():
    async def scenario():
        b = Broadcaster(512)
        with b.subscription("r") as sub:
            for seq in range(1, 11):          # one callback's worth (the manager stores a batch)
                b.publish("r", progress(seq))
            assert await sub.ready()
            first = [m.seq for m in sub.take(FRAME_EVENTS, 1 << 20)]
            b.publish("r", progress(11))      # later: delivered by a later wake-up
            assert await sub.ready()
            second = [m.seq for m in sub.take(FRAME_EVENTS, 1 << 20)]
        return first, second
    assert run(scenario()) == (list(range(1, 11)), [11])


def test_a_backlog_bigger_than_a_frame_flows_without_more_events():
    async def scenario(n, per_frame):
        b = Broadcaster(512)
        frames = []
        with b.subscription("r") as sub:
            for seq in range(1, n + 1):
                b.publish("r", progress(seq))
            await asyncio.sleep(b.interval("r") * 4)   # the wake-ups due have happened
            while sum(map(len, frames)) < n:      # nothing else is published
                assert await sub.ready()
                frames.append([m.seq for m in sub.take(per_frame, 1 << 20)])
        return frames
    frames = run(scenario(300, FRAME_EVENTS))     # over flush_at (256)
    assert [len(f) for f in frames] == [256, 44] and sum(frames, []) == list(range(1, 301))
    frames = run(scenario(150, 100))              # a frame cut short (as by its size cap)
    assert [len(f) for f in frames] == [100, 50] and sum(frames, []) == list(range(1, 151))


def test_frames_respect_the_size_cap_but_carry_a_big_message_alone():
    async def scenario():
        b = Broadcaster(512)
        with b.subscription("r") as sub:
            b.publish("r", Message(1, "snapshot", "x" * 3000))
            for seq in range(2, 6):
                b.publish("r", progress(seq))
            assert await sub.ready()
            return [[m.seq for m in sub.take(100, 1000)] for _ in range(2)]
    assert run(scenario()) == [[1], [2, 3, 4, 5]]


def test_a_client_that_does_not_read_has_progress_coalesced_then_is_dropped():
    async def scenario():
        b = Broadcaster(8)
        with b.subscription("r") as slow, b.subscription("r") as fast:
            got = []
            for seq in range(1, 21):
                b.publish("r", progress(seq))
                if await fast.ready():
                    got += [m.seq for m in fast.take(FRAME_EVENTS, 1 << 20)]
            kept, coalesced = [m.seq for m in slow.queue], slow.coalesced
            for seq in range(21, 30):   # evals push the 8 progress out, then it is dropped
                b.publish("r", Message(seq, "eval", "{}"))
                if await fast.ready():
                    got += [m.seq for m in fast.take(FRAME_EVENTS, 1 << 20)]
            return got, kept, coalesced, slow.closed, slow.close_code, b.dropped, fast.closed
    got, kept, coalesced, closed, code, dropped, fast_closed = run(scenario())
    assert got == list(range(1, 30)) and fast_closed is None
    assert kept == list(range(13, 21)) and coalesced == 12       # the newest 8 progress kept
    assert closed and code == 1013 and dropped == 1


def test_close_with_drain_delivers_what_is_queued_then_ends():
    async def scenario():
        b = Broadcaster(512)
        with b.subscription("r") as sub:
            for seq in range(1, 4):
                b.publish("r", progress(seq))
            b.close_channel("r", "run completed", 1000)
            out = []
            while await sub.ready():
                out += [m.seq for m in sub.take(FRAME_EVENTS, 1 << 20)]
            return out, sub.close_code
    assert run(scenario()) == ([1, 2, 3], 1000)
