"""engine.inspect: every layer's output, every layer's weights, saliency by backprop.

The saliency is checked against a central-difference gradient of the class score with
respect to the input, on tiny float64 nets whose inputs sit away from ReLU/max-pool kinks
(smooth activations, or random non-zero pixels).
"""
import copy

import numpy as np
import pytest

from engine import Model, get_preset, validate_config
from engine.inspect import layer_outputs, layer_weights, saliency

TINY_CONV = [{"type": "conv2d", "filters": 3, "kernel_size": 3},
             {"type": "tanh"},
             {"type": "avgpool2d", "pool_size": 2},
             {"type": "conv2d", "filters": 4, "kernel_size": 2, "padding": 1},
             {"type": "sigmoid"},
             {"type": "flatten"},
             {"type": "dense", "units": 6},
             {"type": "batchnorm"},
             {"type": "tanh"},
             {"type": "dropout", "rate": 0.5},
             {"type": "dense", "units": 5}]
TINY_RELU = [{"type": "conv2d", "filters": 2, "kernel_size": 3},
             {"type": "relu"},
             {"type": "maxpool2d", "pool_size": 2},
             {"type": "flatten"},
             {"type": "dense", "units": 5}]


def numerical_grad(model, x, cls, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (model.forward(xp[None])[0, cls] - model.forward(xm[None])[0, cls]) / (2 * eps)
    return g


@pytest.mark.parametrize("spec", [TINY_CONV, TINY_RELU], ids=["smooth", "relu-maxpool"])
def test_saliency_equals_numerical_input_gradient(spec):
    model = Model(spec, input_shape=(8, 8, 1), num_classes=5, dtype="float64", seed=3,
                  normalize=((0.2,), (0.5,)))
    rng = np.random.default_rng(0)
    # running statistics other than 0/1, so evaluation-mode BatchNorm is really affine
    for layer in model.layers:
        for arr in layer.buffers().values():
            arr[...] = rng.uniform(0.5, 1.5, arr.shape)
    x = rng.uniform(0.05, 0.95, (8, 8, 1))
    out = saliency(model, x)
    assert out["cls"] == int(np.argmax(model.forward(x[None])[0]))
    num = numerical_grad(model, x, out["cls"])
    assert out["gradient"].shape == (8, 8, 1)
    assert np.abs(num).max() > 1e-6
    np.testing.assert_allclose(out["gradient"], num, rtol=1e-6, atol=1e-9)
    other = saliency(model, x, cls=(out["cls"] + 1) % 5)
    np.testing.assert_allclose(other["gradient"], numerical_grad(model, x, other["cls"]),
                               rtol=1e-6, atol=1e-9)


def test_saliency_of_a_float32_model_is_float64_and_changes_nothing():
    model = Model(TINY_RELU, input_shape=(8, 8, 1), num_classes=5, dtype="float32", seed=1)
    before = {k: v.copy() for k, v in model.state_arrays().items()}
    x = np.random.default_rng(1).uniform(0, 1, (8, 8, 1)).astype(np.float32)
    x0 = x.copy()
    out = saliency(model, x)
    assert out["gradient"].dtype == np.float64
    np.testing.assert_array_equal(x, x0)
    for k, v in model.state_arrays().items():
        np.testing.assert_array_equal(v, before[k])
        assert v.dtype == np.float32
    with pytest.raises(ValueError):
        saliency(model, x, cls=7)


@pytest.mark.parametrize("preset", ["lenet", "mlp"])
def test_outputs_have_the_validated_shapes_and_leave_the_input_alone(preset):
    cfg, summary = validate_config(copy.deepcopy(get_preset(preset)))
    model = Model.from_config(cfg)
    x = np.random.default_rng(2).uniform(0, 1, (28, 28, 1)).astype(np.float32)
    x0 = x.copy()
    outs = layer_outputs(model, x)
    assert [o["shape"] for o in outs] == [r["output_shape"] for r in summary["layers"]]
    assert [o["type"] for o in outs] == [r["type"] for r in summary["layers"]]
    assert all(o["array"].shape == (1, *o["shape"]) for o in outs)
    np.testing.assert_array_equal(x, x0)
    # the last output is the model's own
    np.testing.assert_allclose(outs[-1]["array"], model.forward(x[None]), rtol=1e-5)
    np.testing.assert_array_equal(x, x0)


def test_weights_of_every_layer():
    cfg, _ = validate_config(copy.deepcopy(get_preset("lenet")))
    model = Model.from_config(cfg)
    ws = layer_weights(model)
    convs = [w for w in ws if w["type"] == "conv2d"]
    assert len(convs) >= 2
    for w in convs:
        kh, kw, c, f = w["shape"]
        assert w["kernels"].shape == (min(f, 64), kh, kw, c) and w["total"] == f
    mlp = Model([{"type": "flatten"}, {"type": "dense", "units": 100}, {"type": "relu"},
                 {"type": "dense", "units": 10}], input_shape=(28, 28, 1))
    first, second = layer_weights(mlp)
    assert first["kernels"].shape == (64, 28, 28, 1)             # tiles: its input is the image
    assert (first["shown"], first["total"]) == (64, 100)
    assert second["kernels"].shape == (10, 100)                  # rows: its input is not
