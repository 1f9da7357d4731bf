"""The ingest ceiling of one server: how many concurrently streaming trials it stores and
broadcasts before a real training run beside them slows down.

    python -m benchmarks.bench_ingest                        # N = 1, 4, 16, 64: ~2 minutes
    python -m benchmarks.bench_ingest --rate 10 --n 64,250   # trials at a capped rate

Beyond the ceiling (128 trials at 100/s, or 250 at 10/s, on 2 shared cores) the server falls
behind without bound: that N takes minutes while the stops queue behind the backlog, and the
server may have to be killed (it is, at the end, after 30 s).

A real ``backprop-lab`` server (uvicorn, SQLite file, websockets) runs in a subprocess with one
change: runs named ``synthetic...`` get no worker process. A single feeder thread in the
server process plays N remote trials instead, as a Dask client's topic handler would: every
``BATCH_SECONDS`` (0.1 s, the Dask runner's batch interval) it decodes (``json.loads``) one
batch per trial of engine events made from a real LeNet run's events (progress at ``--rate``
per second, an eval every 250 steps, a 35 KB snapshot every 2 s: the Dask runner's snapshot
cap) and hands it to the event loop with ``call_soon_threadsafe``, where it enters
``WorkerPool._deliver`` -> ``RunManager._on_messages`` -> ``EventLog`` -> SQLite -> the
broadcaster: the path every worker batch takes. The synthetic runs are created, stopped
(``POST /api/runs/{id}/stop``) and finish like real ones.

For each N: the N synthetic trials stream, then a real ``lenet`` run (``--steps`` iterations,
10,000 training images, 2 threads) trains through the same server; measured over that run:
events generated and stored per second (rows in the SQLite file), the broadcast lag of one
websocket subscriber following one synthetic run (arrival minus the event's ``ts``), the
server process's CPU (cores), and the real run's images/s as a ratio to the same run with no
synthetic trial run just before it (the load of a shared machine drifts).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import websockets

from .bench_server import cpu_seconds, free_port, rss_mb

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
       "BACKPROP_THREADS": os.environ.get("BACKPROP_THREADS", "2")}
BATCH_SECONDS = 0.1
SNAPSHOT_SECONDS = 2.0
EVAL_EVERY = 250

# ------------------------------------------------------------------------------- server side


def templates() -> dict[str, str]:
    """One real event of each type from a short LeNet run, as JSON text."""
    from engine import Trainer, apply_overrides, get_preset
    cfg = apply_overrides(get_preset("lenet"), {"iterations": 4, "eval_every": 2,
                                                "train_limit": 512, "test_limit": 1000,
                                                "snapshot_interval": 0.0})
    out: dict[str, str] = {}

    def emit(e):
        out.setdefault(e.type, json.dumps(e.to_json_dict(), allow_nan=False))
    Trainer(cfg, emit=emit, threads=1).run()
    return out


class _Commands:
    """The fake worker's command pipe: a stop or shutdown ends the synthetic trial."""

    def __init__(self, trial: "_Trial"):
        self.trial = trial

    def send_bytes(self, data: bytes) -> None:
        if json.loads(data).get("cmd") in ("stop", "shutdown"):
            self.trial.stop = True

    def close(self) -> None:
        pass


class _Process:
    pid = 0

    def __init__(self):
        self.ended = threading.Event()
        self.exitcode: int | None = None

    def is_alive(self) -> bool:
        return not self.ended.is_set()

    def join(self, timeout=None) -> None:
        self.ended.wait(timeout)

    def kill(self) -> None:
        self.exitcode = -9
        self.ended.set()


class _Trial:
    def __init__(self, handle, t0: float):
        self.h, self.t0 = handle, t0
        self.step, self.due = 0, 0.0
        self.last_snap = -SNAPSHOT_SECONDS
        self.started = self.stop = False


