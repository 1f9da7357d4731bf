"""The local runner in-process: stopping a sweep, a refused combination, a series."""
import json
import threading

from server.sweep.core import Sweep
from server.sweep.runner import LocalRunner
from server.sweep.spec import validate_series, validate_sweep

from .test_cli import TINY, run


def test_stop_ends_running_trials_and_starts_no_more():
    # each trial would take 2,000 steps; the sweep is stopped at the first trial's first eval
    spec = validate_sweep({"base": {"preset": "digits8-mlp", "overrides": {
        "train_limit": 320, "test_limit": 300, "epochs": 200, "eval_every": 20}},
        "method": "grid", "parameters": {"train.lr": {"values": [0.01, 0.02, 0.03]}}})
    events = []
    runner = None

    def emit(e):
        events.append(e)
        if e["type"] == "trial_eval":
            threading.Thread(target=runner.stop).start()    # as another thread would

    runner = LocalRunner(Sweep(spec, emit=emit), max_parallel=1, threads=1)
    summary = runner.run()
    assert summary["sweep"]["status"] == "stopped"
    assert [t["status"] for t in summary["trials"]] == ["stopped"]
    assert summary["trials"][0]["steps"] < 2000
    assert summary["trials"][0]["reason"] == "the sweep was stopped"
    assert [e["type"] for e in events].count("trial_started") == 1
    assert summary["best"] is None


def test_a_combination_the_engine_refuses_fails_alone():
    # each value is valid against the base; momentum 0 with nesterov together is not
    spec = validate_sweep({"base": {"preset": "digits8-mlp", "overrides": {
        **TINY["overrides"], "optimizer": "sgd", "momentum": 0.5, "epochs": 1}},
        "method": "grid", "parameters": {"train.momentum": {"values": [0.0, 0.9]},
                                         "train.nesterov": {"values": [True]}}})
    seen = []
    summary = LocalRunner(Sweep(spec), threads=1,
                          on_run_event=lambda n, e: seen.append((n, e["type"]))).run()
    first, second = summary["trials"]
    assert first["status"] == "failed" and "nesterov" in first["reason"]
    assert second["status"] == "completed" and summary["best"]["number"] == 2
    # the trial that ran is an ordinary run: the engine's own events, first to last
    assert seen[0] == (2, "run_started") and seen[-1] == (2, "run_finished")
    assert (2, "progress") in seen and (2, "eval") in seen and {n for n, _ in seen} == {2}


def test_an_absurd_learning_rate_ends_diverged_with_the_engines_reason():
    spec = validate_sweep({"base": {"preset": "digits8-mlp", "overrides": {
        **TINY["overrides"], "optimizer": "sgd", "epochs": 3}},
        "method": "grid", "parameters": {"train.lr": {"values": [0.05, 1e6]}}})
    summary = LocalRunner(Sweep(spec), threads=1).run()
    ok, bad = summary["trials"]
    assert ok["status"] == "completed"
    assert bad["status"] == "diverged" and "lower the learning rate" in bad["reason"]
    assert bad["test_accuracy"] is None and bad["steps"] < 21
    assert summary["best"]["number"] == 1


def test_series_runs_its_sweeps_in_order(tmp_path):
    one = {"base": TINY, "method": "grid", "parameters": {"train.lr": {"values": [0.01]}}}
    path = tmp_path / "series.json"
    path.write_text(json.dumps({"name": "two", "series": [{**one, "name": "a"},
                                                          {**one, "name": "b"}]}))
    assert validate_series(json.loads(path.read_text()))["name"] == "two"
    p = run("sweep", "--config", str(path), "--json")
    assert p.returncode == 0, p.stderr
    lines = [json.loads(s) for s in p.stdout.splitlines()]
    final = lines[-1]
    assert final["series"] == "two" and [s["sweep"]["name"] for s in final["sweeps"]] == ["a", "b"]
    assert all(s["trials"][0]["status"] == "completed" for s in final["sweeps"])
    assert [e["sweep"]["name"] for e in lines if e.get("type") == "sweep_started"] == ["a", "b"]
