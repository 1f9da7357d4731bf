"""Continue and checkpoints: latency, size and write time, disk per run (issue 11's numbers).

    python -m benchmarks.bench_resume            # about a minute

Continue latency: a lenet run on the full MNIST training set is stopped after ~50 steps;
the time from ``POST /api/runs/{id}/continue`` to the first new progress event on its
websocket, against the time from ``POST /api/runs`` of a fresh run to its first progress
event (both start a worker process, import the engine and load MNIST), interleaved, median of
``--rounds``. Checkpoint: the lenet preset's checkpoint with its training state, size and
write time (median of 21), against the weights alone (``Model.save``). Disk: a lenet run with
20 evaluations (as a 20-epoch run has) under the default budget, ``du`` of its folder.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import websockets

from benchmarks.bench_server import ENV, Served  # noqa: F401 - ENV pins the threads

LONG = {"preset": "lenet", "overrides": {"iterations": 100_000, "eval_every": 500}}


async def first_progress(port: int, rid: str, after_seq: int, after_step: int, start) -> float:
    """Seconds from calling ``start`` (the POST) to the first progress event past
    ``after_step``; the stream is opened after the POST (a finished run's stream closes at
    once), from ``after_seq``, so nothing is missed."""
    t0 = time.perf_counter()
    await asyncio.to_thread(start)
    url = f"ws://127.0.0.1:{port}/ws/runs/{rid}?after_seq={after_seq}"
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        async for raw in ws:
            for m in json.loads(raw):
                if m["type"] == "progress" and m["step"] > after_step:
                    return time.perf_counter() - t0
    raise RuntimeError("stream closed before a new step")


def wait_step(srv: Served, rid: str, step: int) -> None:
    while ((srv.api.get(f"/api/runs/{rid}").json().get("latest") or {}).get("step", 0)) < step:
        time.sleep(0.05)


def fresh_latency(srv: Served) -> float:
    out = {}

    async def go():
        rid = srv.api.post("/api/runs", json={**LONG, "overrides": {**LONG["overrides"]}}).json()["id"]
        # the run may start before we listen: read its stream from the beginning
        url = f"ws://127.0.0.1:{srv.port}/ws/runs/{rid}"
        async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
            async for raw in ws:
                for m in json.loads(raw):
                    if m["type"] == "progress":
                        out["rid"] = rid
                        return
    t0 = time.perf_counter()
    asyncio.run(go())
    dt = time.perf_counter() - t0
    srv.api.post(f"/api/runs/{out['rid']}/stop")
    srv.wait(out["rid"])
    return dt


def continue_latency(srv: Served) -> float:
    rid = srv.api.post("/api/runs", json=LONG).json()["id"]
    wait_step(srv, rid, 50)
    srv.api.post(f"/api/runs/{rid}/stop")
    run = srv.wait(rid)
    k = run["weights_step"]
    dt = asyncio.run(first_progress(srv.port, rid, run["last_seq"], k,
                                    lambda: srv.api.post(f"/api/runs/{rid}/continue")))
    srv.api.post(f"/api/runs/{rid}/stop")
    srv.wait(rid)
    return dt


def checkpoint_numbers() -> tuple[int, float, int, float]:
    from engine import Trainer, apply_overrides, get_preset
    t = Trainer(apply_overrides(get_preset("lenet"), {"iterations": 20}))
    t.run()
    with tempfile.TemporaryDirectory() as d:
        full, weights = Path(d) / "full.npz", Path(d) / "weights.npz"
        tf, tw = [], []
        for _ in range(21):
            t0 = time.perf_counter()
            t.save_checkpoint(full)
            tf.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            t.model.save(weights)
            tw.append(time.perf_counter() - t0)
        return (full.stat().st_size, statistics.median(tf) * 1000,
                weights.stat().st_size, statistics.median(tw) * 1000)


def disk_for_twenty_evals(srv: Served, data_dir: Path) -> tuple[int, int]:
    rid = srv.api.post("/api/runs", json={"preset": "lenet", "overrides": {
        "iterations": 200, "eval_every": 10, "train_limit": 5000, "test_limit": 500}}).json()["id"]
    srv.wait(rid)
    folder = data_dir / "runs" / rid
    files = [p for p in folder.rglob("*") if p.is_file()]
    kept = srv.api.get(f"/api/runs/{rid}/checkpoints").json()["checkpoints"]
    return sum(p.stat().st_size for p in files), len(kept)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    size, ms, wsize, wms = checkpoint_numbers()
    print(f"lenet checkpoint with training state: {size / 1024:.0f} KiB, written in {ms:.2f} ms; "
          f"weights alone: {wsize / 1024:.0f} KiB in {wms:.2f} ms  "
          f"(ratio {size / wsize:.2f}x size, {ms / wms:.2f}x time)")
    with tempfile.TemporaryDirectory() as d:
        srv = Served(d)
        try:
            fresh, cont = [], []
            for _ in range(args.rounds):          # interleaved
                fresh.append(fresh_latency(srv))
                cont.append(continue_latency(srv))
            f, c = statistics.median(fresh), statistics.median(cont)
            print(f"first step after POST: fresh run {f * 1000:.0f} ms, continue {c * 1000:.0f} ms "
                  f"(median of {args.rounds}; continue/fresh = {c / f:.2f})")
            total, n = disk_for_twenty_evals(srv, Path(d))
            print(f"a lenet run with 20 evaluations: {n} checkpoints kept, {total / 2**20:.1f} MiB "
                  f"in its folder (default budget 50 MiB)")
        finally:
            srv.close()


if __name__ == "__main__":
    main()
