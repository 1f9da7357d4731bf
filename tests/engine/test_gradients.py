"""Every layer's input and parameter gradients against central differences, float64."""
import numpy as np
import pytest

from engine.gradcheck import check_model, numerical_gradient, rel_error
from engine.layers import (AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, LeakyReLU,
                           MaxPool2D, ReLU, Sigmoid, Tanh)
from engine.losses import MeanSquaredError, SoftmaxCrossEntropy
from engine.model import Model

SMOOTH = 1e-7


def distinct(shape, rng, spread=1.0):
    """Values with no ties and no near-ties (pooling) and none near 0 (ReLU kinks)."""
    n = int(np.prod(shape))
    v = (rng.permutation(n) + 1.0) / n * spread * np.where(rng.random(n) < 0.5, -1, 1)
    return v.reshape(shape)


# (id, factory, input shape without batch, input maker)
CASES = [
    ("dense", lambda: Dense(7), (5,), "normal"),
    ("dense-no-bias", lambda: Dense(3, use_bias=False), (6,), "normal"),
    ("conv2d", lambda: Conv2D(3, 3), (6, 6, 2), "normal"),
    ("conv2d-stride2-pad1", lambda: Conv2D(4, 3, stride=2, padding=1), (7, 7, 3), "normal"),
    ("conv2d-5x5-pad2", lambda: Conv2D(2, 5, padding=2), (6, 6, 1), "normal"),
    ("conv2d-no-bias", lambda: Conv2D(2, 2, use_bias=False), (5, 5, 2), "normal"),
    ("maxpool2d", lambda: MaxPool2D(2), (6, 6, 3), "distinct"),
    ("maxpool2d-odd", lambda: MaxPool2D(2), (7, 5, 2), "distinct"),
    ("maxpool2d-3s2-overlap", lambda: MaxPool2D(3, stride=2), (7, 7, 2), "distinct"),
    ("maxpool2d-3s3", lambda: MaxPool2D(3), (6, 6, 1), "distinct"),
    ("avgpool2d", lambda: AvgPool2D(2), (6, 6, 3), "normal"),
    ("avgpool2d-3s1", lambda: AvgPool2D(3, stride=1), (5, 5, 2), "normal"),
    ("flatten", lambda: Flatten(), (3, 4, 2), "normal"),
    ("relu", lambda: ReLU(), (4, 5), "distinct"),
    ("leaky_relu", lambda: LeakyReLU(0.1), (4, 5), "distinct"),
    ("sigmoid", lambda: Sigmoid(), (4, 5), "normal"),
    ("tanh", lambda: Tanh(), (4, 5), "normal"),
    ("dropout", lambda: Dropout(0.5), (4, 5), "normal"),
    ("batchnorm-dense", lambda: BatchNorm(), (5,), "normal"),
    ("batchnorm-conv", lambda: BatchNorm(), (3, 3, 2), "normal"),
]


@pytest.mark.parametrize("name,factory,shape,kind", CASES, ids=[c[0] for c in CASES])
def test_layer_gradients(name, factory, shape, kind):
    rng = np.random.default_rng(42)
    layer = factory()
    if hasattr(layer, "build"):
        layer.build(shape, rng, np.float64)
    for p in layer.params:  # non-trivial biases / BatchNorm scale
        p.value[...] += rng.standard_normal(p.value.shape) * 0.5
    n = 3
    x = distinct((n,) + shape, rng) if kind == "distinct" else rng.standard_normal((n,) + shape)
    out = layer.forward(x.copy(), True)
    g = rng.standard_normal(out.shape)

    def f():
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(7)  # same mask on every call
        return float(np.sum(layer.forward(x, True) * g))

    f()  # fixes the dropout mask used by backward
    layer.zero_grad()
    x_before = x.copy()
    dx = layer.backward(g)
    assert np.array_equal(x, x_before), "backward must not modify its input"
    num_dx, _ = numerical_gradient(f, x)
    assert dx.shape == x.shape
    assert rel_error(dx, num_dx) < SMOOTH, name
    analytic = [p.grad.copy() for p in layer.params]
    for p, a in zip(layer.params, analytic):
        num, _ = numerical_gradient(f, p.value)
        assert rel_error(a, num) < SMOOTH, f"{name}: {p.name}"


