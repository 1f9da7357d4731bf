"""A real uvicorn server in a subprocess on a free loopback port, with real HTTP and websockets.

Every wait here is bounded in count and time; nothing asserts on timings.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import websockets

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("completed", "stopped", "diverged", "failed", "interrupted")

#: fast knobs for tests (see server/settings.py)
TEST_ENV = {
    "BACKPROP_HEARTBEAT_SECONDS": "0.2",
    "BACKPROP_CHECKPOINT_SECONDS": "0.3",
    "BACKPROP_CLIENT_STUCK_SECONDS": "2",
    "BACKPROP_SHUTDOWN_GRACE_SECONDS": "3",
    "BACKPROP_SNAPSHOT_STORE_INTERVAL": "1",
}

#: 32 steps of the mlp preset: about a second with start-up
SHORT = {"preset": "mlp", "overrides": {"epochs": 1, "train_limit": 2000, "test_limit": 300}}


def long_run(**over) -> dict:
    """A lenet run that trains until stopped (tests stop it; bounded by their timeouts)."""
    o = {"iterations": 1_000_000, "train_limit": 512, "test_limit": 100, "eval_every": 200,
         "batch_size": 32, "lr": 0.01, "schedule": {"type": "constant"}}
    o.update(over)
    return {"preset": "lenet", "overrides": o}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m server.cli serve`` as a child process; its output goes to ``log_path``."""

    def __init__(self, data_dir: Path, max_workers: int = 2, host: str = "127.0.0.1",
                 args: list[str] | None = None, env: dict | None = None,
                 log_dir: Path | None = None):
        self.data_dir = Path(data_dir)
        self.max_workers = max_workers
        self.host = host
        self.extra_args = args or []
        self.env = {**TEST_ENV, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = Path(log_dir or self.data_dir.parent) / f"server-{id(self)}.log"
        self.token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, preexec_fn=None) -> "Server":
        """``preexec_fn`` runs in the child before exec (tests use it to set rlimits); the
        output then goes through a pipe, which no file-size limit applies to."""
        for _ in range(3):
            self.port = free_port()
            env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
            cmd = [sys.executable, "-m", "server.cli", "serve", "--host", self.host,
                   "--port", str(self.port), "--data-dir", str(self.data_dir),
                   "--max-workers", str(self.max_workers), *self.extra_args]
            self.log = open(self.log_path, "ab")
            out = subprocess.PIPE if preexec_fn else self.log
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
            if preexec_fn:
                threading.Thread(target=self._pump, daemon=True).start()
            if not wait or self.wait_ready():
                return self
            if "address already in use" not in self.output().lower():
                break
        raise RuntimeError(f"server did not start:\n{self.output()[-3000:]}")

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()

    def wait_ready(self, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                r = httpx.get(self.url + "/api/health", headers=self.auth(), timeout=2)
                if r.status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers=self.auth())

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()
        return self.proc.returncode if self.proc else None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server shared by a test module (2 workers)."""
    s = Server(tmp_path_factory.mktemp("srv") / "data").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def api(server):
    with server.client() as c:
        yield c


@pytest.fixture
def make_server(tmp_path):
    """Servers for one test; all stopped at the end."""
    made = []

    def make(**kw) -> Server:
        s = Server(kw.pop("data_dir", tmp_path / "data"), log_dir=tmp_path, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.kill()


# ------------------------------------------------------------------------------ helpers


def create(api: httpx.Client, body: dict) -> dict:
    r = api.post("/api/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def wait_status(api: httpx.Client, run_id: str, statuses, timeout: float = 60) -> dict:
    statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/api/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {run['status']}, waited for {statuses}: {run}")
        time.sleep(0.05)


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def events_of(raw) -> list[dict]:
    """The events of one run-stream frame: a non-empty JSON array of event objects."""
    frame = json.loads(raw)
    assert isinstance(frame, list) and frame, f"not a frame of events: {str(raw)[:200]}"
    assert all(isinstance(m, dict) and "type" in m and "seq" in m for m in frame), frame[:3]
    return frame


async def collect(url: str, until=None, timeout: float = 60, frames: list | None = None,
                  **kw) -> tuple[list[dict], int | None]:
    """Read a run stream until it closes or ``until(event)`` is true: (events, close code).
    ``frames``: a list that gets each frame's events as one list."""
    msgs: list[dict] = []
    code = None

    async def run():
        nonlocal code
        async with websockets.connect(url, max_size=None, open_timeout=20, **kw) as ws:
            try:
                async for raw in ws:
                    batch = events_of(raw)
                    if frames is not None:
                        frames.append(batch)
                    for m in batch:
                        msgs.append(m)
                        if until and until(m):
                            return
            except websockets.ConnectionClosed:
                pass
            code = ws.close_code
    await asyncio.wait_for(run(), timeout)
    return msgs, code


def stored(msgs: list[dict]) -> list[dict]:
    """The messages that are part of the stored history (not transient snapshots)."""
    return [m for m in msgs if not m.get("transient")]


def assert_contiguous(msgs: list[dict], start: int = 1) -> None:
    seqs = [m["seq"] for m in stored(msgs)]
    assert seqs == list(range(start, start + len(seqs))), seqs[:50]
    every = [m["seq"] for m in msgs]
    assert every == sorted(every)


def history(server, rid: str) -> list[dict]:
    """Every stored message of a run's stream, read to its normal close."""
    msgs, code = asyncio.run(collect(f"{server.ws_url}/ws/runs/{rid}"))
    assert code == 1000
    return msgs


def fold(msgs: list[dict], value=lambda m: m["loss"]) -> list:
    """``value`` of each progress step as the page folds them: ``continued`` voids the steps
    after its checkpoint."""
    out = {}
    for m in msgs:
        if m["type"] == "progress":
            out[m["step"]] = value(m)
        elif m["type"] == "continued":
            out = {s: v for s, v in out.items() if s <= m["step"]}
    return [out[s] for s in sorted(out)]
