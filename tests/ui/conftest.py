"""Browser tests of the dashboard: Playwright (sync API) driving Debian's Chromium against a real
server started in a subprocess on a free 127.0.0.1 port with a temporary data directory.

Needs `/usr/bin/chromium` (`apt-get install -y chromium`) and the `playwright` Python package
(`pip install playwright`; browsers are never downloaded: the system Chromium is used).
Screenshots of the main states go to $BACKPROP_ARTIFACTS/ui (default: the system temp folder).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("BACKPROP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - reported as a skip below
    sync_playwright = None
else:
    # generous waits, never timed assertions: a loaded CI machine may take seconds per step
    expect.set_options(timeout=45_000)

_missing = None
if sync_playwright is None:
    _missing = "browser tests need the playwright package (pip install playwright)"
elif not Path(CHROMIUM).exists():
    _missing = f"browser tests need Chromium at {CHROMIUM} (apt-get install -y chromium)"
if _missing:
    if os.environ.get("CI"):  # CI's command installs both: a missing one is a failure there
        raise RuntimeError(_missing)
    pytest.skip(_missing, allow_module_level=True)


def artifacts_dir() -> Path:
    d = Path(os.environ.get("BACKPROP_ARTIFACTS") or tempfile.gettempdir()) / "ui"
    d.mkdir(parents=True, exist_ok=True)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `backprop-lab serve` and a tiny JSON client for setting up runs."""

    def __init__(self, url: str, proc: subprocess.Popen, data_dir: Path, log: Path):
        self.url, self.proc, self.data_dir, self.log = url, proc, data_dir, log

    def call(self, method: str, path: str, body=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path} -> {e.code}: {e.read()[:500]!r}") from None

    def create_run(self, preset: str, **overrides) -> dict:
        name = overrides.pop("name", None)
        body = {"preset": preset, "overrides": overrides}
        if name:
            body["name"] = name
        return self.call("POST", "/api/runs", body)

    def wait_status(self, run_id: str, statuses, timeout=120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.call("GET", f"/api/runs/{run_id}")
            if run["status"] in statuses:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {run['status']} after {timeout}s")
            time.sleep(0.2)

    def stored_events(self, run_id: str) -> list[dict]:
        """Every stored event of a run, replayed over the websocket (after_seq=0)."""
        from websockets.sync.client import connect
        run = self.call("GET", f"/api/runs/{run_id}")
        last = run["last_seq"]
        out = []
        ws_url = self.url.replace("http://", "ws://") + f"/ws/runs/{run_id}?after_seq=0"
        with connect(ws_url, origin=self.url, open_timeout=10, max_size=None) as ws:
            while not out or out[-1]["seq"] < last:
                frame = json.loads(ws.recv(timeout=30))    # a frame is a JSON array of events
                assert isinstance(frame, list) and frame, frame
                out += frame
        return out


@pytest.fixture(scope="session")
def artifacts() -> Path:
    return artifacts_dir()


@pytest.fixture(scope="session")
def server():
    data_dir = Path(tempfile.mkdtemp(prefix="backprop-ui-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    # a generated 12x12 RGB dataset of 4 classes next to the bundled ones (test_custom_dataset)
    from tests import synthetic
    synthetic.write_npz(data_dir / "datasets")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BACKPROP_DATASETS": str(data_dir / "datasets")}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port),
                                 "--data-dir", str(data_dir / "data"), "--max-workers", "2"],
                                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    srv = Server(url, proc, data_dir, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            srv.call("GET", "/api/health", timeout=2)
            break
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the server did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
    yield srv
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.copy(log, artifacts_dir() / "server.log")
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh 1280x800 tab on the dashboard; fails the test on any uncaught page error."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.set_default_timeout(60_000)
    yield pg
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        pg.screenshot(path=str(artifacts_dir() / f"FAILED-{request.node.name}.png"))
    ctx.close()
    # a websocket closed by a reload or a deliberate kick logs nothing; anything else is a bug,
    # unless the test said it provokes it (page.expected_errors: regular expressions)
    expected = getattr(pg, "expected_errors", [])
    errors = [e for e in errors if not any(re.search(x, e) for x in expected)]
    assert not errors, f"errors in the page: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
