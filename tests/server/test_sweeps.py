"""Sweeps in the server, against a real uvicorn and real websockets: a grid end to end, bad
input, stop, extend, pruning over the API, and kill -9 mid-sweep then restart."""
from __future__ import annotations

import asyncio
import copy

import pytest
import websockets

from .conftest import assert_contiguous, collect, create, wait_for, wait_status


TINY = {"preset": "digits8-mlp", "overrides": {"train_limit": 200, "test_limit": 300,
                                               "epochs": 1}}
GRID = {"name": "grid4", "base": TINY, "method": "grid", "max_parallel": 2,
        "parameters": {"train.lr": {"values": [0.05, 0.1]},
                       "train.batch_size": {"values": [32, 64]}}}


def long_base(**over) -> dict:
    """Trials that train until stopped (5,000 epochs of 4 steps; tests stop them)."""
    return {"preset": "digits8-mlp", "overrides": {"train_limit": 200, "test_limit": 100,
                                                   "epochs": 5000, "eval_every": 50, **over}}


def post(api, spec: dict) -> dict:
    r = api.post("/api/sweeps", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def wait_sweep(api, sid: str, statuses, timeout: float = 120) -> dict:
    statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)
    return wait_for(lambda: (s := api.get(f"/api/sweeps/{sid}").json())["status"] in statuses
                    and s, timeout, f"sweep {sid} to be {statuses}")


def trial(sweep: dict, number: int) -> dict:
    return next(t for t in sweep["trials"] if t["number"] == number)


# ------------------------------------------------------------------------------ end to end


def test_a_grid_of_four_trials_end_to_end(server, api):
    made = post(api, GRID)
    sid = made["id"]
    assert made["status"] == "running" and made["budget"] == 4
    assert len(made["trials"]) <= 2                # max_parallel: 2 queued or running at once
    msgs, code = asyncio.run(collect(f"{server.ws_url}/ws/sweeps/{sid}", timeout=120))
    assert code == 1000                            # closed once the sweep finished
    assert_contiguous(msgs)
    assert all(m["sweep_id"] == sid for m in msgs)
    kinds = [m["type"] for m in msgs]
    assert kinds[0] == "sweep_started" and kinds[-1] == "sweep_finished"
    for k in ("trial_queued", "trial_started", "trial_finished"):
        assert kinds.count(k) == 4, (k, kinds)
    assert kinds.count("trial_eval") >= 4 and "sweep_finished" in kinds
    running, most = set(), 0                       # never more than max_parallel at once
    for m in msgs:
        if m["type"] in ("trial_queued", "trial_started"):
            running.add(m["number"])
        elif m["type"] == "trial_finished":
            running.discard(m["number"])
        most = max(most, len(running))
    assert most == 2
    ev = next(m for m in msgs if m["type"] == "trial_eval")
    assert {"number", "eval", "step", "test_accuracy", "test_loss", "run_id"} <= set(ev)

    sweep = api.get(f"/api/sweeps/{sid}").json()
    assert sweep["status"] == "finished" and sweep["counts"] == {"completed": 4}
    assert sweep["remaining"] == 0 and sweep["spec"] == GRID
    combos = {(t["params"]["train.lr"], t["params"]["train.batch_size"]) for t in sweep["trials"]}
    assert combos == {(0.05, 32), (0.05, 64), (0.1, 32), (0.1, 64)}
    for t in sweep["trials"]:
        assert t["status"] == "completed" and t["evals"] and t["test_accuracy"] is not None
        assert t["objective"] == t["evals"][-1]["test_accuracy"]
    best = max(sweep["trials"], key=lambda t: (t["objective"], -t["number"]))
    assert sweep["best"]["number"] == best["number"]

    # every trial is an ordinary run carrying its sweep, number and values
    runs = {r["id"]: r for r in api.get("/api/runs").json()["runs"]}
    for t in sweep["trials"]:
        run = runs[t["run_id"]]
        assert (run["sweep_id"], run["trial"], run["params"]) == (sid, t["number"], t["params"])
        assert run["status"] == "completed"
        assert run["final"]["test_accuracy"] == t["test_accuracy"]
    assert sid in [s["id"] for s in api.get("/api/sweeps").json()["sweeps"]]

    # replayable: after_seq=N gives exactly the events after N
    again, _ = asyncio.run(collect(f"{server.ws_url}/ws/sweeps/{sid}?after_seq=5"))
    assert [m["seq"] for m in again] == [m["seq"] for m in msgs if m["seq"] > 5]


