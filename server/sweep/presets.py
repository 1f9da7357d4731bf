"""Sweep presets: a sweep (or a series of sweeps) to run by name.

``student-report`` is the student report's section 3.2, "Working on parameters": four
sub-sweeps on the ``student-cnn`` design, run one after the other, with the report's settings
(raw pixels, normal init with std 0.2, batch 100, lr 0.015, momentum 0.9, weight decay 5e-4).
``REPORT`` holds the report's own numbers (/work/shared/design/REFERENCE-RESULTS.md) for each
trial, by the parameter value that trial sets, so a result view can print them next to ours.
"""
from __future__ import annotations

import copy

# The report's settings on the student-cnn design: raw [0, 1] pixels and N(0, 0.2) weights.
_STUDENT = {"preset": "student-cnn",
            "overrides": {"normalize": "none", "init": {"type": "normal", "std": 0.2}}}

# The report's "dynamic" rate: 0.2 if loss > 1, 0.1 if > 0.5, 0.05 if > 0.2, else
# max(0.005, loss / 5). Our loss schedule switches at thresholds, so the last part is a
# staircase with the formula's value at each threshold (0.2 -> 0.04, 0.1 -> 0.02, ...).
DYNAMIC = {"type": "loss", "table": [[1.0, 0.1], [0.5, 0.05], [0.2, 0.04], [0.1, 0.02],
                                     [0.05, 0.01], [0.025, 0.005]]}


def _with(overrides: dict) -> dict:
    base = copy.deepcopy(_STUDENT)
    base["overrides"].update(overrides)
    return base


SWEEP_PRESETS: dict[str, dict] = {
    "student-report": {
        "title": "The student report's parameter study (14 runs)",
        "description": "student-cnn with the report's raw pixels and init std 0.2: learning rate "
                       "{0.005, 0.01, 0.05, 0.1, the loss-driven schedule} for 5 epochs, then "
                       "weight decay {5e-5, 5e-4, 5e-2}, momentum {0.80, 0.85, 0.90} and init std "
                       "{0.01, 0.1, 1} for 3 epochs each; four grids run one after the other. "
                       "The schedule starts at 0.2 and follows the report's loss thresholds, its "
                       "max(0.005, loss / 5) tail as steps. "
                       "Reproduced: weight decay 0.05 is far the worst (ours 89.8% against "
                       "95.5-95.6%; report 82.9%); momentum changes little (ours 94.6-95.6%, "
                       "report 96.4-97.2%); larger learning rates converge faster (test loss "
                       "after epoch 1: ours 0.35 at lr 0.005, 0.18 at 0.05, 0.16 at 0.1). "
                       "Where ours differ: after 5 epochs 0.01 ends best here (96.5%), 0.05 and "
                       "0.1 peak at 96.6% in epochs 2-3 and end at 95.5% (report: 97.8%, 97.7%), "
                       "and the schedule ends at 94.0% (report 97.9%). Init std 0.01 is stuck "
                       "at chance through epoch 1 (11.4%, loss 2.29) but escapes in epoch 2 "
                       "and ends at 95.0% (report: 9.8% after 3 epochs); without momentum, "
                       "a 10x smaller step, it stays at 11.4% for all 3 epochs, so the report's "
                       "run escaped the same plateau more slowly. Init std 1 fails here "
                       "(11.4%: the first loss is 13, the first steps kill 99% of the first "
                       "conv's ReLUs; clip_norm 1 rescues it to 85%) where the report got "
                       "96.1%. Numbers: seed 0, this machine.",
        "reference": "a from-scratch NumPy CNN report (2018), section 3.2: 14 runs, about "
                     "4,800 s on an i7-8750H",
        "spec": {"name": "student-report", "series": [
            {"name": "learning-rate", "method": "grid",
             "base": _with({"epochs": 5, "lr": 0.2}),
             "parameters": {
                 "train.schedule": {"values": [{"type": "constant"}, DYNAMIC]},
                 "train.lr": {"values": [0.005, 0.01, 0.05, 0.1],
                              "when": {"train.schedule": {"type": "constant"}}}}},
            {"name": "weight-decay", "method": "grid", "base": _with({"epochs": 3}),
             "parameters": {"train.weight_decay": {"values": [5e-5, 5e-4, 5e-2]}}},
            {"name": "momentum", "method": "grid", "base": _with({"epochs": 3}),
             "parameters": {"train.momentum": {"values": [0.80, 0.85, 0.90]}}},
            {"name": "init-std", "method": "grid", "base": _with({"epochs": 3}),
             "parameters": {"train.init.std": {"values": [0.01, 0.1, 1.0]}}},
        ]},
    },
    "lenet-search": {
        "title": "Tune LeNet for one epoch (TPE, 16 trials, ASHA)",
        "description": "tpe over lr (log 1e-3..0.3), momentum (0.8..0.99), weight decay (log "
                       "1e-6..1e-2) and batch size {32, 64, 128} for the lenet preset at 1 epoch; "
                       "16 trials, 2 at a time; trial 1 is lenet's own values (lr 0.05, momentum "
                       "0.9, weight decay 5e-4, batch 64), then TPE; successive halving (the top "
                       "half goes on) on the test accuracy at 4 evaluations per trial",
        "reference": "the lenet preset after its first epoch: 98.46%; lenet's values trained for "
                     "1 epoch (trial 1): 98.62%. Over seeds 0-5 the search found better in 3 "
                     "(98.67-98.71%), by less than the test set's standard error (0.12 points); "
                     "with seed 0 trial 1 stays best (benchmarks/README.md)",
        "spec": {"name": "lenet-search", "method": "tpe",
                 "base": {"preset": "lenet", "overrides": {"epochs": 1}},
                 "parameters": {
                     "train.lr": {"min": 1e-3, "max": 0.3, "log": True},
                     "train.momentum": {"min": 0.8, "max": 0.99},
                     "train.weight_decay": {"min": 1e-6, "max": 1e-2, "log": True},
                     "train.batch_size": {"values": [32, 64, 128]}},
                 "objective": {"metric": "test_accuracy", "direction": "maximize"},
                 "max_trials": 16, "max_parallel": 2, "seed": 0, "start_from_base": True,
                 "early_stopping": {"type": "asha", "min_resource": 1, "reduction_factor": 2,
                                    "evals": 4}},
    },
}