@pytest.mark.parametrize("loss_cls", [SoftmaxCrossEntropy, MeanSquaredError])
def test_loss_gradients(loss_cls):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 10))
    y = rng.integers(0, 10, 4)
    loss = loss_cls()
    _, dz = loss(z, y)
    num, _ = numerical_gradient(lambda: loss(z, y)[0], z)
    assert rel_error(dz, num) < SMOOTH


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]])
    loss, dz = SoftmaxCrossEntropy()(z, np.array([2, 0]))
    assert np.isfinite(loss) and np.isfinite(dz).all()
    assert loss == pytest.approx((2e4 + np.log(3)) / 2)


def test_maxpool_ties_route_to_first_maximum():
    x = np.zeros((1, 4, 4, 1))
    x[0, 2:, 2:, 0] = 5.0                       # one window fully tied at 5
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = 3.0         # a tie between cells 1 and 2 of a window
    pool = MaxPool2D(2)
    pool.forward(x, True)
    g = np.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    dx = pool.backward(g)
    expect = np.zeros_like(x)
    expect[0, 0, 1, 0] = 1.0   # first of the 3.0 tie (row-major)
    expect[0, 0, 2, 0] = 2.0   # all-zero window: its first cell
    expect[0, 2, 0, 0] = 3.0
    expect[0, 2, 2, 0] = 4.0   # all-5 window: its first cell
    assert np.array_equal(dx, expect)
    # the general (non-2x2) path must agree
    pool3 = MaxPool2D(2, stride=1)
    pool3.forward(np.zeros((1, 3, 3, 1)), True)
    dx3 = pool3.backward(np.ones((1, 2, 2, 1)))
    assert dx3.sum() == 4 and dx3[0, 0, 0, 0] == 1 and dx3[0, 1, 1, 0] == 1


def test_cnn_gradients_with_tied_maxima():
    """Flat image background ties every max-pool window; conv grads must stay exact."""
    rng = np.random.default_rng(3)
    spec = [{"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": 1}, {"type": "relu"},
            {"type": "maxpool2d", "pool_size": 2}, {"type": "conv2d", "filters": 2, "kernel_size": 3},
            {"type": "tanh"}, {"type": "avgpool2d", "pool_size": 2}, {"type": "flatten"},
            {"type": "dense", "units": 10}]
    model = Model(spec, input_shape=(10, 10, 1), dtype="float64", seed=1, init={"type": "he"})
    for p in model.params:
        if p.name.endswith("conv2d.bias"):
            p.value[...] = 0.3  # so the flat background survives the ReLU, tied
    x = np.zeros((2, 10, 10, 1))
    x[:, 3:7, 4:6, 0] = rng.random((2, 4, 2)) + 0.5   # a small "stroke"
    y = np.array([3, 7])
    rows = check_model(model, x, y, max_entries=200)
    for r in rows:
        assert r["rel_error"] < SMOOTH, r


def test_check_model_needs_float64():
    model = Model([{"type": "flatten"}, {"type": "dense", "units": 10}], input_shape=(2, 2, 1))
    with pytest.raises(ValueError, match="float64"):
        check_model(model, np.zeros((1, 2, 2, 1)), np.array([0]))


def test_every_layer_type_has_a_gradient_case():
    from engine.layers import LAYER_TYPES
    assert {factory().type for _, factory, _, _ in CASES} == set(LAYER_TYPES)


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_activation_writing_over_its_input_gives_the_same_gradients(kind):
    """The plan's overwrite=True (an activation over a fresh output): same output and input
    gradient as a new array, and the input array holds the output."""
    from engine.layers import LAYER_TYPES
    rng = np.random.default_rng(5)
    x = distinct((3, 4, 5, 2), rng)
    g = rng.standard_normal(x.shape)
    plain, inplace = LAYER_TYPES[kind](), LAYER_TYPES[kind]()
    out = plain.forward(x.copy(), True)
    dx = plain.backward(g)
    x2 = x.copy()
    out2 = inplace.forward(x2, True, overwrite=True)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(inplace.backward(g), dx)
    if kind != "leaky_relu":                     # leaky_relu always returns a new array
        assert np.shares_memory(out2, x2)