def _ws_status(url: str, **kw) -> int:
    async def go():
        try:
            async with websockets.connect(url, open_timeout=10, **kw):
                return 101
        except websockets.InvalidStatus as e:
            return e.response.status_code
    return asyncio.run(go())


def test_the_sweep_stream_has_the_run_streams_checks(server):
    assert _ws_status(f"{server.ws_url}/ws/sweeps/s-0123456789") == 404
    assert _ws_status(f"{server.ws_url}/ws/sweeps/nope") == 404
    assert _ws_status(f"{server.ws_url}/ws/sweeps/s-0123456789?after_seq=-1") == 422
    assert _ws_status(f"{server.ws_url}/ws/sweeps/s-0123456789",
                      origin="https://evil.example") == 403


def test_random_with_a_seed_proposes_the_same_trials(api):
    spec = {"base": TINY, "method": "random", "max_trials": 3, "max_parallel": 3, "seed": 7,
            "parameters": {"train.lr": {"min": 0.01, "max": 0.1, "log": True},
                           "train.batch_size": {"values": [16, 32, 64]}}}
    a, b = post(api, spec)["id"], post(api, spec)["id"]
    first, second = (wait_sweep(api, sid, "finished")["trials"] for sid in (a, b))
    assert [t["params"] for t in first] == [t["params"] for t in second]
    assert len({t["params"]["train.lr"] for t in first}) == 3


def test_every_sweep_event_is_documented_and_emitted():
    """API.md's list of the sweep stream's events is the service's, and each is emitted."""
    import re
    from pathlib import Path

    from server.sweeps import SWEEP_EVENTS
    root = Path(__file__).resolve().parents[2]
    doc = (root / "server/API.md").read_text()
    m = re.search(r"The sweep stream's events:(.*?)`WS /ws/sweeps`:", doc, re.S)
    assert m, "no list of the sweep stream's events in server/API.md"
    listed = set(re.findall(r"^`(\w+)`", m.group(1), re.M))
    assert listed == set(SWEEP_EVENTS)
    code = (root / "server/sweeps.py").read_text() + (root / "server/sweep/core.py").read_text()
    for kind in SWEEP_EVENTS:
        assert f'"type": "{kind}"' in code, kind


# ------------------------------------------------------------------------------ bad input


def _spec(**change) -> dict:
    spec = copy.deepcopy(GRID)
    spec.update(change)
    return spec


BIG = {p: {"values": vals} for p, vals in {
    "train.lr": [0.01 * i for i in range(1, 11)],
    "train.momentum": [0.05 * i for i in range(10)],
    "train.batch_size": list(range(16, 26)),
    "train.epochs": list(range(1, 11)),
    "dataset.train_limit": list(range(100, 110))}.items()}