#: the report's (loss, accuracy, seconds) per sub-sweep and parameter value
REPORT = {
    "learning-rate": {"train.lr": {0.005: (0.242, 0.956, 449.478), 0.01: (0.202, 0.965, 447.014),
                                   0.05: (0.121, 0.978, 453.529), 0.1: (0.126, 0.977, 450.358)},
                      "train.schedule": {"loss": (0.127, 0.979, 497.508)}},
    "weight-decay": {"train.weight_decay": {5e-5: (0.140, 0.975, 283.867),
                                            5e-4: (0.208, 0.963, 281.673),
                                            5e-2: (0.958, 0.829, 289.794)}},
    "momentum": {"train.momentum": {0.80: (0.189, 0.968, 281.843), 0.85: (0.197, 0.964, 277.002),
                                    0.90: (0.164, 0.972, 274.881)}},
    "init-std": {"train.init.std": {0.01: (3.257, 0.098, 275.912), 0.1: (0.192, 0.966, 270.686),
                                    1.0: (0.226, 0.961, 282.762)}},
}


def report_numbers(sweep_name: str, params: dict) -> tuple | None:
    """The report's (loss, accuracy, seconds) for a student-report trial, if it has one."""
    table = REPORT.get(sweep_name, {})
    sched = params.get("train.schedule")
    if isinstance(sched, dict) and sched.get("type") == "loss":
        return table.get("train.schedule", {}).get("loss")
    for path, rows in table.items():
        v = params.get(path)
        if v is not None and not isinstance(v, dict):
            return rows.get(v)
    return None


def trial_reference(preset: str | None, sweep_name: str, params: dict) -> dict | None:
    """The published numbers for one trial of a sweep preset: ``{"test_accuracy", "loss",
    "seconds"}`` (the report's, for ``student-report``), or None."""
    if preset != "student-report":
        return None
    ref = report_numbers(sweep_name, params)
    if ref is None:
        return None
    loss, acc, secs = ref
    return {"test_accuracy": acc, "loss": loss, "seconds": secs}


def preset_references(preset: str) -> list[dict]:
    """A sweep preset's published numbers, one per trial they exist for: ``[{"sweep",
    "params": {PATH: value}, "test_accuracy", "loss", "seconds"}]`` (empty if none)."""
    if preset != "student-report":
        return []
    out = []
    for sweep, table in REPORT.items():
        for path, rows in table.items():
            for value, (loss, acc, secs) in rows.items():
                v = DYNAMIC if path == "train.schedule" else value
                out.append({"sweep": sweep, "params": {path: copy.deepcopy(v)},
                            "test_accuracy": acc, "loss": loss, "seconds": secs})
    return out


def sweep_preset_names() -> list[str]:
    return list(SWEEP_PRESETS)


def get_sweep_preset(name: str) -> dict:
    """A deep copy of a sweep preset's spec (a sweep, or a series of sweeps)."""
    if name not in SWEEP_PRESETS:
        raise KeyError(f"unknown sweep preset {name!r}; choose one of {', '.join(SWEEP_PRESETS)}")
    return copy.deepcopy(SWEEP_PRESETS[name]["spec"])


def count_trials(spec: dict) -> int:
    """How many trials a validated series runs."""
    return sum(s["max_trials"] for s in spec["series"])
