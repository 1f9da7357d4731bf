"""Optimizer update rules against hand-written reference formulas."""
import warnings

import numpy as np
import pytest

from engine.layers import Param, Sigmoid
from engine.optim import make_optimizer


def param(w, g, decay=True):
    p = Param(np.array(w, dtype=np.float64), "w", decay=decay)
    p.grad[...] = g
    return p


def test_sgd_plain_and_weight_decay():
    p = param([1.0, -2.0], [0.5, 0.5])
    make_optimizer({"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.01}, [p]).step()
    assert np.allclose(p.value, [1.0 - 0.1 * (0.5 + 0.01), -2.0 - 0.1 * (0.5 - 0.02)])
    b = param([1.0], [0.5], decay=False)  # biases are not decayed
    make_optimizer({"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.01}, [b]).step()
    assert np.allclose(b.value, [0.95])


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum(nesterov):
    w, v, lr, mu = 1.0, 0.0, 0.1, 0.9
    p = param([w], [0.0])
    opt = make_optimizer({"optimizer": "sgd", "lr": lr, "momentum": mu, "nesterov": nesterov}, [p])
    for _ in range(5):
        g = 2 * w  # f = w^2
        p.grad[...] = g
        opt.step()
        v = mu * v - lr * g
        w = w + (mu * v - lr * g if nesterov else v)
        assert p.value[0] == pytest.approx(w)


def test_adam_matches_reference():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    w, m, v = np.array([1.0, -3.0]), np.zeros(2), np.zeros(2)
    p = param(w.copy(), [0.0, 0.0])
    opt = make_optimizer({"optimizer": "adam", "lr": lr}, [p])
    for t in range(1, 6):
        g = 2 * w
        p.grad[...] = g
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        assert np.allclose(p.value, w, rtol=1e-6)


def test_rmsprop_matches_reference():
    lr, rho, eps = 0.01, 0.9, 1e-8
    w, s = np.array([2.0]), np.zeros(1)
    p = param(w.copy(), [0.0])
    opt = make_optimizer({"optimizer": "rmsprop", "lr": lr}, [p])
    for _ in range(4):
        g = 2 * w
        p.grad[...] = g
        opt.step()
        s = rho * s + (1 - rho) * g * g
        w = w - lr * g / (np.sqrt(s) + eps)
        assert np.allclose(p.value, w)


def test_gradient_clipping_by_global_norm():
    p = param([0.0, 0.0], [3.0, 4.0])  # norm 5
    make_optimizer({"optimizer": "sgd", "lr": 1.0, "clip_norm": 1.0}, [p]).step(grad_norm=5.0)
    assert np.allclose(p.value, [-0.6, -0.8])


def test_updates_are_in_place():
    p = param([1.0], [1.0])
    ref = p.value
    make_optimizer({"optimizer": "adam", "lr": 0.1}, [p]).step()
    assert p.value is ref


def test_sigmoid_never_overflows():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = Sigmoid().forward(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32))
    assert np.allclose(y, [0.0, 0.5, 1.0]) and y.dtype == np.float32


def test_make_optimizer_reads_the_train_config():
    """One table of optimizers; each reads its own fields of a train config, and every
    field left out (lr included: 0.01 for Adam too) takes its TRAIN_FIELDS default."""
    from engine import validate_config
    from engine.optim import OPTIMIZERS, SGD, Adam, RMSProp
    from engine.spec import OPTIMIZER_TYPES, TRAIN_FIELDS
    assert tuple(OPTIMIZERS) == OPTIMIZER_TYPES
    p = param([1.0], [1.0])
    for name, cls in OPTIMIZERS.items():
        opt = make_optimizer({"optimizer": name}, [p])
        assert type(opt) is cls and opt.lr == TRAIN_FIELDS["lr"].default == 0.01
        assert opt.hyper == {k: TRAIN_FIELDS[k].default for k in cls.hyper_fields}
    adam = make_optimizer({"optimizer": "adam", "lr": 0.5, "beta1": 0.8, "momentum": 0.9,
                           "clip_norm": 2.0, "weight_decay": 0.1}, [p])
    assert (adam.lr, adam.hyper["beta1"], adam.clip_norm, adam.weight_decay) == (0.5, 0.8, 2.0, 0.1)
    assert "momentum" not in adam.hyper                   # not an Adam field
    assert set(SGD.hyper_fields) == {"momentum", "nesterov"}
    assert set(RMSProp.hyper_fields) == {"rho", "eps", "momentum"}
    assert set(Adam.hyper_fields) == {"beta1", "beta2", "eps"}
    # a run config without lr trains with the train field's default
    cfg, _ = validate_config({"model": [{"type": "flatten"}, {"type": "dense", "units": 10}],
                              "train": {"optimizer": "adam"}})
    assert make_optimizer(cfg["train"], [p]).lr == 0.01
