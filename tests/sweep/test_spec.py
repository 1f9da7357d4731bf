"""Sweep specs: every bad input gets an error at its loc; good ones normalise."""
import pytest

from engine.spec import SpecError
from server.sweep.core import trial_config
from server.sweep.presets import SWEEP_PRESETS, get_sweep_preset
from server.sweep.spec import MAX_GRID, MAX_TRIALS, validate_series, validate_sweep

BASE = {"preset": "digits8-mlp"}


def sweep(**kw):
    spec = {"base": BASE, "method": "grid", "parameters": {"train.lr": {"values": [0.1]}}}
    spec.update(kw)
    return spec


def errors(spec):
    with pytest.raises(SpecError) as e:
        validate_sweep(spec)
    return e.value.errors


def locs(spec):
    return [e["loc"] for e in errors(spec)]


@pytest.mark.parametrize("params, loc", [
    ({"train.foo": {"values": [1]}}, ["parameters", "train.foo"]),            # unknown field
    ({"train.init.std": {"values": [0.1]}}, ["parameters", "train.init.std"]),  # he init: no std
    ({"model.9.units": {"values": [8]}}, ["parameters", "model.9.units"]),    # no layer 9
    ({"optimizer.lr": {"values": [0.1]}}, ["parameters", "optimizer.lr"]),    # no such section
    ({"train.lr": {"values": []}}, ["parameters", "train.lr", "values"]),     # empty list
    ({"train.lr": {"values": [0.1, -1]}}, ["parameters", "train.lr", "values", 1]),  # engine says
    ({"train.lr": {"values": [0.1, 0.1]}}, ["parameters", "train.lr", "values", 1]),  # twice
    ({"model.3.units": {"values": [10, 5]}}, ["parameters", "model.3.units", "values", 1]),
    ({"train.lr": {"min": 0.1, "max": 0.2}}, ["parameters", "train.lr"]),     # float range, grid
    ({"train.lr": {"values": [0.1], "min": 0.1}}, ["parameters", "train.lr"]),
    ({"train.lr": {"values": [0.1], "when": {"train.optimizer": "sgd"}}},
     ["parameters", "train.lr", "when", "train.optimizer"]),                  # not in the space
    ({"train.optimizer": {"values": ["adam"]},
      "train.lr": {"values": [0.1], "when": {"train.optimizer": "sgd"}}},
     ["parameters", "train.lr", "when", "train.optimizer"]),                  # never that value
])
def test_bad_parameter_is_located(params, loc):
    assert loc in locs(sweep(parameters=params))


@pytest.mark.parametrize("param, loc", [
    ({"min": 1.0, "max": 0.1}, ["parameters", "train.lr", "min"]),          # min > max
    ({"min": 0, "max": 0.1, "log": True}, ["parameters", "train.lr", "min"]),  # log needs > 0
    ({"min": 1e-3}, ["parameters", "train.lr", "max"]),
    ({"min": -1.0, "max": 0.1}, ["parameters", "train.lr", "min"]),         # the engine refuses
])
def test_bad_range_is_located(param, loc):
    assert loc in locs(sweep(method="random", max_trials=3, parameters={"train.lr": param}))


def test_grid_over_the_limit_is_refused_without_enumerating_it():
    huge = {"train.seed": {"min": 0, "max": 10 ** 9, "int": True},
            "train.batch_size": {"min": 1, "max": 8000, "int": True}}
    errs = errors(sweep(parameters=huge))
    assert errs[0]["loc"] == ["parameters"] and f"{MAX_GRID:,}" in errs[0]["msg"]
    big = {"train.seed": {"values": list(range(101))},
           "train.batch_size": {"values": list(range(1, 101))}}
    assert ["parameters"] in locs(sweep(parameters=big))      # 10,100 combinations


def test_budget_objective_and_early_stopping_are_checked():
    assert ["max_trials"] in locs(sweep(method="random", max_trials=MAX_TRIALS + 1))
    assert ["max_trials"] in locs(sweep(method="tpe"))          # required for tpe
    assert ["max_parallel"] in locs(sweep(max_parallel=0))
    assert ["max_parallel"] in locs(sweep(max_parallel=-2))
    assert ["objective", "metric"] in locs(sweep(objective={"metric": "f1"}))
    assert ["objective", "direction"] in locs(sweep(objective={"direction": "up"}))
    assert ["early_stopping", "type"] in locs(sweep(early_stopping={"type": "hyperband"}))
    assert ["early_stopping", "type"] in locs(sweep(early_stopping={"type": {}}))  # not a 500
    assert ["early_stopping", "reduction_factor"] in locs(
        sweep(early_stopping={"type": "asha", "reduction_factor": 1}))
    assert ["objective", "metric"] in locs(sweep(
        base={"preset": "digits8-mlp", "overrides": {"eval_train_size": 0}},
        objective={"metric": "train_loss"}))
    assert validate_sweep(sweep(objective={"metric": "test_loss"}))["objective"] == {
        "metric": "test_loss", "direction": "minimize"}
    assert ["method"] in locs(sweep(method="bayes"))
    assert ["colour"] in locs(sweep(colour="red"))


def test_every_problem_is_reported_at_once():
    got = locs({"base": {"preset": "digits8-mlp", "overrides": {"lr": -1}}, "method": "grid",
                "parameters": {"train.lr": {"values": []}}, "max_parallel": 0,
                "objective": {"metric": "f1"}})
    assert ["base", "overrides", "lr"] in got and ["parameters", "train.lr", "values"] in got
    assert ["max_parallel"] in got and ["objective", "metric"] in got


