"""The broadcaster in-process: what one wake-up delivers, big backlogs, lagging, closing."""
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


def test_a_burst_bigger_than_the_tail_is_never_thinned_silently():
    """Finding 2: the server stored 1,000 events in one callback (it had fallen behind), and
    every client, reading or not, lost the same oldest progress events without a word. Now
    nothing is dropped: the client is told it lags, and where to resume (its position)."""
    async def scenario():
        b = Broadcaster(64)
        with b.subscription("r") as sub:
            for seq in range(1, 1001):              # one callback: no client can run between
                b.publish("r", progress(seq))
            assert await sub.ready()
            lagging, behind = sub.lagging, sub.take(FRAME_EVENTS, 1 << 20)
            sub.resync()                            # (the run stream read 1..1000 from the store)
            b.publish("r", progress(1001))
            assert await sub.ready()
            after = [m.seq for m in sub.take(FRAME_EVENTS, 1 << 20)]
        return lagging, behind, after, b.dropped
    assert run(scenario()) == (True, None, [1001], 0)


def test_a_client_that_does_not_read_lags_alone_and_loses_nothing_it_can_take():
    async def scenario():
        b = Broadcaster(8)
        with b.subscription("r") as slow, b.subscription("r") as fast:
            got = []
            for seq in range(1, 21):
                b.publish("r", progress(seq))
                if await fast.ready():
                    got += [m.seq for m in fast.take(FRAME_EVENTS, 1 << 20)]
            kept = [m.seq for m in b.channels["r"].tail]
            return got, kept, slow.lagging, fast.lagging, slow.closed, b.dropped
    got, kept, slow_lags, fast_lags, closed, dropped = run(scenario())
    assert got == list(range(1, 21)) and not fast_lags
    assert kept == list(range(13, 21))          # one shared tail of the newest 8
    assert slow_lags and closed is None and dropped == 0    # it catches up from the store


def test_a_lagging_runs_feed_client_is_closed_with_1013():
    """The runs feed has no store to catch up from: a client that fell off the tail is
    closed (it reconnects and re-reads the list)."""
    async def scenario():
        b = Broadcaster(8)
        with b.subscription("runs") as sub:
            for i in range(20):
                b.publish("runs", Message(None, "run_updated", str(i)))
            return await sub.get(), sub.closed, sub.close_code, b.dropped
    msg, closed, code, dropped = run(scenario())
    assert msg is None and closed and code == 1013 and dropped == 1


def test_publishing_is_shared_not_copied_per_client():
    async def scenario():
        b = Broadcaster(512)
        subs = [b.subscription("r") for _ in range(50)]
        entered = [s.__enter__() for s in subs]
        for seq in range(1, 101):
            b.publish("r", progress(seq))
        held = len(b.channels["r"].tail)
        firsts = set()
        for sub in entered:
            assert await sub.ready()
            firsts.add(id(sub.take(FRAME_EVENTS, 1 << 20)[0]))
        for s in subs:
            s.__exit__(None, None, None)
        return held, len(firsts), b.channels
    assert run(scenario()) == (100, 1, {})      # one copy, one message object, freed at the end


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
