"""``backprop-lab sweep`` and ``sweeps`` run as a user would: a real subprocess, real trials
in worker processes on the 8x8 digits (a second or two each)."""
import json
import subprocess
from statistics import median
import sys
from pathlib import Path

import pytest

from server.sweep.presets import SWEEP_PRESETS

ROOT = Path(__file__).parents[2]
TINY = {"preset": "digits8-mlp", "overrides": {"train_limit": 200, "test_limit": 300}}


def run(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "server", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


def sweep_json(tmp_path, spec, *args):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    p = run("sweep", "--config", str(path), "--json", *args)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(s) for s in p.stdout.splitlines()]
    return lines[:-1], lines[-1]


def test_sweeps_lists_the_presets():
    p = run("sweeps")
    assert p.returncode == 0
    assert [ln.split()[0] for ln in p.stdout.strip().splitlines()] == list(SWEEP_PRESETS)


def test_grid_of_four_tiny_trials_end_to_end(tmp_path):
    spec = {"name": "tiny", "base": TINY, "method": "grid",
            "parameters": {"train.epochs": {"values": [1, 2]},
                           "train.lr": {"values": [0.01, 0.003]}}}
    events, summary = sweep_json(tmp_path, spec, "--max-parallel", "2")
    assert set(summary) == {"sweep", "trials", "best", "wall_seconds"}
    assert summary["sweep"]["name"] == "tiny" and summary["sweep"]["max_parallel"] == 2
    assert summary["sweep"]["status"] == "finished"
    trials = summary["trials"]
    assert [t["number"] for t in trials] == [1, 2, 3, 4]
    assert [t["params"] for t in trials] == [
        {"train.epochs": 1, "train.lr": 0.01}, {"train.epochs": 1, "train.lr": 0.003},
        {"train.epochs": 2, "train.lr": 0.01}, {"train.epochs": 2, "train.lr": 0.003}]
    for t in trials:
        assert {"number", "params", "status", "test_accuracy", "final_loss", "train_seconds",
                "pruned_reason"} <= set(t)
        assert t["status"] == "completed" and t["pruned_reason"] is None
        assert 0 < t["test_accuracy"] <= 1 and t["final_loss"] > 0 and t["train_seconds"] > 0
        # each trial really ran its own config: 200 images in batches of 32 is 7 steps an epoch
        assert t["steps"] == 7 * t["params"]["train.epochs"]
    best = max(trials, key=lambda t: t["test_accuracy"])
    assert summary["best"]["number"] == best["number"]
    assert summary["wall_seconds"] > 0
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sweep_started" and kinds[-1] == "sweep_finished"
    assert kinds.count("trial_started") == 4 and kinds.count("trial_finished") == 4
    evals = [e for e in events if e["type"] == "trial_eval"]
    assert {e["number"] for e in evals} == {1, 2, 3, 4}
    assert all(e["sweep"] == "tiny" for e in events[1:])


def test_pruning_stops_a_hopeless_trial_early_with_its_reason(tmp_path):
    # A wide hidden layer makes a step take milliseconds, so the trial still has most of its
    # 400 steps (about a second) ahead when it is told to stop after its first evaluation.
    spec = {"name": "prune", "method": "grid",
            "base": {"preset": "digits8-mlp", "overrides": {
                "train_limit": 320, "test_limit": 300, "epochs": 40, "model.1.units": 2048}},
            "parameters": {"train.lr": {"values": [0.01, 0.02, 1e-6]}},
            "early_stopping": {"type": "median", "n_startup_trials": 2, "evals": 4}}
    events, summary = sweep_json(tmp_path, spec)
    a, b, c = summary["trials"]
    assert a["status"] == b["status"] == "completed" and a["steps"] == b["steps"] == 400
    assert c["status"] == "pruned"
    assert c["steps"] < 400                     # really stopped early, not marked after the fact
    r = c["pruned_reason"]
    assert r["rule"] == "median" and r["eval"] == 1 and r["step"] == 100 and r["compared"] == 2
    assert r["value"] < r["threshold"]
    first = [e["test_accuracy"] for e in events
             if e["type"] == "trial_eval" and e["eval"] == 1 and e["number"] in (1, 2)]
    assert r["threshold"] == pytest.approx(median(first))
    assert "median" in r["message"] and f"{r['threshold']:.4g}" in r["message"]
    assert not [e for e in events if e["type"] == "trial_eval" and e["number"] == 3
                and e["eval"] > 2]              # at most the evaluation made when it stopped


def test_table_output_ranks_the_trials(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"base": TINY, "method": "random", "max_trials": 2, "seed": 4,
                                "parameters": {"train.lr": {"min": 1e-3, "max": 0.05,
                                                            "log": True}}}))
    p = run("sweep", "--config", str(path))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("sweep digits8-mlp-random: random, 2 trials")
    rank = lines.index(next(ln for ln in lines if ln.startswith("rank")))
    assert len([ln for ln in lines[1:rank] if ln.strip().startswith("#")]) == 2   # live lines
    rows = lines[rank + 1:rank + 3]
    accs = [float(r.split()[3]) for r in rows]
    assert accs == sorted(accs, reverse=True) and any(ln.startswith("best: #") for ln in lines)


def test_bad_spec_exits_2_naming_the_fields(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"base": TINY, "method": "grid", "max_parallel": 0,
                                "parameters": {"train.lr": {"values": []},
                                               "model.9.units": {"values": [4]}}}))
    p = run("sweep", "--config", str(path), "--json")
    assert p.returncode == 2 and p.stdout == ""
    assert "parameters.train.lr.values:" in p.stderr and "parameters.model.9.units:" in p.stderr
    assert "max_parallel:" in p.stderr
    assert run("sweep", "--config", str(tmp_path / "missing.json")).returncode == 2
    p = run("sweep", "--preset", "lenet-search", "--set", "model.99.units=4")
    assert p.returncode == 2 and "base.overrides.model.99.units" in p.stderr
    assert run("sweep", "--preset", "lenet-search", "--max-parallel", "0").returncode == 2
