"""docs/reliability.md 20-22: Origin, Host, token."""
from __future__ import annotations

import asyncio
import re

import httpx
import websockets

from .conftest import SHORT, TERMINAL, Server, create, wait_status


async def ws_status(url: str, **kw) -> int:
    try:
        async with websockets.connect(url, open_timeout=20, **kw):
            return 101
    except websockets.InvalidStatus as e:
        return e.response.status_code


def test_websocket_origin(server, api):
    run = create(api, SHORT)
    wait_status(api, run["id"], TERMINAL)
    url = f"{server.ws_url}/ws/runs/{run['id']}"
    assert asyncio.run(ws_status(url, origin="https://evil.example")) == 403
    assert asyncio.run(ws_status(f"{server.ws_url}/ws/runs",
                                 origin="http://127.0.0.1.evil.example")) == 403
    assert asyncio.run(ws_status(url, origin=f"http://127.0.0.1:{server.port + 1}")) == 403
    assert asyncio.run(ws_status(url, origin=f"http://127.0.0.1:{server.port}")) == 101
    assert asyncio.run(ws_status(url)) == 101          # not a browser: no Origin


def test_cross_site_http_writes_are_refused(server, api):
    r = api.post("/api/runs", json=SHORT, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["detail"][0]["loc"] == ["header", "origin"]
    r = api.get("/api/runs", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200                     # reads carry no CORS headers: nothing leaks
    assert "access-control-allow-origin" not in r.headers
    r = api.post("/api/models/validate", json={"model": [{"type": "flatten"}]},
                 headers={"Origin": f"http://127.0.0.1:{server.port}"})
    assert r.status_code == 200


def test_host_header(server):
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example"):
        r = httpx.get(f"{server.url}/api/runs", headers={"Host": host})
        assert r.status_code == 400, host
        assert r.json()["detail"][0]["loc"] == ["header", "host"]
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost"):
        assert httpx.get(f"{server.url}/api/runs", headers={"Host": host}).status_code == 200
    status = asyncio.run(ws_status(f"{server.ws_url}/ws/runs",
                                   additional_headers={"Host": "evil.example"}))
    assert status == 400


def test_non_loopback_bind_generates_and_requires_a_token(make_server):
    # 0.0.0.0 listens on every interface; all test traffic still goes to 127.0.0.1
    s: Server = make_server(host="0.0.0.0").start(wait=False)
    token = None
    for _ in range(600):
        m = re.search(r"\?token=([A-Za-z0-9_\-]+)", s.output())
        if m:
            token = m.group(1)
            break
        asyncio.run(asyncio.sleep(0.05))
    assert token, s.output()
    s.token = token
    assert s.wait_ready()
    url = s.url
    assert httpx.get(f"{url}/api/runs").status_code == 401
    assert httpx.get(f"{url}/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{url}/api/runs?token=wrong").status_code == 401
    assert httpx.get(f"{url}/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert httpx.get(f"{url}/api/runs?token={token}").status_code == 200
    assert httpx.get(f"{url}/").status_code == 200           # the page itself holds no data
    assert httpx.get(f"{url}/openapi.json").status_code == 200
    ws = f"{s.ws_url}/ws/runs"
    assert asyncio.run(ws_status(ws)) == 401
    assert asyncio.run(ws_status(f"{ws}?token=wrong")) == 401
    assert asyncio.run(ws_status(f"{ws}?token={token}")) == 101
    s.stop()
    assert s.output().count(token) == 1          # printed once at start; never in a log line
    assert "token=***" in s.output()


def test_given_token_never_appears_in_logs(make_server):
    token = "s3cret-" + "t" * 24
    s: Server = make_server(args=["--token", token])
    s.token = token
    s.start()
    url = s.url
    with s.client() as api:
        run = create(api, SHORT)
        wait_status(api, run["id"], TERMINAL)
    assert httpx.get(f"{url}/api/runs?token={token}").status_code == 200
    assert httpx.get(f"{url}/api/runs?token={token}x").status_code == 401
    assert asyncio.run(ws_status(f"{s.ws_url}/ws/runs/{run['id']}?token={token}")) == 101
    assert asyncio.run(ws_status(f"{s.ws_url}/ws/runs/{run['id']}")) == 401
    s.stop()
    out = s.output()
    assert token not in out and "token=***" in out
