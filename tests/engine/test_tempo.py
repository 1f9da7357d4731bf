"""Tempo and Step: at most N steps per second, one step (or a few) at a time while paused,
and nothing changed about the numbers."""
import threading
import time

from engine import Control, Trainer, apply_overrides, get_preset


def cfg(**over):
    base = {"train_limit": 256, "test_limit": 64, "eval_train_size": 0, "batch_size": 32,
            "iterations": 40, "eval_every": 0}
    base.update(over)
    return apply_overrides(get_preset("mlp"), base)


def test_tempo_spaces_the_steps_and_changes_no_number():
    free = []
    Trainer(cfg(), emit=free.append).run()
    control, events = Control(), []
    control.set_tempo(50.0)
    Trainer(cfg(), emit=events.append, control=control).run()
    prog = [e for e in events if e.type == "progress"]
    assert [e.loss for e in prog] == [e.loss for e in free if e.type == "progress"]
    tempo = [e for e in events if e.type == "tempo_changed"]
    assert [(e.step, e.steps_per_second) for e in tempo] == [(0, 50.0)]
    gaps = [b.elapsed - a.elapsed for a, b in zip(prog, prog[1:])]
    assert min(gaps) >= 1 / 50 * 0.9            # never faster than the tempo
    control, events = Control(), []
    control.set_tempo(50.0)
    control.set_tempo(None)                      # back to full speed
    Trainer(cfg(), emit=events.append, control=control).run()
    assert [e.steps_per_second for e in events if e.type == "tempo_changed"] == [50.0, None]


def test_step_while_paused_takes_exactly_that_many_steps():
    control, events, seen = Control(), [], threading.Event()

    def emit(e):
        events.append(e)
        if e.type == "paused":
            seen.set()
    control.pause()
    t = Trainer(cfg(), emit=emit, control=control)
    th = threading.Thread(target=t.run)
    th.start()
    assert seen.wait(20)

    def steps():
        return [e.step for e in events if e.type == "progress"]

    def settle(n):
        deadline = time.monotonic() + 20
        while len(steps()) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)                            # and no more come
    assert steps() == []                           # started paused
    control.step()
    settle(1)
    assert steps() == [1]
    control.step(3)
    settle(4)
    assert steps() == [1, 2, 3, 4]
    control.set_hparams(lr=0.05)                   # Apply while paused
    control.step()
    settle(5)
    assert steps() == [1, 2, 3, 4, 5] and events[-1].lr == 0.05
    assert [e.type for e in events].count("paused") == 1   # a Step does not re-announce
    control.resume()
    th.join(30)
    assert steps() == list(range(1, 41))
    assert [e for e in events if e.type == "run_finished"][0].status == "completed"


def test_a_step_sent_while_the_last_one_is_taken_is_not_lost():
    """Step(3) sent as step 1 of a Step(1) ends (here: from inside its progress event, so
    before the trainer looks at its commands again) still takes its three steps. It used to
    be read while the trainer counted as running, where a Step means nothing."""
    control, events, done = Control(), [], threading.Event()

    def emit(e):
        events.append(e)
        if e.type == "progress" and e.step == 1:
            control.step(3)
        if e.type == "progress" and e.step == 4:
            done.set()
    control.pause()
    control.step()
    t = Trainer(cfg(), emit=emit, control=control)
    th = threading.Thread(target=t.run)
    th.start()
    reached = done.wait(20)
    time.sleep(0.2)
    control.stop()
    th.join(30)
    assert reached, [e.step for e in events if e.type == "progress"]
    assert [e.step for e in events if e.type == "progress"] == [1, 2, 3, 4]


def test_bad_tempo_and_step_values_are_refused():
    import pytest
    c = Control()
    for bad in (0, -1.0):
        with pytest.raises(ValueError):
            c.set_tempo(bad)
    with pytest.raises(ValueError):
        c.step(0)
