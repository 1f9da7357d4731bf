"""``apply_overrides``: null means what it means in a config; epochs and iterations, one rule."""
import pytest

from engine import SpecError, apply_overrides, get_preset, validate_config


def errors(cfg) -> list[dict]:
    with pytest.raises(SpecError) as info:
        validate_config(cfg)
    return info.value.errors


@pytest.mark.parametrize("key,loc", [("lr", ["train", "lr"]), ("batch_size", ["train", "batch_size"]),
                                     ("seed", ["train", "seed"]), ("optimizer", ["train", "optimizer"]),
                                     ("dataset", ["dataset", "name"]),
                                     ("normalize", ["dataset", "normalize"])])
def test_null_is_refused_where_the_config_refuses_it(key, loc):
    """``overrides: {"lr": null}`` once meant "leave it", while ``train.lr: null`` is refused."""
    cfg = apply_overrides(get_preset("mlp"), {key: None})
    section = "dataset" if loc[0] == "dataset" else "train"
    full = get_preset("mlp")
    full[section][loc[1]] = None
    assert [e["loc"] for e in errors(cfg)] == [loc] == [e["loc"] for e in errors(full)]


@pytest.mark.parametrize("key,section", [("clip_norm", "train"), ("train_limit", "dataset"),
                                         ("test_limit", "dataset")])
def test_null_means_none_where_none_is_the_default(key, section):
    cfg = get_preset("mlp")
    cfg[section][key] = 5
    out, _ = validate_config(apply_overrides(cfg, {key: None}))
    assert out[section][key] is None


def test_epochs_or_iterations_replaces_the_presets_other():
    out, _ = validate_config(apply_overrides(get_preset("mlp"), {"iterations": 5}))
    assert out["train"]["iterations"] == 5 and out["train"]["epochs"] is None
    out, _ = validate_config(apply_overrides(get_preset("dlfs-two-layer-net"), {"epochs": 2}))
    assert out["train"]["epochs"] == 2 and out["train"]["iterations"] is None


@pytest.mark.parametrize("order", [("epochs", "iterations"), ("iterations", "epochs")])
def test_epochs_and_iterations_together_are_refused_as_in_a_config(order):
    """Once the last one given won, silently."""
    over = {k: {"epochs": 2, "iterations": 5}[k] for k in order}
    for preset in ("mlp", "dlfs-two-layer-net"):
        assert [e["loc"] for e in errors(apply_overrides(get_preset(preset), over))] == [
            ["train", "iterations"]]


def test_a_null_other_does_not_clash():
    out, _ = validate_config(apply_overrides(get_preset("mlp"), {"iterations": 5, "epochs": None}))
    assert out["train"]["iterations"] == 5 and out["train"]["epochs"] is None
