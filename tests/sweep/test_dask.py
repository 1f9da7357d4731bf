"""Sweeps on a real Dask cluster: an in-process ``LocalCluster`` (worker processes), and a
``dask scheduler`` and ``dask worker`` started as separate processes on 127.0.0.1."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from server.settings import Settings  # noqa: E402
from server.sweep.core import Sweep  # noqa: E402
from server.sweep.dask_runner import Connection, DaskRunner, check_address  # noqa: E402
from server.sweep.spec import validate_sweep  # noqa: E402

from .test_cli import ROOT, TINY, run  # noqa: E402

DASK = Path(sys.executable).parent / "dask"


def grid(lrs, **over):
    return validate_sweep({"base": {"preset": "digits8-mlp", "overrides": {
        **TINY["overrides"], **over}}, "method": "grid",
        "parameters": {"train.lr": {"values": lrs}}})


@pytest.fixture(scope="module")
def local():
    with Connection("local", n_workers=2) as conn:
        yield conn


def test_grid_on_a_local_cluster_streams_each_trials_events_while_it_runs(local):
    # 7 steps an epoch, 300 epochs (a second or two), an evaluation every 150 steps: 14
    spec = grid([0.01, 0.003, 0.02], epochs=300, eval_every=150)
    spec["max_parallel"] = 2
    seen: dict[int, list] = {}
    done_at_first_eval = {}
    runner = None

    def on_run_event(n, e):
        seen.setdefault(n, []).append(e["type"])
        if e["type"] == "eval" and n not in done_at_first_eval:
            done_at_first_eval[n] = runner.running[n].future.done()

    runner = DaskRunner(Sweep(spec), client=local.client, on_run_event=on_run_event)
    summary = runner.run()
    assert summary["sweep"]["status"] == "finished"
    assert [t["status"] for t in summary["trials"]] == ["completed"] * 3
    assert [t["params"]["train.lr"] for t in summary["trials"]] == [0.01, 0.003, 0.02]
    assert all(t["steps"] == 2100 and 0 < t["test_accuracy"] <= 1 for t in summary["trials"])
    for n, kinds in seen.items():
        # an ordinary run's events, in order, every one of them
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
        assert kinds.count("progress") == 2100 and kinds.count("eval") == 14
    # the first evaluation reached the runner while the trial's task was still running
    assert done_at_first_eval == {1: False, 2: False, 3: False}
    assert not runner.running
    assert local.client.get_events(runner.topic) == ()    # the scheduler keeps none of them


def test_stopping_running_trials_through_their_events(local):
    # 14,000 steps each (minutes); 3 at once on 2 workers: the third waits in Dask's queue
    spec = grid([0.01, 0.02, 0.03], epochs=2000, eval_every=20)
    runner = None
    seen = set()

    def emit(e):
        if e["type"] == "trial_eval":
            threading.Thread(target=runner.stop).start()

    runner = DaskRunner(Sweep(spec, emit=emit), max_parallel=3, client=local.client,
                        on_run_event=lambda n, e: seen.add(n))
    summary = runner.run()
    assert summary["sweep"]["status"] == "stopped"
    assert [t["status"] for t in summary["trials"]] == ["stopped"] * 3
    assert all(t["reason"] == "the sweep was stopped" for t in summary["trials"])
    running = [t for t in summary["trials"] if t["number"] in seen]
    assert len(running) >= 1 and all(20 <= t["steps"] < 14000 for t in running)
    # the third, still queued when the sweep stopped, found its Event set and never trained
    assert 3 not in seen and summary["trials"][2]["steps"] == 0


def test_a_trial_whose_dask_worker_is_killed_fails_with_the_reason(local):
    # the first trial would take minutes, the second is short
    spec = validate_sweep({"base": {"preset": "digits8-mlp", "overrides": {
        **TINY["overrides"], "eval_every": 1000}}, "method": "grid",
        "parameters": {"train.epochs": {"values": [2000, 1]}}})
    runner = None
    killed = []

    def on_run_event(n, e):
        if n == 1 and e["type"] == "progress" and not killed:
            killed.append(runner.running[1].pid)
            os.kill(runner.running[1].pid, signal.SIGKILL)

    runner = DaskRunner(Sweep(spec), max_parallel=1, client=local.client,
                        on_run_event=on_run_event)
    summary = runner.run()
    first, second = summary["trials"]
    assert killed and first["status"] == "failed"
    assert "the Dask worker tcp://" in first["reason"] and "died" in first["reason"]
    assert "not retried" in first["reason"]
    assert first["steps"] < 14000
    assert second["status"] == "completed"     # the sweep goes on with the other workers


def test_bad_addresses():
    assert check_address("tcp://127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    assert check_address("sched.lan:8786") == "tcp://sched.lan:8786"
    assert check_address("local") == "local"
    for bad in ("", "foo", "tcp://host", "udp://h:1", "tcp://h:0", "tcp://h:99999", "h:80x"):
        with pytest.raises(ValueError):
            check_address(bad)
    assert Settings(dask="127.0.0.1:8786").dask == "tcp://127.0.0.1:8786"
    with pytest.raises(ValueError, match="dask"):
        Settings(dask="nonsense")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_malformed_or_unreachable_address_exits_2(tmp_path):
    spec = tmp_path / "s.json"
    spec.write_text('{"base": {"preset": "digits8-mlp"}, "method": "grid", '
                    '"parameters": {"train.lr": {"values": [0.01]}}}')
    serve = ["serve", "--port", "0", "--data-dir", str(tmp_path)]
    # serve checks its --dask the same way before it starts (it only keeps it, for now)
    cases = [(["sweep", "--config", str(spec), "--dask", "sched:port"], "tcp://HOST:PORT"),
             (["sweep", "--config", str(spec), "--dask", f"tcp://127.0.0.1:{free_port()}"],
              "cannot reach the Dask scheduler"),
             ([*serve, "--dask", "tcp://h"], "tcp://HOST:PORT"),
             ([*serve, "--dask", f"127.0.0.1:{free_port()}"], "cannot reach the Dask scheduler")]
    procs = [subprocess.Popen([sys.executable, "-m", "server", *args], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args, _ in cases]     # at once: two of them wait out the connect timeout
    for p, (args, words) in zip(procs, cases):
        out, err = p.communicate(timeout=60)
        assert p.returncode == 2 and "--dask" in err and words in err, (args, err)
        assert out == ""      # no trial started, no server either


@pytest.fixture(scope="module")
def separate():
    """``dask scheduler`` and ``dask worker`` (two worker processes) as a user starts them."""
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}    # the workers import this checkout
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--no-dashboard"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        procs.append(subprocess.Popen([str(DASK), "worker", addr, "--nworkers", "2",
                                       "--nthreads", "1", "--no-dashboard"], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = Connection(addr, timeout=5)
                break
            except Exception:
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise
                time.sleep(0.5)
        try:
            conn.client.wait_for_workers(2, timeout=60)
            yield addr, conn
        finally:
            conn.close()
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def test_sweep_command_on_a_separate_scheduler_and_workers(separate, tmp_path):
    addr, _ = separate
    spec = tmp_path / "s.json"
    spec.write_text('{"name": "remote", "base": {"preset": "digits8-mlp", "overrides": '
                    '{"train_limit": 200, "test_limit": 300}}, "method": "grid", "parameters": '
                    '{"train.lr": {"values": [0.01, 0.003]}}, "max_parallel": 2}')
    p = run("sweep", "--config", str(spec), "--dask", addr, "--json", timeout=120)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(s) for s in p.stdout.splitlines()]
    summary = lines[-1]
    assert summary["sweep"]["name"] == "remote" and summary["sweep"]["status"] == "finished"
    assert [t["status"] for t in summary["trials"]] == ["completed", "completed"]
    assert [t["steps"] for t in summary["trials"]] == [140, 140]   # 20 epochs of 7
    kinds = [e["type"] for e in lines[:-1]]
    assert kinds.count("trial_eval") >= 2 and kinds.count("trial_finished") == 2


def test_a_killed_worker_of_a_retrying_scheduler_does_not_rerun_the_trial(separate):
    # this scheduler keeps Dask's default allowed-failures (3): it re-runs the task elsewhere,
    # and the re-run finds the trial's claim and returns without training
    _, conn = separate
    spec = validate_sweep({"base": {"preset": "digits8-mlp", "overrides": {
        **TINY["overrides"], "epochs": 2000, "eval_every": 1000}}, "method": "grid",
        "parameters": {"train.lr": {"values": [0.01]}}})
    runner = None
    starts = []

    def on_run_event(n, e):
        if e["type"] == "run_started":
            starts.append(n)
        if e["type"] == "progress" and len(starts) == 1 and runner.running[n].pid:
            pid, runner.running[n].pid = runner.running[n].pid, None
            os.kill(pid, signal.SIGKILL)

    runner = DaskRunner(Sweep(spec), max_parallel=1, client=conn.client,
                        on_run_event=on_run_event)
    summary = runner.run()
    (t,) = summary["trials"]
    assert t["status"] == "failed" and "died" in t["reason"] and "not retried" in t["reason"]
    assert starts == [1]         # trained once: the re-run did not start the engine
