"""A run's notes and tags: set over HTTP in any state, stored in SQLite (kept across a restart),
on the runs feed, and bad input named by field."""
import asyncio
import json

import pytest
import websockets

from .conftest import SHORT, TERMINAL, create, wait_status


def test_notes_and_tags_are_kept_across_a_restart_and_sent_on_the_feed(make_server):
    s = make_server().start()
    with s.client() as api:
        run = create(api, SHORT)
        rid = run["id"]
        assert run["notes"] is None and run["tags"] is None

        async def feed_update():
            async with websockets.connect(f"{s.ws_url}/ws/runs") as ws:
                await asyncio.sleep(0.2)
                r = await asyncio.to_thread(api.post, f"/api/runs/{rid}/notes",
                                            json={"notes": "lr 0.05 diverges at step 40\nretry",
                                                  "tags": ["baseline", " lr-sweep "]})
                assert r.status_code == 200, r.text
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if m["run"]["id"] == rid and m["run"]["tags"]:
                        return m
        m = asyncio.run(feed_update())
        assert m["type"] == "run_updated" and m["run"]["tags"] == ["baseline", "lr-sweep"]
        assert m["run"]["notes"] == "lr 0.05 diverges at step 40\nretry"
        wait_status(api, rid, TERMINAL)
        r = api.post(f"/api/runs/{rid}/notes", json={"tags": []})     # tags only; notes stay
        assert r.status_code == 200 and r.json()["tags"] == []
        assert r.json()["notes"].startswith("lr 0.05")
    s.stop()
    s2 = make_server(data_dir=s.data_dir).start()
    with s2.client() as api:
        got = api.get(f"/api/runs/{rid}").json()
        assert got["notes"] == "lr 0.05 diverges at step 40\nretry" and got["tags"] == []


@pytest.mark.parametrize("body, loc", [
    ({}, []),
    ({"notes": "x" * 5001}, ["notes"]),
    ({"tags": ["ok", ""]}, ["tags", 1]),
    ({"tags": ["a" * 41]}, ["tags", 0]),
    ({"tags": ["bell\x07"]}, ["tags", 0]),
    ({"tags": [f"t{i}" for i in range(21)]}, ["tags"]),
    ({"tags": ["Same", "same"]}, []),
    ({"notes": 3}, ["notes"]),
    ({"color": "red"}, ["color"]),
])
def test_bad_notes_name_the_field(server, api, body, loc):
    run = create(api, SHORT)
    r = api.post(f"/api/runs/{run['id']}/notes", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc, r.json()
    assert api.get(f"/api/runs/{run['id']}").json()["notes"] is None     # nothing saved
    assert api.post("/api/runs/r-0000000000/notes", json={"notes": "x"}).status_code == 404
