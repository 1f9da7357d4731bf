"""The sweep presets' published numbers: each student-report trial finds the report's row, and
the ranked table prints them beside ours (no training here)."""
from server.sweep.cli import _add_references, _table
from server.sweep.presets import (DYNAMIC, REPORT, get_sweep_preset, preset_references,
                                  trial_reference)
from server.sweep.spec import validate_series


def test_every_student_report_trial_has_the_reports_numbers():
    spec = validate_series(get_sweep_preset("student-report"))
    seen = []
    for part in spec["series"]:
        for params in part["grid"]:
            ref = trial_reference("student-report", part["name"], params)
            assert ref is not None, (part["name"], params)
            seen.append((part["name"], ref["test_accuracy"], ref["loss"], ref["seconds"]))
    assert len(seen) == 14 == len(set(seen))          # one distinct report row per trial
    assert ("init-std", 0.098, 3.257, 275.912) in seen
    assert ("learning-rate", 0.979, 0.127, 497.508) in seen   # the loss-driven schedule
    # other presets, and a sweep of the same name outside the preset, have none
    assert trial_reference("lenet-search", "init-std", {"train.init.std": 0.01}) is None
    assert trial_reference(None, "init-std", {"train.init.std": 0.01}) is None
    assert trial_reference("student-report", "momentum", {"train.momentum": 0.95}) is None


def test_preset_references_list_the_14_runs():
    refs = preset_references("student-report")
    assert len(refs) == 14 == sum(len(rows) for t in REPORT.values() for rows in t.values())
    dyn = [r for r in refs if "train.schedule" in r["params"]]
    assert dyn == [{"sweep": "learning-rate", "params": {"train.schedule": DYNAMIC},
                    "test_accuracy": 0.979, "loss": 0.127, "seconds": 497.508}]
    assert preset_references("lenet-search") == []


def _summary(name, trials):
    return {"sweep": {"name": name, "objective": {"metric": "test_accuracy",
                                                  "direction": "maximize"}},
            "trials": [{"number": i, "params": p, "status": "completed", "objective": acc,
                        "test_accuracy": acc, "final_loss": loss, "train_seconds": 8.0}
                       for i, (p, acc, loss) in enumerate(trials, 1)]}


def test_the_ranked_table_shows_ours_beside_the_reports():
    s = _add_references(_summary("init-std", [({"train.init.std": 0.01}, 0.95, 0.17),
                                              ({"train.init.std": 1.0}, 0.1135, 2.30)]),
                        "student-report")
    head, first, second = _table(s)
    cols = head.split()
    assert cols[:4] == ["rank", "trial", "status", "test_accuracy"]
    assert cols[4:6] == ["report", "acc"] and "report loss" in head and "report s" in head
    assert first.split()[:6] == ["1", "#1", "completed", "0.9500", "0.098", "0.1700"]
    assert first.split()[6] == "3.257" and "275.9" in first
    assert second.split()[3:5] == ["0.1135", "0.961"]
    # without references the table has no report columns
    plain = _table(_add_references(_summary("init-std", [({"train.init.std": 0.01}, 0.9, 0.3)]),
                                   None))
    assert "report" not in plain[0] and plain[1].split()[3] == "0.9000"
