"""Runs and sweep trials on Dask through the server (``serve --dask``), against a real
uvicorn, real websockets and a real Dask cluster: a LocalCluster of processes, and once a
``dask scheduler`` with ``dask worker`` processes started separately."""
import asyncio
import os
import signal

import psutil
import pytest

from .conftest import TERMINAL, collect, create, wait_for, wait_status
from ..sweep.test_dask import separate  # noqa: F401 - the fixture

TINY = {"preset": "mlp", "where": "dask", "overrides": {
    "epochs": 1, "train_limit": 640, "test_limit": 100, "eval_every": 5}}
LONG = {"preset": "mlp", "where": "dask", "overrides": {
    "iterations": 1_000_000, "train_limit": 640, "test_limit": 100, "eval_every": 50}}


@pytest.fixture(scope="module")
def dask_server(tmp_path_factory):
    from .conftest import Server
    s = Server(tmp_path_factory.mktemp("dask") / "data", args=["--dask", "local"],
               env={"BACKPROP_DASK_LOCAL_WORKERS": "2"}).start()
    yield s
    s.stop()


def test_a_run_on_dask_streams_and_keeps_its_checkpoints(dask_server):
    with dask_server.client() as api:
        assert api.get("/api/health").json()["dask"] == "local"
        run = create(api, TINY)
        assert run["where"] == "dask"
        msgs, code = asyncio.run(collect(f"{dask_server.ws_url}/ws/runs/{run['id']}", timeout=120))
        assert code == 1000
        kinds = [m["type"] for m in msgs]
        assert kinds.count("run_started") == 1 and kinds.count("progress") == 10
        assert kinds.count("eval") >= 2 and msgs[-1]["status"] == "completed"
        seqs = [m["seq"] for m in msgs if not m.get("transient")]
        assert seqs == list(range(1, len(seqs) + 1))
        done = api.get(f"/api/runs/{run['id']}").json()
        assert done["where"] == "dask" and done["weights_step"] == 10
        assert api.get(f"/api/runs/{run['id']}/weights").status_code == 200   # written here
        kept = api.get(f"/api/runs/{run['id']}/checkpoints").json()["checkpoints"]
        assert [c["step"] for c in kept] == [5, 10]
        # forks and predictions work as for a local run
        r = api.post(f"/api/runs/{run['id']}/fork", json={"step": 5})
        assert r.status_code == 201 and r.json()["where"] == "local"
        wait_status(api, r.json()["id"], TERMINAL)


def test_pause_resume_stop_and_continue_on_dask(dask_server):
    with dask_server.client() as api:
        rid = create(api, LONG)["id"]
        wait_for(lambda: (api.get(f"/api/runs/{rid}").json()["latest"] or {}).get("step", 0) > 20,
                 timeout=120, what="training on dask")
        assert api.post(f"/api/runs/{rid}/pause").json()["status"] == "paused"
        assert api.patch(f"/api/runs/{rid}", json={"lr": 0.01}).status_code == 200
        assert api.post(f"/api/runs/{rid}/resume").json()["status"] == "running"
        api.post(f"/api/runs/{rid}/stop")
        stopped = wait_status(api, rid, TERMINAL)
        assert stopped["status"] == "stopped"
        msgs, _ = asyncio.run(collect(f"{dask_server.ws_url}/ws/runs/{rid}"))
        assert any(m["type"] == "hparams_changed" and m["changes"] == {"lr": 0.01} for m in msgs)
        r = api.post(f"/api/runs/{rid}/continue")
        assert r.status_code == 200, r.text
        wait_for(lambda: (api.get(f"/api/runs/{rid}").json()["latest"] or {}).get("step", 0)
                 > stopped["latest"]["step"] + 5, timeout=120, what="the continued run")
        api.post(f"/api/runs/{rid}/stop")
        assert wait_status(api, rid, TERMINAL)["status"] == "stopped"


def test_sweep_trials_go_to_dask(dask_server):
    spec = {"name": "on-dask", "method": "grid", "base": {"preset": "mlp", "overrides": {
        "epochs": 1, "train_limit": 640, "test_limit": 100}},
        "parameters": {"train.lr": {"values": [0.01, 0.1]}}, "max_parallel": 2}
    with dask_server.client() as api:
        sw = api.post("/api/sweeps", json=spec)
        assert sw.status_code == 201, sw.text
        sid = sw.json()["id"]
        wait_for(lambda: api.get(f"/api/sweeps/{sid}").json()["status"] == "finished",
                 timeout=180, what="the sweep")
        trials = api.get(f"/api/sweeps/{sid}").json()["trials"]
        assert [t["status"] for t in trials] == ["completed", "completed"]
        assert all(t["where"] == "dask" for t in trials)
        for t in trials:
            assert api.get(f"/api/runs/{t['run_id']}").json()["where"] == "dask"


