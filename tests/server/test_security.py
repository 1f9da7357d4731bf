"""docs/reliability.md 20-22: Origin, Host, token."""
from __future__ import annotations

import asyncio
import re

import httpx
import pytest
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


# A Host header is host[:port] (a name, an IPv4 address or a bracketed IPv6 one; a numeric
# port): anything else is refused, however much of it looks like an allowed name.
TRICKY_HOSTS = ["localhost:1@evil.example", "localhost@evil.example", "localhost:80:80",
                "localhost:", "localhost:http", "localhost:99999", "localhost:-1", "localhost:+80",
                "localhost/evil.example", "localhost#x", "localhost?x",
                "localhost\\evil", "[::1]evil", "[::1]:80@evil.example", "[::1", "::1", "::1:80",
                "[localhost]", "[::1]:", "127.0.0.1:80.evil", "user@localhost", "localhost%00",
                "localhost,evil.example", "localhost evil.example", ""]


@pytest.mark.parametrize("host", TRICKY_HOSTS)
def test_tricky_host_headers_are_refused(server, host):
    r = httpx.get(f"{server.url}/api/runs", headers={"Host": host})
    assert r.status_code == 400, (host, r.status_code)
    assert r.json()["detail"][0]["loc"] == ["header", "host"]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8000", "127.0.0.1", "127.0.0.1:1",
                                  "[::1]", "[::1]:65535", "localhost:0"])
def test_plain_loopback_hosts_pass(server, host):
    assert httpx.get(f"{server.url}/api/runs", headers={"Host": host}).status_code == 200


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


def test_a_token_in_the_url_leaves_one_redacted_access_line(make_server):
    """uvicorn's access formatter unpacks five arguments: the redaction must keep them (it once
    set ``args = ()`` and every ``?token=`` request wrote a traceback instead of its line)."""
    token = "url-" + "k" * 28
    s: Server = make_server(host="0.0.0.0", args=["--token", token])
    s.token = token
    s.start()
    with s.client() as api:
        run = create(api, SHORT)
        wait_status(api, run["id"], TERMINAL)
    assert httpx.get(f"{s.url}/?token={token}").status_code == 200     # the printed address
    r = httpx.get(f"{s.url}/api/runs/{run['id']}/weights?token={token}")   # the page's download
    assert r.status_code == 200 and r.content[:2] == b"PK"
    s.stop()
    out = s.output()
    assert token not in out
    assert "Traceback" not in out and "Logging error" not in out, out[-3000:]
    lines = [ln for ln in out.splitlines() if "token=***" in ln]
    page = [ln for ln in lines if '"GET /?token=*** HTTP/1.1" 200' in ln]
    weights = [ln for ln in lines
               if f'"GET /api/runs/{run["id"]}/weights?token=*** HTTP/1.1" 200' in ln]
    assert len(page) == 1 and len(weights) == 1, lines


def test_host_names_are_read_in_one_form():
    from server.security import GuardMiddleware, host_name
    from server.settings import Settings
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[0:0:0:0:0:0:0:1]:80") == "::1"
    assert [host_name(h) for h in TRICKY_HOSTS] == [None] * len(TRICKY_HOSTS)
    guard = GuardMiddleware(None, Settings(host="FE80:0::1", allowed_hosts=["[2001:db8::0001]"]))
    assert {"fe80::1", "2001:db8::1", "::1", "localhost"} <= guard._names
    assert host_name("[fe80::1]:8000") in guard._names