class Feeder:
    """N remote trials' event batches, from one thread, into the pool's ``_deliver``."""

    def __init__(self, rate: float):
        self.rate = rate
        self.t = templates()
        self.trials: dict[str, _Trial] = {}
        self.lock = threading.Lock()
        self.generated = 0
        self.thread: threading.Thread | None = None

    def add(self, pool, run_id: str):
        from server.workers import WorkerHandle
        proc = _Process()
        h = WorkerHandle(run_id, proc, None, _Commands(None))   # commands set below
        trial = _Trial(h, time.monotonic())
        h.commands = _Commands(trial)
        pool.handles[run_id] = h
        with self.lock:
            self.trials[run_id] = trial
        if self.thread is None:
            self.pool = pool
            self.thread = threading.Thread(target=self._loop, name="feeder", daemon=True)
            self.thread.start()
        return h

    def _event(self, kind: str, **fields) -> dict:
        e = json.loads(self.t[kind])          # what decoding a remote batch costs
        e.update(fields)
        return {"k": "event", "e": e, "ts": time.time()}

    def _batch(self, tr: _Trial, now: float) -> list:
        msgs = []
        if not tr.started:
            tr.started = True
            msgs.append(self._event("run_started"))
        tr.due += self.rate * BATCH_SECONDS
        while tr.due >= 1:
            tr.due -= 1
            tr.step += 1
            msgs.append(self._event("progress", step=tr.step, epoch=1 + tr.step // 1000))
            if tr.step % EVAL_EVERY == 0:
                msgs.append(self._event("eval", step=tr.step))
        if now - tr.last_snap >= SNAPSHOT_SECONDS:
            tr.last_snap = now
            msgs.append(self._event("snapshot", step=tr.step))
        if tr.stop:
            msgs.append(self._event("run_finished", status="stopped", step=tr.step))
        return msgs

    def _loop(self) -> None:
        pool = self.pool
        nxt = time.monotonic()
        while True:
            nxt += BATCH_SECONDS
            time.sleep(max(0.0, nxt - time.monotonic()))
            now = time.monotonic()
            with self.lock:
                trials = list(self.trials.items())
            for run_id, tr in trials:
                msgs = self._batch(tr, now)
                self.generated += sum(1 for m in msgs if m["e"]["type"] != "snapshot")
                pool._call(pool._deliver, tr.h, msgs)
                if tr.stop:
                    tr.h.process.exitcode = 0
                    tr.h.process.ended.set()
                    pool._call(pool._eof, tr.h)
                    with self.lock:
                        self.trials.pop(run_id, None)


def serve(port: int, data_dir: str, rate: float, max_workers: int) -> None:
    import uvicorn

    from server import workers
    from server.main import create_app
    from server.settings import Settings
    feeder = Feeder(rate)
    real_start = workers.WorkerPool.start

    def start(self, run_id, config, checkpoint):
        if str(config.get("name", "")).startswith("synthetic"):
            return feeder.add(self, run_id)
        return real_start(self, run_id, config, checkpoint)
    workers.WorkerPool.start = start

    def stats() -> None:             # the parent reads how many events were generated
        path = Path(data_dir) / "feeder.json"
        while True:
            time.sleep(0.2)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"generated": feeder.generated, "t": time.time()}))
            tmp.replace(path)
    threading.Thread(target=stats, daemon=True).start()
    settings = Settings(host="127.0.0.1", port=port, data_dir=Path(data_dir),
                        max_workers=max_workers)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


# ------------------------------------------------------------------------------- parent side


class Bench:
    def __init__(self, data_dir: str, rate: float, max_workers: int):
        self.port = free_port()
        self.data_dir = Path(data_dir)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_ingest", "--serve", "--port", str(self.port),
             "--data-dir", data_dir, "--rate", str(rate), "--max-workers", str(max_workers)],
            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)
        for _ in range(1200):
            try:
                if self.api.get("/api/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.proc.returncode}")
        else:
            raise RuntimeError("server did not start")
        self.db = sqlite3.connect(f"file:{self.data_dir / 'backprop-lab.sqlite3'}?mode=ro",
                                  uri=True)

    def create(self, body: dict) -> str:
        r = self.api.post("/api/runs", json=body)
        r.raise_for_status()
        return r.json()["id"]

    def status(self, rid: str) -> dict:
        return self.api.get(f"/api/runs/{rid}").json()

    def wait(self, rid: str, states, timeout: float = 900) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.status(rid)
            if run["status"] in states:
                return run
            time.sleep(0.1)
        raise RuntimeError(f"run {rid} did not reach {states}")

    def wait_all(self, ids: list[str], states, timeout: float = 900) -> None:
        want, deadline = set(ids), time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api.get("/api/runs").json()["runs"]
            if all(r["status"] in states for r in runs if r["id"] in want):
                return
            time.sleep(0.2)
        raise RuntimeError(f"runs did not reach {states}")

    def written(self) -> int:
        """Bytes the server process has written to disk (SQLite file and WAL)."""
        for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
        return 0

    def stored(self, ids: list[str]) -> int:
        if not ids:
            return 0
        q = f"SELECT count(*) FROM events WHERE run_id IN ({','.join('?' * len(ids))})"
        return self.db.execute(q, ids).fetchone()[0]

    def generated(self) -> int:
        for _ in range(50):
            try:
                return json.loads((self.data_dir / "feeder.json").read_text())["generated"]
            except (OSError, ValueError):
                time.sleep(0.05)
        return 0

    def close(self) -> None:
        self.db.close()
        self.api.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:     # a backlog it cannot drain: do not wait for it
            self.proc.kill()
            self.proc.wait(10)


def real_body(steps: int) -> dict:
    return {"preset": "lenet", "overrides": {"iterations": steps, "train_limit": 10_000,
                                             "test_limit": 1000, "name": "real"}}


async def follow(port: int, rid: str, since: float, stop: asyncio.Event) -> list[float]:
    """Broadcast lags (ms) of one synthetic run's events that were made after ``since``."""
    lags: list[float] = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/runs/{rid}", max_size=None,
                                  open_timeout=60) as ws:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except asyncio.TimeoutError:
                continue
            except websockets.ConnectionClosed:
                break
            now = time.time()
            for m in json.loads(raw):
                if m.get("ts") and m["ts"] >= since and not m.get("transient"):
                    lags.append((now - m["ts"]) * 1000)
    return lags


