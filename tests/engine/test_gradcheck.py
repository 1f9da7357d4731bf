"""engine.gradcheck on whole presets: kinks are counted, not mistaken for wrong gradients.

Every preset on 3 MNIST/digits8 test images in float64 (the server's check): the answer is
"agrees" or "inconclusive" with a count of entries at kinks, never "disagrees". A backward
made deliberately wrong (a test-only monkeypatch) must still "disagree".
"""
import copy

import numpy as np
import pytest

from engine import Model, load_dataset, validate_config
from engine.gradcheck import check_model, verdict
from engine.layers import Conv2D, Dense, MaxPool2D, ReLU
from engine.presets import preset_names, get_preset

THRESHOLD = 1e-4   # the server's
N = 3


def preset_case(name):
    cfg = copy.deepcopy(get_preset(name))
    cfg["train"].update(dtype="float64", batch_size=N)
    cfg, _ = validate_config(cfg)
    data = load_dataset(cfg["dataset"]["name"], test_limit=N, train_limit=1)
    x = data.batch(data.x_test, slice(0, N), np.float64)
    return Model.from_config(cfg), x, data.y_test[:N]


def check(name, entries=12):
    model, x, y = preset_case(name)
    rows = check_model(model, x, y, max_entries=entries)
    return rows, verdict(rows, THRESHOLD)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_agrees_or_counts_its_kinks(name):
    rows, v = check(name)
    assert v["status"] in ("agrees", "inconclusive"), (v, rows)
    assert v["max_rel_error"] < THRESHOLD
    assert (v["status"] == "inconclusive") == (v["at_kinks"] > 0)
    assert all(r["checked"] + r["at_kinks"] == min(12, int(np.prod(r["shape"]))) for r in rows)
    assert v["checked"] > v["at_kinks"]          # most of the sample is really compared


def test_lenet_conv_biases_sit_on_kinks():
    """MNIST's exact-zero background and zero initial biases: every conv bias moves whole
    feature maps across ReLU's kink, so those entries are counted, not compared (they gave
    a relative error of 1.0 before)."""
    rows, v = check("lenet")
    assert v["status"] == "inconclusive"
    by = {r["name"]: r for r in rows}
    assert by["0.conv2d.bias"]["at_kinks"] == 8 and by["0.conv2d.bias"]["rel_error"] is None
    assert by["0.conv2d.kernel"]["at_kinks"] == 0 and by["0.conv2d.kernel"]["checked"] == 12


def test_off_the_kinks_a_relu_net_agrees():
    model, x, y = preset_case("lenet")
    for p in model.params:
        if p.name.endswith("bias"):
            p.value[...] = 0.05            # the background sits off the kink
    v = verdict(check_model(model, x, y, max_entries=12), THRESHOLD)
    assert v == {**v, "status": "agrees", "at_kinks": 0}


def scaled_param_grads(cls, factor=1.01):
    orig = cls.backward

    def backward(self, grad):
        before = [p.grad.copy() for p in self.params]
        dx = orig(self, grad)
        for p, b in zip(self.params, before):
            p.grad[...] = b + (p.grad - b) * factor
        return dx
    return backward


@pytest.mark.parametrize("name", preset_names())
def test_a_wrong_dense_backward_disagrees(name, monkeypatch):
    monkeypatch.setattr(Dense, "backward", scaled_param_grads(Dense))
    rows, v = check(name)
    assert v["status"] == "disagrees", (v, rows)


@pytest.mark.parametrize("mutation", ["relu-dx-1.01", "conv-bias-dropped", "maxpool-dx-1.01"])
def test_a_wrong_backward_in_lenet_disagrees(mutation, monkeypatch):
    if mutation == "relu-dx-1.01":
        orig = ReLU.backward
        monkeypatch.setattr(ReLU, "backward", lambda self, g: orig(self, g) * 1.01)
    elif mutation == "maxpool-dx-1.01":
        orig = MaxPool2D.backward
        monkeypatch.setattr(MaxPool2D, "backward", lambda self, g: orig(self, g) * 1.01)
    else:
        orig = Conv2D.backward

        def drop_bias(self, g):
            dx = orig(self, g)
            self.params[1].grad[...] = 0
            return dx
        monkeypatch.setattr(Conv2D, "backward", drop_bias)
    model, x, y = preset_case("lenet")
    if mutation == "conv-bias-dropped":
        for p in model.params:
            if p.name.endswith("conv2d.bias"):
                p.value[...] = 0.05        # otherwise every conv bias entry is at a kink
    rows = check_model(model, x, y, max_entries=12)
    assert verdict(rows, THRESHOLD)["status"] == "disagrees", rows
