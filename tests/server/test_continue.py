"""Continue and fork over HTTP, against a real server: a run stopped, a worker killed -9 or a
server killed -9 goes on from its checkpoint and its curve equals the uninterrupted run's,
bitwise (float64, one thread per worker); a fork starts from the parent's checkpoint at K."""
import os
import signal

import numpy as np
import pytest

from server import checkpoints as ck

from .conftest import (TERMINAL, assert_contiguous, create, fold, history, wait_for,
                       wait_status)

#: ~300 lenet steps in float64: a few seconds, long enough to interrupt halfway
EXACT = {"preset": "lenet", "overrides": {
    "iterations": 300, "train_limit": 512, "test_limit": 100, "eval_every": 50,
    "batch_size": 32, "lr": 0.01, "dtype": "float64", "seed": 11, "eval_train_size": 0}}


def step_of(api, rid):
    return (api.get(f"/api/runs/{rid}").json()["latest"] or {}).get("step", 0)


def worker_pids(api):
    return api.get("/api/health").json()["worker_pids"]


@pytest.fixture(scope="module")
def reference(server, api):
    run = create(api, EXACT)
    assert wait_status(api, run["id"], TERMINAL, timeout=120)["status"] == "completed"
    msgs = history(server, run["id"])
    return run["id"], fold(msgs)


def continue_and_compare(server, api, rid, reference):
    r = api.post(f"/api/runs/{rid}/continue")
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("queued", "running")
    done = wait_status(api, rid, TERMINAL, timeout=120)
    assert done["status"] == "completed", done["error"]
    msgs = history(server, rid)
    assert_contiguous(msgs)                        # one stream, seq numbers carry on
    kinds = [m["type"] for m in msgs]
    assert kinds.count("run_started") == 1 and kinds.count("continued") == 1
    assert fold(msgs) == reference[1]              # exact, float64
    return msgs


def test_stop_then_continue_equals_the_uninterrupted_run(server, api, reference):
    rid = create(api, EXACT)["id"]
    wait_for(lambda: step_of(api, rid) >= 60, what="training")
    api.post(f"/api/runs/{rid}/stop")
    stopped = wait_status(api, rid, TERMINAL)
    assert stopped["status"] == "stopped" and stopped["latest"]["step"] < 300
    msgs = continue_and_compare(server, api, rid, reference)
    cont = next(m for m in msgs if m["type"] == "continued")
    assert cont["step"] == stopped["latest"]["step"]   # a stop saves the state at its step


def test_kill_9_of_the_worker_then_continue(server, api, reference):
    rid = create(api, EXACT)["id"]
    wait_for(lambda: step_of(api, rid) >= 60 and api.get(f"/api/runs/{rid}").json()
             ["weights_step"], what="a checkpoint")
    pids = worker_pids(api)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    assert wait_status(api, rid, TERMINAL)["status"] == "failed"
    continue_and_compare(server, api, rid, reference)


def test_kill_9_of_the_server_then_restart_and_continue(make_server, reference):
    s = make_server().start()
    with s.client() as api:
        rid = create(api, EXACT)["id"]
        wait_for(lambda: step_of(api, rid) >= 60 and api.get(f"/api/runs/{rid}").json()
                 ["weights_step"], what="a checkpoint")
    s.kill()
    s2 = make_server(data_dir=s.data_dir).start()
    with s2.client() as api:
        wait_for(lambda: not worker_pids(api), what="no worker")
        assert api.get(f"/api/runs/{rid}").json()["status"] == "interrupted"
        continue_and_compare(s2, api, rid, reference)


def test_continue_is_refused_with_the_reason(server, api, reference):
    r = api.post(f"/api/runs/{reference[0]}/continue")
    assert r.status_code == 409 and "fork" in r.text
    rid = create(api, {**EXACT, "overrides": {**EXACT["overrides"], "iterations": 10**6}})["id"]
    wait_status(api, rid, "running")
    r = api.post(f"/api/runs/{rid}/continue")
    assert r.status_code == 409 and "running" in r.text
    api.post(f"/api/runs/{rid}/stop")
    assert api.post("/api/runs/r-0000000000/continue").status_code == 404


def test_checkpoints_through_time_and_fork(server, api, reference):
    parent = reference[0]
    listed = api.get(f"/api/runs/{parent}/checkpoints").json()
    steps = [c["step"] for c in listed["checkpoints"]]
    assert steps == [50, 100, 150, 200, 250, 300]     # one per evaluation, within the budget
    assert all(c["bytes"] > 0 and c["test_accuracy"] is not None for c in listed["checkpoints"])
    assert sum(c["best"] for c in listed["checkpoints"]) == 1
    assert listed["total_bytes"] <= listed["budget_bytes"]
    # a fork with nothing changed takes exactly the parent's next steps
    r = api.post(f"/api/runs/{parent}/fork", json={"step": 150})
    assert r.status_code == 201, r.text
    child = r.json()
    assert child["parent_id"] == parent and child["fork_step"] == 150
    assert wait_status(api, child["id"], TERMINAL, timeout=120)["status"] == "completed"
    msgs = history(server, child["id"])
    started = next(m for m in msgs if m["type"] == "run_started")
    assert started["start_step"] == 150
    prog = [m for m in msgs if m["type"] == "progress"]
    assert prog[0]["step"] == 151 and [m["loss"] for m in prog] == reference[1][150:]
    # a fork of the fork, with a lower lr
    r = api.post(f"/api/runs/{child['id']}/fork", json={"step": 200, "overrides": {"lr": 0.001}})
    assert r.status_code == 201, r.text
    grand = wait_status(api, r.json()["id"], TERMINAL, timeout=120)
    assert grand["status"] == "completed" and grand["config"]["train"]["lr"] == 0.001
    assert grand["parent_id"] == child["id"] and grand["fork_step"] == 200


@pytest.mark.parametrize("body, status, loc, words", [
    ({"step": 75}, 404, ["step"], "nearest kept is step 50"),
    ({"step": 50, "overrides": {"model": []}}, 422, ["overrides", "model"], "architecture"),
    ({"step": 50, "overrides": {"dataset": "fashion-mnist"}}, 422, ["overrides", "dataset"],
     "dataset"),
    ({"step": 50, "overrides": {"lr": -1}}, 422, ["train", "lr"], "lr"),
    ({"step": 50, "overrides": {"iterations": 20}}, 422, ["overrides", "epochs"], "no steps"),
    ({"step": -1}, 422, ["step"], ""),
    ({}, 422, ["step"], ""),
])
def test_bad_forks_name_the_field(api, reference, body, status, loc, words):
    r = api.post(f"/api/runs/{reference[0]}/fork", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc, detail
    assert words in detail[0]["msg"]


def touch(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)


def test_thinning_keeps_first_best_newest_and_spreads_the_rest(tmp_path):
    for step in range(100, 2100, 100):                # 20 checkpoints of 10 bytes
        touch(ck.path_for(tmp_path, step), 10)
    removed = ck.thin(tmp_path, budget_bytes=85, best_step=700)
    kept = [k.step for k in ck.listing(tmp_path)]
    assert len(kept) == 8 and len(removed) == 12
    assert {100, 700, 2000} <= set(kept)
    gaps = np.diff(kept)
    assert gaps.max() <= 500, kept                    # spread, not only the newest
    assert ck.thin(tmp_path, budget_bytes=85, best_step=700) == []
    assert ck.nearest(tmp_path, 740) == 700 and ck.nearest(tmp_path / "none", 5) is None
