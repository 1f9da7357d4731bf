"""The full ``student-report`` sweep (14 trials on full MNIST, about 3 minutes with 2 workers)
shows the report's findings that we reproduce, and our own init-std finding (slow)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def report():
    """``{sweep name: {param value: (trial, [its evals in order])}}`` from a real CLI run."""
    p = subprocess.run([sys.executable, "-m", "server", "sweep", "--preset", "student-report",
                        "--json", "--max-parallel", "2"], capture_output=True, text=True,
                       timeout=3600, cwd=str(ROOT))
    assert p.returncode == 0, p.stderr
    lines = [json.loads(s) for s in p.stdout.splitlines()]
    events, final = lines[:-1], lines[-1]
    out = {}
    for summary in final["sweeps"]:
        name = summary["sweep"]["name"]
        out[name] = {}
        for t in summary["trials"]:
            evals = [e for e in events if e["type"] == "trial_eval" and e["sweep"] == name
                     and e["number"] == t["number"]]
            (path, value), = [(k, v) for k, v in t["params"].items()
                              if not (k == "train.schedule" and v["type"] == "constant")]
            out[name][value["type"] if isinstance(value, dict) else value] = (t, evals)
    print({n: {k: round(t["test_accuracy"], 4) for k, (t, _) in s.items()}
           for n, s in out.items()}, f"wall {final['wall_seconds']:.0f} s")
    return out


def acc(entry) -> float:
    return entry[0]["test_accuracy"]


@pytest.mark.slow
def test_all_14_trials_complete_with_the_reports_numbers_beside_them(report):
    assert [len(s) for s in report.values()] == [5, 3, 3, 3]
    for sweep in report.values():
        for t, evals in sweep.values():
            assert t["status"] == "completed" and evals[-1]["epoch"] == len(evals)
            assert set(t["reference"]) == {"test_accuracy", "loss", "seconds"}


@pytest.mark.slow
def test_weight_decay_005_is_far_the_worst(report):
    wd = report["weight-decay"]
    assert acc(wd[0.05]) < min(acc(wd[5e-5]), acc(wd[5e-4])) - 0.02


@pytest.mark.slow
def test_momentum_changes_little(report):
    m = [acc(v) for v in report["momentum"].values()]
    assert max(m) - min(m) < 0.03 and min(m) > 0.9


@pytest.mark.slow
def test_larger_learning_rates_converge_faster(report):
    # faster: a clearly lower test loss after the first of 5 epochs
    first = {lr: report["learning-rate"][lr][1][0]["test_loss"] for lr in (0.005, 0.05, 0.1)}
    assert first[0.05] < 0.75 * first[0.005] and first[0.1] < 0.75 * first[0.005]


@pytest.mark.slow
def test_init_std_001_is_slow_to_start_but_learns_and_std_1_fails(report):
    s = report["init-std"]
    # ours: 0.01 starts on a plateau (report: stuck at 9.8% for 3 epochs) but escapes it
    assert s[0.01][1][0]["test_accuracy"] < s[0.1][1][0]["test_accuracy"] - 0.03
    assert acc(s[0.01]) > 0.9 and acc(s[0.1]) > 0.9
    # ours: std 1 kills the ReLUs in the first steps (the report's 1 learned, 96.1%)
    assert acc(s[1.0]) < 0.2


@pytest.mark.slow
def test_lenet_search_beats_the_lenet_preset_after_its_first_epoch():
    """lenet-search (16 trials at 1 epoch) against the lenet preset's own run, read at the end
    of its first epoch (the issue's "the lenet preset's own accuracy after 1 epoch")."""
    from engine import Control, Trainer, get_preset
    control, first = Control(), []

    def emit(e):
        if e.type == "eval" and e.epoch == 1 and not first:
            first.append(e.test_accuracy)
            control.stop()
    Trainer(get_preset("lenet"), emit=emit, control=control).run()
    p = subprocess.run([sys.executable, "-m", "server", "sweep", "--preset", "lenet-search",
                        "--json"], capture_output=True, text=True, timeout=3600, cwd=str(ROOT))
    assert p.returncode == 0, p.stderr
    final = json.loads(p.stdout.splitlines()[-1])
    trials = final["trials"]
    assert len(trials) == 16
    one = next(t for t in trials if t["number"] == 1)
    assert one["params"] == {"train.lr": 0.05, "train.momentum": 0.9,
                             "train.weight_decay": 5e-4, "train.batch_size": 64}
    print(f"lenet after epoch 1: {first[0]:.4f}; lenet-search best: "
          f"{final['best']['test_accuracy']:.4f} (trial {final['best']['number']})")
    assert final["best"]["test_accuracy"] > first[0]