def test_base_as_preset_with_dotted_override_or_full_config():
    s = validate_sweep(sweep(base={"preset": "digits8-mlp",
                                   "overrides": {"epochs": 2, "model.1.units": 8}}))
    assert s["config"]["train"]["epochs"] == 2 and s["config"]["model"][1]["units"] == 8
    assert ["base", "overrides", "model.1.units"] in locs(
        sweep(base={"preset": "digits8-mlp", "overrides": {"model.1.units": 0}}))
    assert ["base", "preset"] in locs(sweep(base={"preset": "nope"}))
    full = s["config"]
    assert validate_sweep(sweep(base=full))["config"] == full
    bad = {**full, "train": {**full["train"], "lr": "x"}}
    assert ["base", "train", "lr"] in locs(sweep(base=bad))


def test_grid_keeps_the_listed_order_and_applies_when():
    s = validate_sweep(sweep(parameters={
        "train.optimizer": {"values": ["adam", "sgd"]},
        "train.momentum": {"values": [0.5, 0.9], "when": {"train.optimizer": "sgd"}},
        "train.lr": {"values": [0.1, 0.01]}}))
    assert s["grid"] == [
        {"train.optimizer": "adam", "train.lr": 0.1}, {"train.optimizer": "adam", "train.lr": 0.01},
        {"train.optimizer": "sgd", "train.momentum": 0.5, "train.lr": 0.1},
        {"train.optimizer": "sgd", "train.momentum": 0.5, "train.lr": 0.01},
        {"train.optimizer": "sgd", "train.momentum": 0.9, "train.lr": 0.1},
        {"train.optimizer": "sgd", "train.momentum": 0.9, "train.lr": 0.01}]
    assert s["max_trials"] == 6
    assert validate_sweep(sweep(max_trials=2, parameters={"train.lr": {"values": [0.1, 0.2, 0.3]}})
                          )["grid"] == [{"train.lr": 0.1}, {"train.lr": 0.2}]


def test_when_cycle_is_refused():
    assert ["parameters", "train.lr", "when"] in locs(sweep(parameters={
        "train.lr": {"values": [0.1], "when": {"train.momentum": 0.9}},
        "train.momentum": {"values": [0.9], "when": {"train.lr": 0.1}}}))


def test_series_locates_errors_under_its_sweep():
    with pytest.raises(SpecError) as e:
        validate_series({"name": "two",
                         "series": [sweep(name="a"), sweep(name="b", max_parallel=0)]})
    assert e.value.errors[0]["loc"] == ["series", 1, "max_parallel"]


@pytest.mark.parametrize("name", list(SWEEP_PRESETS))
def test_presets_validate_and_every_trial_config_is_accepted(name):
    spec = validate_series(get_sweep_preset(name))
    for part in spec["series"]:
        for point in part.get("grid", []):
            cfg = trial_config(part, point)
            for path, v in point.items():
                node = cfg
                for seg in path.split("."):
                    node = node[int(seg) if seg.isdigit() else seg]
                assert node == v or (isinstance(v, dict) and node["type"] == v["type"])


def test_student_report_is_the_reports_14_runs_with_its_settings():
    spec = validate_series(get_sweep_preset("student-report"))
    parts = {p["name"]: p for p in spec["series"]}
    assert [len(p["grid"]) for p in spec["series"]] == [5, 3, 3, 3]
    lr = parts["learning-rate"]
    assert lr["config"]["train"]["epochs"] == 5
    assert [p.get("train.lr") for p in lr["grid"]] == [0.005, 0.01, 0.05, 0.1, None]
    assert lr["grid"][-1]["train.schedule"]["type"] == "loss"
    for p in spec["series"]:
        assert p["config"]["dataset"]["normalize"] == "none"
        assert p["config"]["train"]["batch_size"] == 100
        if p["name"] != "learning-rate":
            assert p["config"]["train"]["epochs"] == 3
            assert p["config"]["train"]["init"] == {"type": "normal", "std": 0.2}


def test_lenet_search_is_tpe_with_asha_at_one_epoch():
    s = validate_series(get_sweep_preset("lenet-search"))["series"][0]
    assert s["method"] == "tpe" and s["max_trials"] == 16
    assert s["early_stopping"]["type"] == "asha" and s["config"]["train"]["epochs"] == 1
    assert s["parameters"]["train.lr"] == {"min": 1e-3, "max": 0.3, "log": True, "int": False}
    assert s["parameters"]["train.batch_size"]["values"] == [32, 64, 128]


def test_start_from_base_needs_the_bases_values_inside_the_space():
    spec = {"base": BASE, "method": "tpe", "max_trials": 4, "start_from_base": True,
            "parameters": {"train.lr": {"min": 1e-3, "max": 0.1, "log": True},
                           "train.batch_size": {"values": [16, 32]}}}
    assert validate_sweep(spec)["start_point"] == {"train.lr": 0.01, "train.batch_size": 32}
    spec["parameters"]["train.batch_size"] = {"values": [64, 128]}
    assert errors(spec) == [{"loc": ["start_from_base"], "msg": "start_from_base: the base "
                             "design's train.batch_size = 32 is outside the values 64, 128"}]
    spec["parameters"]["train.lr"] = {"min": 0.02, "max": 0.1}
    assert "outside the range 0.02..0.1" in errors(spec)[0]["msg"]
    assert locs(sweep(start_from_base=True)) == [["start_from_base"]]       # a grid
    assert locs({**spec, "method": "random", "start_from_base": "yes"}) == [["start_from_base"]]
