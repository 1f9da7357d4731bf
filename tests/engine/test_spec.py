"""Spec validation: every bad input names the layer, the field and the rule (docs/reliability.md 11-15)."""
import copy
import math
import time

import pytest

from engine import Model, SpecError, get_preset, validate_config
from engine.presets import PRESETS


def errors_for(mutate, preset="lenet"):
    cfg = get_preset(preset)
    mutate(cfg)
    with pytest.raises(SpecError) as info:
        validate_config(cfg)
    return info.value.errors


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate_and_round_trip(name):
    cfg, summary = validate_config(get_preset(name))
    again, summary2 = validate_config(copy.deepcopy(cfg))
    assert again == cfg and summary2 == summary
    model = Model.from_config(cfg)
    assert model.get_config() == cfg["model"]
    assert sum(p.value.size for p in model.params) == summary["params"]
    assert summary["layers"][-1]["output_shape"] == [10]


def test_lenet_shapes_and_params():
    _, s = validate_config(get_preset("lenet"))
    shapes = [tuple(r["output_shape"]) for r in s["layers"]]
    assert shapes[:7] == [(28, 28, 8), (28, 28, 8), (14, 14, 8), (10, 10, 16), (10, 10, 16),
                          (5, 5, 16), (400,)]
    assert s["params"] == (25 * 8 + 8) + (25 * 8 * 16 + 16) + (400 * 128 + 128) + (128 * 10 + 10)
    assert 0 < s["memory_bytes"] < 200 * 1024 ** 2


# docs/reliability.md 11: unknown type, missing type, unknown extra fields
def test_unknown_type():
    (e,) = errors_for(lambda c: c["model"].__setitem__(2, {"type": "maxpool3d"}))
    assert e["loc"] == ["model", 2, "type"] and "layer 3" in e["msg"] and "'maxpool3d'" in e["msg"]


def test_missing_type():
    (e,) = errors_for(lambda c: c["model"].__setitem__(0, {"filters": 8}))
    assert e["loc"] == ["model", 0, "type"] and "type is required" in e["msg"]


def test_unknown_field():
    (e,) = errors_for(lambda c: c["model"][0].update(filterz=3))
    assert e["loc"] == ["model", 0, "filterz"] and "unknown field 'filterz'" in e["msg"]
    (e,) = errors_for(lambda c: c["train"].update(learning_rate=3))
    assert e["loc"] == ["train", "learning_rate"]
    (e,) = errors_for(lambda c: c.update(extra=1))
    assert e["loc"] == ["extra"]


# docs/reliability.md 12: sizes of 0, negative, a string, a float
@pytest.mark.parametrize("field,index", [("filters", 0), ("kernel_size", 0), ("stride", 0),
                                         ("units", 7), ("pool_size", 2)])
@pytest.mark.parametrize("value", [0, -3, "5", 2.5, None, True])
def test_bad_sizes(field, index, value):
    errs = errors_for(lambda c: c["model"][index].update({field: value}))
    assert errs[0]["loc"] == ["model", index, field], errs
    assert field in errs[0]["msg"] and f"layer {index + 1}" in errs[0]["msg"]


@pytest.mark.parametrize("value", [0, -1, "64", 6.4])
def test_bad_batch_size(value):
    (e,) = errors_for(lambda c: c["train"].update(batch_size=value))
    assert e["loc"] == ["train", "batch_size"] and "batch_size" in e["msg"]


def test_all_errors_reported_at_once():
    def bad(c):
        c["model"][0]["filters"] = 0
        c["model"][7]["units"] = "x"
        c["train"]["lr"] = -1
    locs = [e["loc"] for e in errors_for(bad)]
    assert ["model", 0, "filters"] in locs and ["model", 7, "units"] in locs and ["train", "lr"] in locs


