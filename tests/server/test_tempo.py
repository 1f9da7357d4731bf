"""Tempo, Step and start paused, against a real server."""
import asyncio
import time

import pytest

from .conftest import TERMINAL, collect, create, wait_for, wait_status

SLOWABLE = {"preset": "mlp", "overrides": {"iterations": 200, "train_limit": 2000,
                                           "test_limit": 100, "eval_every": 0}}


def progress_steps(server, rid, until_step):
    msgs, _ = asyncio.run(collect(f"{server.ws_url}/ws/runs/{rid}",
                                  until=lambda m: m.get("type") == "progress"
                                  and m["step"] >= until_step, timeout=60))
    return [m for m in msgs if m["type"] == "progress"]


def latest_step(api, rid):
    return (api.get(f"/api/runs/{rid}").json()["latest"] or {}).get("step", 0)


def test_start_paused_then_step_apply_and_tempo(server, api):
    run = create(api, {**SLOWABLE, "start_paused": True})
    rid = run["id"]
    wait_status(api, rid, "paused")
    time.sleep(0.5)
    assert latest_step(api, rid) == 0                  # paused before its first step
    r = api.post(f"/api/runs/{rid}/step", json={})
    assert r.status_code == 200, r.text
    wait_for(lambda: latest_step(api, rid) == 1, what="one step")
    assert api.post(f"/api/runs/{rid}/step", json={"steps": 3}).status_code == 200
    wait_for(lambda: latest_step(api, rid) == 4, what="three more")
    time.sleep(0.5)
    assert latest_step(api, rid) == 4 and api.get(f"/api/runs/{rid}").json()["status"] == "paused"
    assert api.patch(f"/api/runs/{rid}", json={"lr": 0.01}).status_code == 200   # Apply paused
    api.post(f"/api/runs/{rid}/step", json={"steps": 1})
    wait_for(lambda: latest_step(api, rid) == 5, what="a step at the new lr")
    assert api.post(f"/api/runs/{rid}/tempo", json={"steps_per_second": 20}).status_code == 200
    api.post(f"/api/runs/{rid}/resume")
    prog = progress_steps(server, rid, 25)
    assert prog[4]["lr"] == 0.01
    slow = [m for m in prog if m["step"] > 6]
    rate = (len(slow) - 1) / (slow[-1]["elapsed"] - slow[0]["elapsed"])
    assert rate <= 20 * 1.1                            # the tempo holds
    assert api.get(f"/api/runs/{rid}").json()["status"] == "running"
    assert api.post(f"/api/runs/{rid}/step", json={}).status_code == 409   # not paused
    assert api.post(f"/api/runs/{rid}/tempo", json={"steps_per_second": None}).status_code == 200
    assert wait_status(api, rid, TERMINAL)["status"] == "completed"        # full speed again
    msgs, _ = asyncio.run(collect(f"{server.ws_url}/ws/runs/{rid}"))
    tempo = [m["steps_per_second"] for m in msgs if m["type"] == "tempo_changed"]
    assert tempo == [20, None]
    assert api.post(f"/api/runs/{rid}/tempo", json={"steps_per_second": 5}).status_code == 409


@pytest.mark.parametrize("path, body, loc", [
    ("tempo", {"steps_per_second": 0}, ["steps_per_second"]),
    ("tempo", {"steps_per_second": -3}, ["steps_per_second"]),
    ("tempo", {"steps_per_second": "fast"}, ["steps_per_second"]),
    ("tempo", {}, ["steps_per_second"]),
    ("step", {"steps": 0}, ["steps"]),
    ("step", {"steps": 10**9}, ["steps"]),
    ("step", {"steps": 1, "x": 1}, ["x"]),
])
def test_bad_tempo_and_step_bodies_name_the_field(api, path, body, loc):
    rid = create(api, {**SLOWABLE, "start_paused": True})["id"]
    r = api.post(f"/api/runs/{rid}/{path}", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc
    api.post(f"/api/runs/{rid}/stop")