def alone(b: Bench, steps: int) -> float:
    rid = b.create(real_body(steps))
    return b.wait(rid, ("completed", "failed", "stopped"))["final"]["images_per_second"]


async def one(b: Bench, n: int, steps: int) -> dict:
    ids = [b.create({"preset": "digits8-mlp", "overrides": {"name": f"synthetic-{n}-{i}"}})
           for i in range(n)]
    b.wait_all(ids, ("running",))
    await asyncio.sleep(2.0)                        # steady state
    since = time.time()
    stop = asyncio.Event()
    lag_task = asyncio.create_task(follow(b.port, ids[0], since, stop))
    await asyncio.sleep(0.5)
    t0, g0, s0, c0 = time.monotonic(), b.generated(), b.stored(ids), cpu_seconds(b.proc.pid)
    w0 = b.written()
    rid = b.create(real_body(steps))
    run = await asyncio.to_thread(b.wait, rid, ("completed", "failed", "stopped"))
    t1, g1, s1, c1 = time.monotonic(), b.generated(), b.stored(ids), cpu_seconds(b.proc.pid)
    w1, rss = b.written(), rss_mb(b.proc.pid)
    stop.set()
    lags = await lag_task
    with ThreadPoolExecutor(16) as pool:          # each stop waits for its run (up to 5 s)
        list(pool.map(lambda r: b.api.post(f"/api/runs/{r}/stop"), ids))
    b.wait_all(ids, ("stopped", "completed", "failed"))
    dt = t1 - t0
    lags.sort()
    q = (lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] if lags else float("nan"))
    return {"n": n, "seconds": round(dt, 2), "generated_per_s": round((g1 - g0) / dt),
            "stored_per_s": round((s1 - s0) / dt), "lag_p50_ms": round(q(0.5), 1),
            "lag_p95_ms": round(q(0.95), 1), "lag_max_ms": round(lags[-1], 1) if lags else None,
            "server_cores": round((c1 - c0) / dt, 2),
            "written_mb_s": round((w1 - w0) / dt / 1e6, 1), "server_rss_mb": round(rss),
            "real_img_s": run["final"]["images_per_second"] if run.get("final") else None,
            "real_status": run["status"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="1,4,16,64",
                    help="synthetic trials, comma-separated (at most 254: each takes a worker slot)")
    ap.add_argument("--rate", type=float, default=100.0,
                    help="progress events/s per trial (a LeNet trial on one core: ~105)")
    ap.add_argument("--steps", type=int, default=800, help="iterations of the real run")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    ap.add_argument("--max-workers", type=int, default=256, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.port, args.data_dir, args.rate, args.max_workers)
        return 0
    ns = [int(x) for x in args.n.split(",")]
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        b = Bench(tmp, args.rate, min(256, max(ns) + 2))   # --max-workers allows 256
        try:
            base = [alone(b, args.steps)]
            print(f"alone: {base[0]:.0f} img/s", flush=True)
            rows = []
            for n in ns:
                # the load of a shared machine drifts: each N gets its own run alone just before
                before = alone(b, args.steps)
                row = asyncio.run(one(b, n, args.steps))
                row["alone_img_s"] = before
                rows.append(row)
                print(json.dumps(row), flush=True)
            base.append(alone(b, args.steps))
            print(f"alone again: {base[1]:.0f} img/s", flush=True)
        finally:
            b.close()
    ref = statistics.median(base)
    print(f"load average after: {os.getloadavg()}")
    head = ("trials", "offered ev/s", "generated", "stored ev/s", "lag p50 ms", "lag p95 ms",
            "lag max ms", "server cores", "disk MB/s", "RSS MB", "alone img/s", "real img/s",
            "ratio")
    out = [head]
    for r in rows:
        out.append((str(r["n"]), f"{r['n'] * args.rate:.0f}", str(r["generated_per_s"]),
                    str(r["stored_per_s"]), str(r["lag_p50_ms"]), str(r["lag_p95_ms"]),
                    str(r["lag_max_ms"]), str(r["server_cores"]), str(r["written_mb_s"]),
                    str(r["server_rss_mb"]),
                    f"{r['alone_img_s']:.0f}",
                    f"{r['real_img_s']:.0f}" if r["real_img_s"] else r["real_status"],
                    f"{r['real_img_s'] / r['alone_img_s']:.2f}" if r["real_img_s"] else "-"))
    w = [max(len(row[i]) for row in out) for i in range(len(head))]
    print(f"\nreal run alone: {base[0]:.0f} and {base[1]:.0f} img/s (median {ref:.0f}); "
          f"{args.rate:g} progress events/s per trial, an eval every {EVAL_EVERY} steps, a "
          f"snapshot every {SNAPSHOT_SECONDS:g} s")
    for row in out:
        print("  ".join(c.rjust(x) for c, x in zip(row, w)))
    if args.json:
        Path(args.json).write_text(json.dumps({"alone": base, "rate": args.rate, "rows": rows},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
