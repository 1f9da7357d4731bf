"""Faults: a killed worker, a killed server, SIGTERM, divergence, a full or read-only disk."""
from __future__ import annotations

import asyncio
import os
import resource
import signal
import sqlite3
import time

import numpy as np
import psutil

from .conftest import (SHORT, TERMINAL, assert_contiguous, collect, create, long_run, stored,
                       wait_for, wait_status)


def gone(pid: int) -> bool:
    """The process has exited (a zombie left for init to reap counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stored_progress(data_dir, rid: str) -> int:
    """How many progress events of run ``rid`` the server's SQLite file holds (read-only)."""
    conn = sqlite3.connect(f"file:{data_dir / 'backprop-lab.sqlite3'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM events WHERE run_id = ? AND type = 'progress'",
                            (rid,)).fetchone()[0]
    finally:
        conn.close()


def worker_pids(api) -> list[int]:
    return api.get("/api/health").json()["worker_pids"]


def test_kill_9_worker_fails_the_run_with_a_reason_and_keeps_its_metrics(server, api):
    run = create(api, long_run())
    rid = run["id"]
    wait_for(lambda: (api.get(f"/api/runs/{rid}").json()["latest"] or {}).get("step", 0) >= 5,
             what="training")
    pids = worker_pids(api)
    assert pids

    assert len(pids) == 1                  # nothing else runs on this server now

    async def scenario():
        task = asyncio.create_task(collect(f"{server.ws_url}/ws/runs/{rid}"))
        await asyncio.sleep(0.5)               # the client is live when the worker dies
        os.kill(pids[0], signal.SIGKILL)
        return await task
    msgs, code = asyncio.run(scenario())
    assert code == 1000
    assert msgs[-1]["type"] == "status" and msgs[-1]["status"] == "failed"
    assert "worker died" in msgs[-1]["error"] and "-9" in msgs[-1]["error"]
    done = api.get(f"/api/runs/{rid}").json()
    assert done["status"] == "failed" and "SIGKILL" in done["error"]
    history, _ = asyncio.run(collect(f"{server.ws_url}/ws/runs/{rid}"))
    assert_contiguous(history)
    assert history[-1]["seq"] == done["last_seq"]
    steps = [m["step"] for m in history if m["type"] == "progress"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 5
    # the server is fine and takes new runs
    again = create(api, SHORT)
    assert wait_status(api, again["id"], TERMINAL)["status"] == "completed"


def test_kill_9_server_then_restart_marks_the_run_interrupted(make_server):
    s = make_server().start()
    with s.client() as api:
        run = create(api, long_run())
        rid = run["id"]
        # `latest` on the API runs up to one batched write (~25 ms) ahead of the file, so
        # wait on what the SQLite file itself holds
        wait_for(lambda: stored_progress(s.data_dir, rid) >= 10, what="10 stored steps")
        pids = worker_pids(api)
        before = api.get(f"/api/runs/{rid}").json()
    s.kill()
    kept = stored_progress(s.data_dir, rid)
    # the orphaned worker notices its server is gone and exits on its own
    for pid in pids:
        wait_for(lambda: gone(pid), timeout=30, what=f"worker {pid} to exit")
    s2 = make_server(data_dir=s.data_dir).start()
    with s2.client() as api:
        after = api.get(f"/api/runs/{rid}").json()
        assert after["status"] == "interrupted"
        assert "no worker" in after["error"]
        assert after["last_seq"] >= before["last_seq"]
        history, code = asyncio.run(collect(f"{s2.ws_url}/ws/runs/{rid}"))
        assert code == 1000
        assert_contiguous(history)
        kinds = [m["type"] for m in history]
        assert "run_started" in kinds and kinds.count("progress") >= kept >= 10
        assert history[-1]["status"] == "interrupted"
        new = create(api, SHORT)
        assert wait_status(api, new["id"], TERMINAL)["status"] == "completed"


def test_sigterm_exits_promptly_and_leaves_no_worker(make_server):
    s = make_server(max_workers=2).start()
    with s.client() as api:
        a, b = create(api, long_run()), create(api, long_run())
        for r in (a, b):
            wait_status(api, r["id"], "running")
        api.post(f"/api/runs/{b['id']}/pause")
        wait_status(api, b["id"], "paused")
        pids = wait_for(lambda: len(worker_pids(api)) == 2 and worker_pids(api), what="workers")
        children = [p.pid for p in psutil.Process(s.proc.pid).children(recursive=True)]
        assert set(pids) <= set(children)
    code = s.stop(signal.SIGTERM, timeout=60)
    assert code in (0, -signal.SIGTERM), s.output()[-2000:]   # uvicorn re-raises the signal
    for pid in pids:                       # the server waited for its workers
        assert gone(pid), pid
    for pid in children:                   # multiprocessing's resource tracker follows it out
        wait_for(lambda: gone(pid), timeout=20, what=f"child {pid} to exit")
    s2 = make_server(data_dir=s.data_dir).start()
    with s2.client() as api:
        for r in (a, b):
            run = api.get(f"/api/runs/{r['id']}").json()
            assert run["status"] == "interrupted" and "shut down at step" in run["error"]
    assert "Traceback" not in s.output()


def test_huge_learning_rate_diverges_with_a_suggestion(server, api):
    run = create(api, {"preset": "mlp", "overrides": {"lr": 1e6, "epochs": 1, "train_limit": 2000,
                                                       "test_limit": 200}})
    done = wait_status(api, run["id"], TERMINAL)
    assert done["status"] == "diverged"
    assert "lower the learning rate" in done["error"] and "step" in done["error"]
    msgs, _ = asyncio.run(collect(f"{server.ws_url}/ws/runs/{run['id']}"))
    div = next(m for m in msgs if m["type"] == "diverged")
    assert div["step"] >= 1 and "lower the learning rate" in div["suggestion"]
    assert msgs[-1]["status"] == "diverged"
    path = server.data_dir / "runs" / run["id"] / "checkpoint.npz"
    if path.exists():                     # the last finite checkpoint, if one was written
        with np.load(path, allow_pickle=False) as z:
            assert all(np.isfinite(z[k]).all() for k in z.files if k.startswith("param."))
    assert api.get("/api/health").json()["ok"]


def _limit_file_size(limit: int):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return set_limit


def test_disk_full_fails_the_run_clearly_and_the_server_keeps_serving(make_server):
    # every snapshot stored, each about 100 kB: a 3 MB file-size limit fills within seconds
    s = make_server(env={"BACKPROP_SNAPSHOT_STORE_INTERVAL": "0"}).start(
        preexec_fn=_limit_file_size(3 << 20))
    with s.client() as api:
        run = create(api, long_run(probe_indices=list(range(16)), snapshot_interval=0.05))
        done = wait_status(api, run["id"], TERMINAL, timeout=120)
        assert done["status"] == "failed"
        assert "could not store its events" in done["error"] and "full" in done["error"]
        assert api.get("/api/health").json()["ok"]
        assert api.get("/api/runs").status_code == 200
        r = api.post("/api/runs", json=SHORT)
        assert r.status_code in (201, 503), r.text
        if r.status_code == 503:
            assert r.json()["detail"][0]["loc"] == ["data_dir"]
        wait_for(lambda: not worker_pids(api), what="worker stopped")
    assert "Traceback" not in s.output()


def test_read_only_database_is_served_read_only(make_server):
    s = make_server().start()
    with s.client() as api:
        rid = create(api, SHORT)["id"]
        wait_status(api, rid, TERMINAL)
    s.stop()
    # nothing can be written any more (as if the file or disk were read-only)
    s2 = make_server(data_dir=s.data_dir).start(preexec_fn=_limit_file_size(0))
    with s2.client() as api:
        health = api.get("/api/health").json()
        assert health["read_only"] and "database" in health["read_only"]
        assert api.get(f"/api/runs/{rid}").json()["status"] == "completed"
        msgs, _ = asyncio.run(collect(f"{s2.ws_url}/ws/runs/{rid}"))
        assert msgs[-1]["status"] == "completed"
        r = api.post("/api/runs", json=SHORT)
        assert r.status_code == 503
        assert r.json()["detail"][0]["loc"] == ["data_dir"]
        assert "cannot write the database" in r.json()["detail"][0]["msg"]


def test_unusable_data_dir_is_a_clear_error(make_server, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    s = make_server(data_dir=blocker / "data").start(wait=False)
    code = s.proc.wait(60)
    out = s.output()
    assert code == 2
    assert "error: cannot write the database" in out and str(blocker) in out
    assert "Traceback" not in out
