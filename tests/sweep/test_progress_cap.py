"""A remote trial's progress events at a capped rate (``ProgressCap``): the cap holds, and no
evaluation, pause or end is ever dropped; once through a real Dask ``LocalCluster``."""
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from server.sweep.dask_runner import ProgressCap

from .test_cli import ROOT, TINY


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_the_cap_holds_and_every_other_event_passes_in_order():
    clock = Clock()
    cap = ProgressCap(10, clock=clock)
    sent = []
    # 3 s of training: a step every 2 ms (500 progress/s), an eval every 100 steps, a pause
    for step in range(1, 1501):
        clock.t = step * 0.002
        sent += cap.offer(SimpleNamespace(type="progress", step=step))
        if step % 100 == 0:
            sent += cap.offer(SimpleNamespace(type="eval", step=step))
        if step == 777:
            sent += cap.offer(SimpleNamespace(type="paused", step=step))
    sent += cap.offer(SimpleNamespace(type="run_finished", step=1500))
    kinds = [e.type for e in sent]
    assert kinds.count("eval") == 15 and kinds.count("paused") == 1
    assert kinds[-1] == "run_finished"
    progress = [e for e in sent if e.type == "progress"]
    timed = 3.0 * 10 + 1                     # the rate over 3 s, plus the first one
    assert len(progress) <= timed + 16       # + one held step flushed before each other event
    assert len(progress) >= timed - 1        # and it does send at the rate
    # the curve reaches the step of each eval, the pause and the end before they arrive
    last = None
    for e in sent:
        if e.type == "progress":
            last = e.step
        else:
            assert last == e.step
    assert [e.step for e in progress] == sorted({e.step for e in progress})   # in order


def test_rate_zero_sends_every_event():
    cap = ProgressCap(0)
    events = [SimpleNamespace(type="progress", step=i) for i in range(100)]
    assert [e for ev in events for e in cap.offer(ev)] == events


def test_a_capped_sweep_on_a_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    from server.sweep.core import Sweep
    from server.sweep.dask_runner import Connection, DaskRunner
    from server.sweep.spec import validate_sweep
    # 7 steps an epoch, 300 epochs (about 2 s), an evaluation every 150 steps: 14
    spec = validate_sweep({"base": {"preset": "digits8-mlp", "overrides": {
        **TINY["overrides"], "epochs": 300, "eval_every": 150}}, "method": "grid",
        "parameters": {"train.lr": {"values": [0.01]}}})
    seen = []
    with Connection("local", n_workers=1) as conn:
        runner = DaskRunner(Sweep(spec), client=conn.client, progress_rate=5,
                            on_run_event=lambda n, e: seen.append(e))
        summary = runner.run()
    (trial,) = summary["trials"]
    assert trial["status"] == "completed" and trial["steps"] == 2100
    kinds = [e["type"] for e in seen]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("eval") == 14
    progress = [e["step"] for e in seen if e["type"] == "progress"]
    assert progress[-1] == 2100 and len(progress) < 300    # not 2,100: one per 0.2 s + flushes
    for i, e in enumerate(seen):
        if e["type"] == "eval":
            assert seen[i - 1]["type"] == "progress" and seen[i - 1]["step"] == e["step"]


def test_a_negative_progress_rate_exits_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "server", "sweep", "--preset", "lenet-search",
                        "--progress-rate", "-1"], capture_output=True, text=True, timeout=60,
                       cwd=str(ROOT))
    assert p.returncode == 2 and "--progress-rate" in p.stderr and p.stdout == ""
    p = subprocess.run([sys.executable, "-m", "server", "sweep", "--preset", "lenet-search"],
                       capture_output=True, text=True, timeout=60, cwd=str(ROOT),
                       env={**os.environ, "BACKPROP_DASK_PROGRESS_RATE": "fast"})
    assert p.returncode == 2 and "BACKPROP_DASK_PROGRESS_RATE" in p.stderr and "'fast'" in p.stderr