# docs/reliability.md 13: sizes needing gigabytes are rejected before allocation, with the estimate
def test_huge_units_rejected_fast_with_estimate():
    t = time.perf_counter()
    (e,) = errors_for(lambda c: c["model"][1].update(units=10 ** 9), "mlp")
    assert time.perf_counter() - t < 1.0
    assert "GiB" in e["msg"] and e["loc"] == ["model", 1, "units"]


def test_in_range_but_too_big_model_rejected_with_estimate():
    (e,) = errors_for(lambda c: c["model"][1].update(units=60000) or
                      c["model"].insert(3, {"type": "dense", "units": 60000}), "mlp")
    assert e["loc"] == ["model"] and "GiB" in e["msg"] and "parameters" in e["msg"]


def test_ten_thousand_layers():
    (e,) = errors_for(lambda c: c.update(model=[{"type": "relu"}] * 10_000))
    assert e["loc"] == ["model"] and "10000 layers" in e["msg"]


# docs/reliability.md 14: shapes that do not fit
def test_kernel_larger_than_input():
    (e,) = errors_for(lambda c: c["model"][3].update(kernel_size=15))
    assert e["loc"] == ["model", 3, "kernel_size"] and "larger than its input 14x14" in e["msg"]


def test_dense_on_unflattened_input():
    (e,) = errors_for(lambda c: c["model"].pop(6))
    assert e["loc"] == ["model", 6] and "add a flatten layer" in e["msg"]


def test_conv_after_flatten():
    (e,) = errors_for(lambda c: c["model"].insert(7, {"type": "conv2d", "filters": 2, "kernel_size": 3}))
    assert e["loc"] == ["model", 7] and "image input" in e["msg"]


def test_output_size_not_classes():
    (e,) = errors_for(lambda c: c["model"][9].update(units=7))
    assert "output shape is (7,)" in e["msg"] and "10 classes" in e["msg"]


def test_empty_and_non_list_model():
    assert errors_for(lambda c: c.update(model=[]))[0]["loc"] == ["model"]
    assert errors_for(lambda c: c.update(model="conv"))[0]["loc"] == ["model"]
    assert errors_for(lambda c: c["model"].__setitem__(0, 5))[0]["loc"] == ["model", 0]


# docs/reliability.md 15: lr of NaN, Infinity, 1e309, below 0; epochs of 10**9
@pytest.mark.parametrize("lr", [math.nan, math.inf, float("1e309"), -0.1, 0, "0.1"])
def test_bad_lr(lr):
    (e,) = errors_for(lambda c: c["train"].update(lr=lr))
    assert e["loc"] == ["train", "lr"] and "lr" in e["msg"]


def test_huge_epochs():
    (e,) = errors_for(lambda c: c["train"].update(epochs=10 ** 9))
    assert e["loc"] == ["train", "epochs"]


def test_total_steps_bounded():
    (e,) = errors_for(lambda c: c["train"].update(epochs=10_000, batch_size=1))
    assert "steps" in e["msg"]


def test_other_train_fields():
    assert errors_for(lambda c: c["train"].update(optimizer="lbfgs"))[0]["loc"] == ["train", "optimizer"]
    assert errors_for(lambda c: c["train"].update(schedule={"type": "warp"}))[0]["loc"] == ["train", "schedule"]
    assert errors_for(lambda c: c["train"].update(schedule={"type": "loss", "table": [[1, "x"]]}))[0][
        "loc"] == ["train", "schedule", "table"]
    assert errors_for(lambda c: c["train"].update(init={"type": "zeros"}))[0]["loc"] == ["train", "init", "type"]
    assert errors_for(lambda c: c["train"].update(epochs=2, iterations=5))[0]["loc"] == ["train", "iterations"]
    assert errors_for(lambda c: c["train"].update(probe_indices=[-1]))[0]["loc"] == ["train", "probe_indices"]