def test_kill_9_of_the_dask_worker_fails_the_run_with_the_reason(dask_server):
    with dask_server.client() as api:
        rid = create(api, LONG)["id"]
        wait_for(lambda: (api.get(f"/api/runs/{rid}").json()["latest"] or {}).get("step", 0) > 5,
                 timeout=120, what="training on dask")
        workers = [p for p in psutil.Process(dask_server.proc.pid).children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline())]
        assert workers
        for p in workers:                         # the LocalCluster's worker processes
            os.kill(p.pid, signal.SIGKILL)
        failed = wait_status(api, rid, TERMINAL, timeout=120)
        assert failed["status"] == "failed"
        assert "Dask worker" in failed["error"] and "died" in failed["error"], failed["error"]
        # the nannies restart their workers: the server goes on with new runs
        again = create(api, TINY)
        assert wait_status(api, again["id"], TERMINAL, timeout=180)["status"] == "completed"


def test_where_dask_without_a_cluster_is_a_422(api):
    r = api.post("/api/runs", json=TINY)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["where"]


def test_serve_on_a_separate_scheduler_and_workers(separate, make_server):  # noqa: F811
    addr, _ = separate
    s = make_server(args=["--dask", addr]).start()
    with s.client() as api:
        run = create(api, TINY)
        done = wait_status(api, run["id"], TERMINAL, timeout=180)
        assert done["status"] == "completed" and done["where"] == "dask", done
        assert done["final"]["test_accuracy"] > 0.2



def test_a_progress_rate_caps_what_a_dask_run_sends_and_keeps_its_evals_exact(make_server):
    """BACKPROP_DASK_PROGRESS_RATE: at most that many progress events a second leave each
    remote run (a thousand workers' progress would swamp one server); the held one goes out
    before every other event, so each evaluation's step and the last step are still there."""
    s = make_server(args=["--dask", "local"], env={"BACKPROP_DASK_LOCAL_WORKERS": "1",
                                                   "BACKPROP_DASK_PROGRESS_RATE": "4"}).start()
    with s.client() as api:
        run = create(api, {"preset": "mlp", "where": "dask", "overrides": {
            "iterations": 400, "train_limit": 640, "test_limit": 100, "eval_every": 100}})
        msgs, code = asyncio.run(collect(f"{s.ws_url}/ws/runs/{run['id']}", timeout=120))
        assert code == 1000 and msgs[-1]["status"] == "completed"
        steps = [m["step"] for m in msgs if m["type"] == "progress"]
        evals = [m["step"] for m in msgs if m["type"] == "eval"]
        assert steps == sorted(set(steps)) and steps[-1] == 400
        assert evals == [100, 200, 300, 400] and set(evals) <= set(steps)
        assert len(steps) < 100, len(steps)           # 400 steps in a few seconds at 4/s
        done = api.get(f"/api/runs/{run['id']}").json()
        assert done["latest"]["step"] == 400 and done["final"]["step"] == 400


def test_a_bsde_run_on_dask(dask_server):
    with dask_server.client() as api:
        run = create(api, {"preset": "bsde-hjb-d10", "where": "dask",
                           "overrides": {"iterations": 40, "eval_every": 20}})
        msgs, code = asyncio.run(collect(f"{dask_server.ws_url}/ws/runs/{run['id']}", timeout=120))
        assert code == 1000 and msgs[-1]["status"] == "completed"
        assert [m["step"] for m in msgs if m["type"] == "bsde_eval"] == [0, 20, 40]
        assert [m["step"] for m in msgs if m["type"] == "progress"] == list(range(1, 41))
        done = api.get(f"/api/runs/{run['id']}").json()
        assert done["final"]["result"]["reference"] == 2.157022 and done["weights_step"] == 40
        kept = api.get(f"/api/runs/{run['id']}/checkpoints").json()["checkpoints"]
        assert [c["step"] for c in kept] == [20, 40]