BAD = {
    "unknown top field": (_spec(bogus=1), ["bogus"]),
    "unknown field": (_spec(parameters={"train.nope": {"values": [1]}}),
                      ["parameters", "train.nope"]),
    "unknown layer index": (_spec(parameters={"model.9.units": {"values": [10]}}),
                            ["parameters", "model.9.units"]),
    "empty values": (_spec(parameters={"train.lr": {"values": []}}),
                     ["parameters", "train.lr", "values"]),
    "min > max": (_spec(method="random", max_trials=2,
                        parameters={"train.lr": {"min": 0.1, "max": 0.01}}),
                  ["parameters", "train.lr", "min"]),
    "log with min <= 0": (_spec(method="random", max_trials=2,
                                parameters={"train.lr": {"min": 0, "max": 0.1, "log": True}}),
                          ["parameters", "train.lr", "min"]),
    "grid over 10,000": (_spec(parameters=BIG), ["parameters"]),
    "max_parallel 0": (_spec(max_parallel=0), ["max_parallel"]),
    "unknown objective": (_spec(objective={"metric": "f1"}), ["objective", "metric"]),
    "when names an unknown parameter": (
        _spec(parameters={"train.lr": {"values": [0.1], "when": {"train.momentum": 0.9}}}),
        ["parameters", "train.lr", "when", "train.momentum"]),
    "a series": ({"name": "s", "series": [GRID]}, ["series"]),
    "a server path": (_spec(base={"preset": "mlp", "overrides": {"path": "/etc/passwd"}}),
                      ["base", "overrides", "path"]),
    "not an object": ([1, 2], []),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_specs_get_a_422_naming_the_field(api, case):
    spec, loc = BAD[case]
    before = len(api.get("/api/sweeps").json()["sweeps"])
    r = api.post("/api/sweeps", json=spec)
    assert r.status_code == 422, r.text
    locs = [e["loc"] for e in r.json()["detail"]]
    assert loc in locs, locs
    assert len(api.get("/api/sweeps").json()["sweeps"]) == before


@pytest.mark.parametrize("method,path", [("get", ""), ("post", "/stop"), ("post", "/resume"),
                                         ("delete", "")])
def test_an_unknown_sweep_is_a_404(api, method, path):
    for sid in ("s-0123456789", "r-0123456789", "x" * 300):
        r = getattr(api, method)(f"/api/sweeps/{sid}{path}")
        assert r.status_code == 404, r.text
        assert r.json()["detail"][0]["loc"] == ["path", "sweep_id"]
    r = api.post("/api/sweeps/s-0123456789/extend", json={"trials": 1})
    assert r.status_code == 404


def test_sweep_presets_are_listed(api):
    presets = {p["name"]: p for p in api.get("/api/sweep-presets").json()["presets"]}
    assert {"student-report", "lenet-search"} <= set(presets)
    assert len(presets["student-report"]["sweeps"]) == 4
    assert presets["lenet-search"]["spec"]["method"] == "tpe"
    refs = presets["student-report"]["references"]      # the report's 14 runs, for the page
    assert len(refs) == 14 and {r["sweep"] for r in refs} == {
        p["name"] for p in presets["student-report"]["sweeps"]}
    assert presets["lenet-search"]["references"] == []


# ------------------------------------------------------------------------------ stop, extend


def test_stop_cancels_queued_trials_and_stops_running_ones_then_extend(server, api):
    # an ordinary run holds one of the two workers: one trial runs, the other waits queued
    blocker = create(api, {"preset": "digits8-mlp", "overrides": long_base()["overrides"]})
    wait_status(api, blocker["id"], "running")
    spec = {"name": "stop-me", "base": long_base(), "method": "random", "max_trials": 5,
            "max_parallel": 2, "seed": 3,
            "parameters": {"train.lr": {"min": 0.01, "max": 0.1, "log": True}}}
    sid = post(api, spec)["id"]
    sweep = wait_for(lambda: (s := api.get(f"/api/sweeps/{sid}").json())["counts"] == {
        "running": 1, "queued": 1} and s, 60, "one trial running, one queued")
    running = next(t for t in sweep["trials"] if t["status"] == "running")
    wait_for(lambda: api.get(f"/api/runs/{running['run_id']}").json()["latest"], 60,
             "the running trial to train")
    r = api.post(f"/api/sweeps/{sid}/stop")
    assert r.status_code == 200, r.text
    sweep = wait_sweep(api, sid, "stopped")
    assert len(sweep["trials"]) == 2 and sweep["remaining"] == 3
    by_status = {t["status"]: t for t in sweep["trials"]}
    assert set(by_status) == {"stopped"}
    for t in sweep["trials"]:
        run = api.get(f"/api/runs/{t['run_id']}").json()
        assert run["status"] == "stopped"
        assert "the sweep was stopped" in run["error"]
    steps = [api.get(f"/api/runs/{t['run_id']}").json()["latest"] for t in sweep["trials"]]
    assert sum(s is None for s in steps) == 1      # the queued one never trained
    api.post(f"/api/runs/{blocker['id']}/stop")

    # extend: bad narrowing is refused, naming the field; nothing changes
    for body, loc in (({"trials": 1, "parameters": {"train.lr": {"min": 0.01, "max": 0.5}}},
                       ["parameters", "train.lr", "max"]),
                      ({"trials": 1, "parameters": {"train.momentum": {"values": [0.9]}}},
                       ["parameters", "train.momentum"]),
                      ({"trials": -1}, ["trials"]), ({"trials": 20_000}, ["trials"]),
                      ({}, []), ({"trials": 0}, []),
                      ({"trials": 1, "bogus": 1}, ["bogus"])):
        r = api.post(f"/api/sweeps/{sid}/extend", json=body)
        assert r.status_code == 422, (body, r.text)
        assert loc in [e["loc"] for e in r.json()["detail"]], r.text
    assert api.get(f"/api/sweeps/{sid}").json()["budget"] == 5

    # extend: one more trial in a narrower range; the stopped sweep runs again
    r = api.post(f"/api/sweeps/{sid}/extend",
                 json={"trials": 1, "parameters": {"train.lr": {"min": 0.02, "max": 0.03}}})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "running" and r.json()["budget"] == 6
    assert r.json()["spec"]["parameters"]["train.lr"] == {"min": 0.02, "max": 0.03, "log": True}
    sweep = wait_for(lambda: len((s := api.get(f"/api/sweeps/{sid}").json())["trials"]) > 2
                     and s, 30, "a new trial")
    new = [t for t in sweep["trials"] if t["number"] > 2]
    assert 0.02 <= new[0]["params"]["train.lr"] <= 0.03
    assert [t["status"] for t in sweep["trials"][:2]] == ["stopped", "stopped"]   # not re-run
    api.post(f"/api/sweeps/{sid}/stop")
    wait_sweep(api, sid, "stopped")


# ------------------------------------------------------------------------------ pruning


def test_pruning_stops_a_trial_early_and_says_why(server, api):
    # trial 1 learns; trial 2 (lr 1e-6) cannot, and is below the median at its first eval
    spec = {"name": "prune", "method": "grid", "max_parallel": 1,
            "base": {"preset": "digits8-mlp", "overrides": {"train_limit": 256, "test_limit": 300,
                                                            "epochs": 40, "batch_size": 32}},
            "parameters": {"train.lr": {"values": [0.1, 1e-6]}},
            "early_stopping": {"type": "median", "n_startup_trials": 1, "evals": 4}}
    sid = post(api, spec)["id"]
    msgs, _ = asyncio.run(collect(f"{server.ws_url}/ws/sweeps/{sid}", timeout=180))
    sweep = api.get(f"/api/sweeps/{sid}").json()
    first, second = trial(sweep, 1), trial(sweep, 2)
    assert first["status"] == "completed" and second["status"] == "pruned", sweep["trials"]
    why = second["pruned_reason"]
    assert why["rule"] == "median" and why["eval"] == 1 and why["compared"] == 1
    assert why["value"] < why["threshold"] == pytest.approx(first["evals"][0]["test_accuracy"])
    assert "median" in why["message"]
    total = 40 * 256 // 32
    assert second["steps"] < total and why["step"] < total
    run = api.get(f"/api/runs/{second['run_id']}").json()
    assert run["status"] == "stopped" and run["error"].startswith("pruned by sweep prune")
    assert run["final"]["step"] < total
    pruning = [m for m in msgs if m["type"] == "trial_pruning"]
    assert [m["number"] for m in pruning] == [2] and pruning[0]["reason"] == why


# ------------------------------------------------------------------------------ restart


def test_kill_9_mid_sweep_keeps_finished_trials_and_reruns_none(make_server):
    s = make_server(max_workers=1).start()
    api = s.client()
    spec = {"name": "crash", "base": long_base(), "method": "grid", "max_parallel": 1,
            "parameters": {"train.epochs": {"values": [2, 5000, 3]}}}
    sid = post(api, spec)["id"]
    sweep = wait_for(lambda: (x := api.get(f"/api/sweeps/{sid}").json())["counts"].get(
        "running") and x["counts"].get("completed") == 1 and x, 60, "trial 2 running")
    t2 = trial(sweep, 2)
    wait_for(lambda: api.get(f"/api/runs/{t2['run_id']}").json()["latest"], 60, "trial 2 steps")
    done = trial(sweep, 1)
    api.close()
    s.kill()

    s2 = make_server(max_workers=1, data_dir=s.data_dir).start()
    api = s2.client()
    sweep = api.get(f"/api/sweeps/{sid}").json()
    assert sweep["status"] == "interrupted" and "resume" in sweep["error"]
    assert trial(sweep, 1) == done                         # kept as it was
    assert trial(sweep, 2)["status"] == "interrupted" and trial(sweep, 2)["reason"]
    assert [t["number"] for t in sweep["trials"]] == [1, 2] and sweep["remaining"] == 1
    runs = {r["id"]: r for r in api.get("/api/runs").json()["runs"]}
    assert set(runs) == {done["run_id"], t2["run_id"]}     # nothing re-run on its own
    assert runs[done["run_id"]]["status"] == "completed"
    assert runs[t2["run_id"]]["status"] == "interrupted"

    # resume: trial 2 re-queued as trial 3 with the same values; trial 1 still not re-run
    r = api.post(f"/api/sweeps/{sid}/resume")
    assert r.status_code == 200 and r.json()["status"] == "running", r.text
    sweep = r.json()
    assert trial(sweep, 2)["requeued_as"] == 3
    assert trial(sweep, 3)["requeue_of"] == 2
    assert trial(sweep, 3)["params"] == t2["params"]
    assert trial(sweep, 1) == done

    # delete: the sweep and its trial runs
    assert api.delete(f"/api/sweeps/{sid}").status_code == 204
    assert api.get(f"/api/sweeps/{sid}").status_code == 404
    left = [r for r in api.get("/api/runs").json()["runs"] if r["sweep_id"] == sid]
    assert left == []
    api.close()


def test_a_clean_shutdown_mid_sweep_interrupts_it(make_server):
    import signal
    s = make_server(max_workers=2).start()
    api = s.client()
    sid = post(api, {"name": "term", "base": long_base(), "method": "grid", "max_parallel": 2,
                     "parameters": {"train.lr": {"values": [0.01, 0.02, 0.03]}}})["id"]
    wait_for(lambda: api.get(f"/api/sweeps/{sid}").json()["counts"] == {"running": 2}, 60,
             "two trials running")
    api.close()
    assert s.stop(signal.SIGTERM, timeout=60) in (0, -signal.SIGTERM)   # uvicorn re-raises it
    s2 = make_server(max_workers=2, data_dir=s.data_dir).start()
    with s2.client() as api:
        sweep = api.get(f"/api/sweeps/{sid}").json()
        assert sweep["status"] == "interrupted" and "resume" in sweep["error"]
        assert sweep["counts"] == {"interrupted": 2} and sweep["remaining"] == 1
        assert all("shut down" in t["reason"] for t in sweep["trials"])
        assert all(r["status"] == "interrupted" for r in api.get("/api/runs").json()["runs"])


# ------------------------------------------------------------------------------ migration


V1_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, preset TEXT, status TEXT NOT NULL,
    error TEXT, config TEXT NOT NULL, summary TEXT NOT NULL, created_at REAL NOT NULL,
    started_at REAL, finished_at REAL, last_seq INTEGER NOT NULL DEFAULT 0, latest TEXT,
    final TEXT, best_test_accuracy REAL, weights_step INTEGER);
CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
    json TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
PRAGMA user_version=1;
"""


def test_a_data_folder_from_before_sweeps_is_migrated(make_server, tmp_path):
    import json
    import sqlite3
    data = tmp_path / "old"
    data.mkdir()
    conn = sqlite3.connect(data / "backprop-lab.sqlite3")
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT INTO runs (id, name, status, config, summary, created_at, last_seq) "
                 "VALUES ('r-0123456789', 'old', 'completed', ?, '{}', 1.0, 1)",
                 (json.dumps({"model": [], "train": {}, "dataset": {}}),))
    conn.execute("INSERT INTO events VALUES ('r-0123456789', 1, 'status', "
                 "'{\"type\":\"status\",\"status\":\"completed\",\"seq\":1}')")
    conn.commit()
    conn.close()
    s = make_server(data_dir=data).start()
    with s.client() as api:
        runs = api.get("/api/runs").json()["runs"]
        assert [(r["id"], r["sweep_id"], r["trial"], r["params"]) for r in runs] == [
            ("r-0123456789", None, None, None)]
        assert api.get("/api/sweeps").json() == {"sweeps": []}
        sid = post(api, {**GRID, "parameters": {"train.lr": {"values": [0.1]}}})["id"]
        wait_sweep(api, sid, "finished")


# ------------------------------------------------------------------------------ the rebuild


def test_a_rebuilt_study_keeps_asha_rungs_and_grid_points_tried():
    """In process: what a restart or an extend does to the study (ServerSearch.restore)."""
    from server.sweep.core import Trial
    from server.sweep.spec import validate_sweep
    from server.sweeps import ServerSearch
    norm = validate_sweep({"base": TINY, "method": "random", "max_trials": 6,
                           "parameters": {"train.lr": {"min": 0.01, "max": 0.1}},
                           "early_stopping": {"type": "asha", "evals": 4}})
    first, done = ServerSearch(norm, 6), []
    for value in (0.1, 0.2, 0.3):
        p = first.ask()
        assert first.report(p.number, 1, value) is None
        first.tell(p.number, "completed", value)
        done.append(Trial(p.number, p.params, status="completed", objective=value,
                          evals=[{"eval": 1, "test_accuracy": value}]))
    again = ServerSearch(norm, 6)
    again.restore(done, set(), {t.number: first.rungs(t.number) for t in done})
    assert again.remaining == 3
    p = again.ask()
    assert p.number == 4
    why = again.report(4, 1, 0.05)           # below the three restored trials' rung
    assert why is not None and why["compared"] == 4 and why["threshold"] == pytest.approx(0.3)

    grid = validate_sweep(GRID)
    search = ServerSearch(grid, 4)
    search.restore([Trial(1, {"train.lr": 0.05, "train.batch_size": 32}, status="completed",
                          objective=0.5)], set())
    proposed = [search.ask().params for _ in range(3)]
    assert search.ask() is None
    assert {"train.lr": 0.05, "train.batch_size": 32} not in proposed and len(proposed) == 3


def test_start_from_base_is_trial_one_and_not_rerun_after_a_rebuild():
    from server.sweep.core import Trial
    from server.sweep.spec import validate_sweep
    from server.sweeps import ServerSearch
    norm = validate_sweep({"base": TINY, "method": "tpe", "max_trials": 4, "start_from_base": True,
                           "parameters": {"train.lr": {"min": 0.001, "max": 0.1, "log": True},
                                          "train.batch_size": {"values": [32, 64]}}})
    base = {"train.lr": 0.01, "train.batch_size": 32}          # digits8-mlp's own
    first = ServerSearch(norm, 4)
    p = first.ask()
    assert (p.number, p.params) == (1, base)
    again = ServerSearch(norm, 4)
    again.restore([Trial(1, p.params, status="completed", objective=0.9)], set())
    assert [again.ask().params for _ in range(3)].count(base) == 0
    assert again.ask() is None
