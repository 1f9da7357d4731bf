"""Exact resume: a run stopped at step K, saved and continued in a new Trainer takes exactly
the steps the uninterrupted run takes (bitwise in float64, fixed thread count)."""
import numpy as np
import pytest

from engine import Control, Trainer, apply_overrides, get_preset


def config(preset, **over):
    base = {"train_limit": 300, "test_limit": 100, "eval_train_size": 50, "dtype": "float64",
            "seed": 5}
    base.update(over)
    return apply_overrides(get_preset(preset), base)


def run(cfg, threads, stop_at=None, checkpoint=None, changes=None):
    """Train; stop after step ``stop_at`` (saving to ``checkpoint``); ``changes``: a live
    hyperparameter change applied after that step. Returns the events."""
    events, control = [], Control()

    def emit(e):
        events.append(e)
        if e.type == "progress" and changes and e.step == changes[0]:
            control.set_hparams(**changes[1])
        if e.type == "progress" and e.step == stop_at:
            control.stop()
    t = Trainer(cfg, emit=emit, control=control, threads=threads)
    t.run()
    if checkpoint is not None:
        t.save_checkpoint(checkpoint)
    return events


def resume(cfg, threads, checkpoint):
    events = []
    t = Trainer(cfg, emit=events.append, threads=threads)
    t.load_checkpoint(checkpoint)
    t.run()
    return events


def curve(events, kind="progress", field="loss"):
    return [(e.step, getattr(e, field)) for e in events if e.type == kind]


CASES = {
    # momentum SGD, shuffled epochs split mid-epoch, a per-epoch step schedule
    "mlp": ("mlp", {"epochs": 3, "batch_size": 64}, 1),
    # dropout in two shard threads (each replica has its own mask stream), sgd
    "grokking-cnn": ("grokking-cnn", {"epochs": 2, "batch_size": 64}, 2),
    # Adam's moments and step count, sampling with replacement
    "adam-replacement": ("mlp", {"iterations": 40, "optimizer": "adam", "lr": 0.003,
                                 "sampling": "replacement", "batch_size": 32}, 1),
    # the loss-driven schedule reads the smoothed loss, which must carry over
    "loss-schedule": ("mlp", {"epochs": 2, "batch_size": 32,
                              "schedule": {"type": "loss", "table": [[2.0, 0.05], [1.0, 0.02]]}}, 1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_stopped_and_continued_run_equals_the_uninterrupted_one(name, tmp_path):
    preset, over, threads = CASES[name]
    cfg = config(preset, **over)
    whole = run(cfg, threads)
    n = len(curve(whole))
    k = n // 2 - 1  # mid-epoch
    ck = tmp_path / "ck.npz"
    first = run(cfg, threads, stop_at=k, checkpoint=ck)
    assert [e for e in first if e.type == "run_finished"][0].status == "stopped"
    second = resume(cfg, threads, ck)
    assert second[0].type == "continued" and second[0].step == k
    assert curve(first)[:k] + curve(second) == curve(whole)     # exact, float64
    assert curve(second, field="lr") == curve(whole, field="lr")[k:]
    evals = {e.step: e.test_loss for e in first + second if e.type == "eval"}
    for e in whole:
        if e.type == "eval":
            assert evals[e.step] == e.test_loss
    done = [e for e in second if e.type == "run_finished"][0]
    assert done.status == "completed" and done.step == n
    assert done.images_seen == [e for e in whole if e.type == "run_finished"][0].images_seen


def test_a_live_change_before_the_stop_carries_over(tmp_path):
    cfg = config("mlp", epochs=2, batch_size=64)
    change = (3, {"lr": 0.02, "momentum": 0.5})
    whole = run(cfg, 1, changes=change)
    ck = tmp_path / "ck.npz"
    first = run(cfg, 1, stop_at=6, checkpoint=ck, changes=change)
    second = resume(cfg, 1, ck)
    assert curve(first)[:6] + curve(second) == curve(whole)


def test_without_loop_state_a_checkpoint_only_restores_weights(tmp_path):
    """A mutation check: the equality above fails when the data order is not restored."""
    cfg = config("mlp", epochs=2, batch_size=64)
    whole = run(cfg, 1)
    ck = tmp_path / "ck.npz"
    run(cfg, 1, stop_at=5, checkpoint=ck)
    events = []
    t = Trainer(cfg, emit=events.append, threads=1)
    t.load_checkpoint(ck)
    t.rng = np.random.default_rng(123)          # lose the data order's stream
    t.loop.perm = None
    t.run()
    assert curve(events) != curve(whole)[5:]


def fork(cfg, threads, checkpoint):
    events = []
    t = Trainer(cfg, emit=events.append, threads=threads)
    t.load_checkpoint(checkpoint, fork=True)
    t.run()
    return events


def test_a_fork_with_nothing_changed_takes_the_parents_next_steps(tmp_path):
    cfg = config("grokking-cnn", epochs=2, batch_size=64)
    whole = run(cfg, 2)
    ck = tmp_path / "ck.npz"
    run(cfg, 2, stop_at=7, checkpoint=ck)
    child = fork(cfg, 2, ck)
    assert child[0].type == "run_started" and child[0].start_step == 7
    assert curve(child) == curve(whole)[7:]
    done = [e for e in child if e.type == "run_finished"][0]
    assert done.status == "completed" and done.step == len(curve(whole))


@pytest.mark.parametrize("over", [{"lr": 0.002}, {"optimizer": "adam", "lr": 0.001},
                                  {"train_limit": 200}, {"epochs": 4}, {"seed": 9}])
def test_a_fork_with_changes_starts_from_the_parents_weights(over, tmp_path):
    cfg = config("mlp", epochs=2, batch_size=64)
    whole = run(cfg, 1)
    ck = tmp_path / "ck.npz"
    run(cfg, 1, stop_at=5, checkpoint=ck)
    child_cfg = config("mlp", **{"epochs": 2, "batch_size": 64, **over})
    child = fork(child_cfg, 1, ck)
    steps = curve(child)
    assert steps[0][0] == 6 and steps[-1][0] == child[0].total_steps
    # from the parent's weights: the first loss is near the parent's at step 6, far below ln 10
    assert abs(steps[0][1] - curve(whole)[5][1]) < 0.5 < np.log(10) - steps[0][1]
    if "lr" in over:
        assert curve(child, field="lr")[0][1] == pytest.approx(over["lr"])
    if over == {"epochs": 4}:       # the parent's order and streams carry on
        assert steps[:len(curve(whole)) - 5] == curve(whole)[5:]