@pytest.mark.parametrize("name", ["../mnist", "/etc/passwd", "%2e%2e", "mnist\x00", "MNIST", 5])
def test_bad_dataset_names(name):
    (e,) = errors_for(lambda c: c["dataset"].update(name=name))
    assert e["loc"] == ["dataset", "name"]


@pytest.mark.parametrize("name", ["x" * 1_000_000, "bad\x07name", "line\nbreak"])
def test_bad_run_names(name):
    (e,) = errors_for(lambda c: c.update(name=name))
    assert e["loc"] == ["name"]


def test_aliases_and_defaults():
    cfg, _ = validate_config({"model": [{"type": "conv", "filters": 2, "kernel_size": 3},
                                        {"type": "maxpool"}, {"type": "flatten"},
                                        {"type": "linear", "units": 10}]})
    assert [layer["type"] for layer in cfg["model"]] == ["conv2d", "maxpool2d", "flatten", "dense"]
    assert cfg["model"][1] == {"type": "maxpool2d", "pool_size": 2, "stride": 2}
    assert cfg["train"]["epochs"] == 1 and cfg["dataset"]["name"] == "mnist"


def test_error_carries_partial_summary():
    cfg = get_preset("lenet")
    cfg["model"][3]["kernel_size"] = 15
    with pytest.raises(SpecError) as info:
        validate_config(cfg)
    rows = info.value.summary["layers"]
    assert [r["output_shape"] for r in rows] == [[28, 28, 8], [28, 28, 8], [14, 14, 8]]


def test_overrides_go_to_their_section():
    from engine import apply_overrides
    cfg = apply_overrides(get_preset("dlfs-two-layer-net"), {
        "epochs": 2, "lr": 0.5, "train_limit": 100, "test_limit": 50, "normalize": "standard",
        "dataset": "digits8", "name": "mine"})
    assert "iterations" not in cfg["train"] and cfg["train"]["epochs"] == 2
    assert cfg["train"]["lr"] == 0.5 and "seed" not in cfg["train"]
    assert cfg["dataset"] == {"name": "digits8", "train_limit": 100, "test_limit": 50,
                              "normalize": "standard"}
    assert cfg["name"] == "mine"
    validate_config(cfg)


# a value that cannot be a dict key (an object, a list) where a name is expected: an error
# naming the field, never a TypeError (issue 8, server finding 1: a 500)
@pytest.mark.parametrize("bad", [{}, [], {"type": "relu"}, ["dense"]], ids=repr)
def test_unhashable_names_are_errors(bad):
    (e,) = errors_for(lambda c: c["model"].__setitem__(0, {"type": bad}))
    assert e["loc"] == ["model", 0, "type"] and "unknown type" in e["msg"]
    (e,) = errors_for(lambda c: c["model"][0].update(init={"type": bad}))
    assert e["loc"] == ["model", 0, "init", "type"]
    (e,) = errors_for(lambda c: c["train"].update(init={"type": bad}))
    assert e["loc"] == ["train", "init", "type"]
    for field in ("schedule", "optimizer", "loss", "dtype", "sampling"):
        (e,) = errors_for(lambda c: c["train"].update({field: {"type": bad}}
                                                      if field == "schedule" else {field: bad}))
        assert e["loc"] == ["train", field], field
    for field in ("name", "normalize"):
        (e,) = errors_for(lambda c: c["dataset"].update({field: bad}))
        assert e["loc"] == ["dataset", field], field


@pytest.mark.parametrize("bad", [{}, ["mlp"]], ids=repr)
def test_unhashable_preset_name_and_overrides(bad):
    from engine import apply_overrides
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset(bad)
    cfg = apply_overrides(get_preset("mlp"), {"dataset": bad, "optimizer": bad, "loss": bad})
    with pytest.raises(SpecError) as info:
        validate_config(cfg)
    assert sorted(e["loc"] for e in info.value.errors) == [
        ["dataset", "name"], ["train", "loss"], ["train", "optimizer"]]
