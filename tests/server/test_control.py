"""Commands over HTTP: queueing, pause/resume/stop/PATCH as state changes and events, delete."""
from __future__ import annotations

import asyncio

from .conftest import (Server, assert_contiguous, collect, create, long_run, stored, wait_for,
                       wait_status)


def test_more_runs_than_workers_are_queued_then_started(make_server):
    s = make_server(max_workers=1).start()
    with s.client() as api:
        first = create(api, long_run())
        second = create(api, long_run())
        wait_status(api, first["id"], "running")
        assert api.get(f"/api/runs/{second['id']}").json()["status"] == "queued"
        assert api.get("/api/health").json()["queued"] == 1
        api.post(f"/api/runs/{first['id']}/stop")
        wait_status(api, first["id"], "stopped")
        wait_status(api, second["id"], "running")      # the slot went to the queued run
        api.post(f"/api/runs/{second['id']}/stop")
        done = wait_status(api, second["id"], "stopped")
        msgs, _ = asyncio.run(collect(f"{s.ws_url}/ws/runs/{second['id']}"))
        states = [m["status"] for m in msgs if m["type"] == "status"]
        assert states == ["queued", "running", "stopped"]
        assert done["started_at"] > first["created_at"]


def test_pause_resume_patch_stop_change_state_and_appear_as_events(server, api):
    run = create(api, long_run())
    rid = run["id"]
    wait_status(api, rid, "running")
    wait_for(lambda: (api.get(f"/api/runs/{rid}").json()["latest"] or {}).get("step", 0) >= 3,
             what="a few steps")
    r = api.post(f"/api/runs/{rid}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused"
    assert api.post(f"/api/runs/{rid}/pause").status_code == 200    # pausing twice is harmless
    step = api.get(f"/api/runs/{rid}").json()["latest"]["step"]
    r = api.patch(f"/api/runs/{rid}", json={"lr": 0.005, "momentum": 0.5})
    assert r.status_code == 200, r.text
    r = api.post(f"/api/runs/{rid}/resume")
    assert r.status_code == 200 and r.json()["status"] == "running"
    wait_for(lambda: api.get(f"/api/runs/{rid}").json()["latest"]["step"] > step + 2,
             what="training after resume")
    r = api.post(f"/api/runs/{rid}/stop")
    assert r.status_code == 200 and r.json()["status"] == "stopped"
    again = api.post(f"/api/runs/{rid}/stop")                       # stopping twice: harmless
    assert again.status_code == 200 and again.json()["status"] == "stopped"
    assert api.post(f"/api/runs/{rid}/resume").status_code == 409
    assert api.patch(f"/api/runs/{rid}", json={"lr": 0.1}).status_code == 409

    msgs, code = asyncio.run(collect(f"{server.ws_url}/ws/runs/{rid}"))
    assert code == 1000
    assert_contiguous(msgs)
    kinds = [m["type"] for m in stored(msgs)]
    for a, b in [("paused", "hparams_changed"), ("hparams_changed", "resumed"),
                 ("resumed", "run_finished")]:
        assert kinds.index(a) < kinds.index(b), kinds
    changed = next(m for m in msgs if m["type"] == "hparams_changed")
    assert changed["changes"] == {"lr": 0.005, "momentum": 0.5}
    assert changed["previous"]["lr"] == 0.01
    states = [m["status"] for m in msgs if m["type"] == "status"]
    assert states == ["queued", "running", "paused", "running", "stopped"]
    after = [m for m in msgs if m["type"] == "progress" and m["step"] > changed["step"]]
    assert after and all(p["lr"] == 0.005 for p in after)


def test_patch_is_checked_by_the_engine_rules(server, api):
    run = create(api, long_run())
    rid = run["id"]
    wait_status(api, rid, "running")
    for body, field in [({"lr": -1}, "lr"), ({"momentum": 2.0}, "momentum"),
                        ({"weight_decay": "x"}, "weight_decay"), ({"epochs": 3}, "epochs")]:
        r = api.patch(f"/api/runs/{rid}", json=body)
        assert r.status_code == 422, (body, r.text)
        assert any(field in str(d["loc"]) + d["msg"] for d in r.json()["detail"]), r.text
    r = api.patch(f"/api/runs/{rid}", content=b'{"lr": NaN}',
                  headers={"content-type": "application/json"})
    assert r.status_code == 422 and "lr" in r.text
    api.post(f"/api/runs/{rid}/stop")
    wait_status(api, rid, "stopped")


def test_stop_a_queued_run_and_delete(make_server):
    s: Server = make_server(max_workers=1).start()
    with s.client() as api:
        a = create(api, long_run())
        b = create(api, long_run())
        r = api.post(f"/api/runs/{b['id']}/stop")
        assert r.json()["status"] == "stopped" and "before it started" in r.json()["error"]
        wait_status(api, a["id"], "running")
        wait_for(lambda: api.get(f"/api/runs/{a['id']}").json()["weights_step"], what="weights")
        assert (s.data_dir / "runs" / a["id"] / "checkpoint.npz").is_file()
        assert api.delete(f"/api/runs/{a['id']}").status_code == 204     # stops it first
        assert api.get(f"/api/runs/{a['id']}").status_code == 404
        assert not (s.data_dir / "runs" / a["id"]).exists()
        assert api.delete(f"/api/runs/{a['id']}").status_code == 404
        ids = [r["id"] for r in api.get("/api/runs").json()["runs"]]
        assert ids == [b["id"]]
        wait_for(lambda: api.get("/api/health").json()["workers"] == 0, what="worker gone")


def test_runs_feed_reports_creation_state_changes_and_deletion(server, api):
    async def scenario():
        import websockets, json
        async with websockets.connect(f"{server.ws_url}/ws/runs", max_size=None) as ws:
            run = await asyncio.to_thread(create, api, {"preset": "mlp", "overrides": {
                "epochs": 1, "train_limit": 1000, "test_limit": 200}})
            seen = []
            async def read_until(pred):
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if m["run"]["id"] == run["id"]:
                        seen.append(m)
                        if pred(m):
                            return
            await read_until(lambda m: m["run"]["status"] == "completed")
            await asyncio.to_thread(api.delete, f"/api/runs/{run['id']}")
            await read_until(lambda m: m["type"] == "run_deleted")
            return seen
    seen = asyncio.run(scenario())
    assert seen[0]["type"] == "run_created"
    statuses = [m["run"]["status"] for m in seen if m["type"] == "run_updated"]
    assert "running" in statuses and "completed" in statuses
    assert seen[-1]["type"] == "run_deleted"
