"""Training throughput through the server, event latency to clients, and server memory.

    python -m benchmarks.bench_server            # about 3 minutes
    python -m benchmarks.bench_server --quick    # about a minute

Throughput: the same LeNet run (the ``lenet`` preset, ``--steps`` iterations, 10,000
training images) trained headless by the engine in a subprocess (one BLAS thread, the
worker's memory setting and the same ``BACKPROP_THREADS``, 2 unless set, like a worker) and through a real ``backprop-lab serve`` with 0, 1
and 50 websocket clients following it live. Each is the run's own ``images_per_second`` (training steps only,
evaluation excluded), reported as a ratio to the headless median of the same session;
contenders are interleaved (A, B, C, D, A, B, ...) and the median of ``--rounds`` is kept.

Latency: every event carries ``ts``, the worker's wall clock when the engine emitted it;
each client records ``time.time()`` on arrival. p50/p95 over all events at 50 clients.
The clients run in this process, on the same 2 cores as the server and the worker.

CPU: the server process's own CPU time (user + system, from /proc; its workers excluded) and
this process's (the websocket clients') per training step, median over the rounds. On 2 cores
whatever the server and the clients burn is taken from beside the worker, so these explain
the throughput ratios with far less noise than the ratios themselves.

Memory: the server's RSS after start-up and after 10 finished runs.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
# BACKPROP_THREADS pinned for both sides: `backprop-lab serve` would otherwise give its workers
# the command line's default (2) while a bare Trainer defaults to 1
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
       "BACKPROP_THREADS": os.environ.get("BACKPROP_THREADS", "2")}

HEADLESS = """
import json, sys
from engine import Trainer, apply_overrides, get_preset
try:   # what a server worker does first (server/workers.py), so the two compare like for like
    from engine.runtime import keep_freed_memory
    keep_freed_memory()
except ImportError:   # an engine from before engine.runtime
    pass
cfg = apply_overrides(get_preset("lenet"), json.loads(sys.argv[1]))
print(json.dumps(Trainer(cfg).run()["images_per_second"]))
"""


def overrides(steps: int) -> dict:
    return {"iterations": steps, "train_limit": 10_000, "test_limit": 1000}


def headless(steps: int) -> float:
    out = subprocess.run([sys.executable, "-c", HEADLESS, json.dumps(overrides(steps))],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Served:
    def __init__(self, data_dir: str):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port),
             "--data-dir", data_dir, "--max-workers", "1"], cwd=ROOT, env=ENV,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        for _ in range(600):
            try:
                if self.api.get("/api/health").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def wait(self, rid: str, timeout: float = 900) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api.get(f"/api/runs/{rid}").json()
            if run["status"] not in ("queued", "running", "paused"):
                return run
            time.sleep(0.2)
        raise RuntimeError(f"run {rid} did not finish")

    def close(self) -> None:
        self.api.close()
        self.proc.terminate()
        self.proc.wait(60)


async def follow(port: int, rid: str, n: int, api: httpx.Client) -> list[float]:
    """Connect n clients to a paused run, resume it, read to the end; latencies in ms."""
    url = f"ws://127.0.0.1:{port}/ws/runs/{rid}"
    socks = [await websockets.connect(url, max_size=None, open_timeout=60) for _ in range(n)]
    await asyncio.to_thread(api.post, f"/api/runs/{rid}/resume")
    lat: list[float] = []

    async def read(ws):
        try:
            async for raw in ws:
                now = time.time()
                for m in json.loads(raw):          # a frame is a JSON array of events
                    if m.get("ts") and m["type"] != "status":
                        lat.append((now - m["ts"]) * 1000)
        except websockets.ConnectionClosed:
            pass
    await asyncio.wait_for(asyncio.gather(*(read(ws) for ws in socks)), 900)
    return lat


def served_run(srv: Served, steps: int, clients: int) -> tuple[float, list[float], float, float]:
    """(images/s, latencies in ms, server CPU ms per step, client CPU ms per step)"""
    server0, client0 = cpu_seconds(srv.proc.pid), time.process_time()
    rid = srv.api.post("/api/runs", json={"preset": "lenet",
                                          "overrides": overrides(steps)}).json()["id"]
    lat: list[float] = []
    if clients:
        srv.api.post(f"/api/runs/{rid}/pause")        # applied before the first step
        lat = asyncio.run(follow(srv.port, rid, clients, srv.api))
    run = srv.wait(rid)
    assert run["status"] == "completed", run
    server_ms = (cpu_seconds(srv.proc.pid) - server0) * 1000 / steps
    client_ms = (time.process_time() - client0) * 1000 / steps
    return run["final"]["images_per_second"], lat, server_ms, client_ms


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--rounds", type=int)
    a = ap.parse_args()
    steps = a.steps or (150 if a.quick else 400)
    rounds = a.rounds or (1 if a.quick else 3)
    with tempfile.TemporaryDirectory() as tmp:
        srv = Served(str(Path(tmp) / "data"))
        try:
            rss_start = rss_mb(srv.proc.pid)
            ips: dict[str, list[float]] = {"headless": [], "0 clients": [], "1 client": [],
                                           "50 clients": []}
            cpu: dict[str, list[tuple[float, float]]] = {k: [] for k in ips if k != "headless"}
            latency: list[float] = []
            for r in range(rounds):
                ips["headless"].append(headless(steps))
                for label, n in (("0 clients", 0), ("1 client", 1), ("50 clients", 50)):
                    v, lat, server_ms, client_ms = served_run(srv, steps, n)
                    ips[label].append(v)
                    cpu[label].append((server_ms, client_ms))
                    if n == 50:
                        latency += lat
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in ips.items()),
                      file=sys.stderr)
            for i in range(10 - 3 * rounds if 10 > 3 * rounds else 0):
                served_run(srv, 30, 0)
            finished = len(srv.api.get("/api/runs").json()["runs"])
            rss_end = rss_mb(srv.proc.pid)
        finally:
            srv.close()
    base = statistics.median(ips["headless"])
    print(f"LeNet, {steps} steps of batch 64, median of {rounds} round(s); images/s (ratio to "
          f"headless)")
    for k, v in ips.items():
        m = statistics.median(v)
        extra = ""
        if k in cpu:
            extra = (f"   CPU per step: server {statistics.median(c[0] for c in cpu[k]):.2f} ms, "
                     f"clients {statistics.median(c[1] for c in cpu[k]):.2f} ms")
        print(f"  {k:<11} {m:9,.0f}  {m / base:6.1%}{extra}")
    print(f"event latency, worker emit -> client, 50 clients: p50 {pct(latency, .5):.1f} ms, "
          f"p95 {pct(latency, .95):.1f} ms ({len(latency):,} events)")
    print(f"server RSS: {rss_start:.0f} MB after start, {rss_end:.0f} MB after {finished} "
          f"finished runs")


if __name__ == "__main__":
    main()
