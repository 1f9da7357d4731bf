"""Optimizers. One contract: ``step()`` updates every parameter in place from
its ``grad``; state (momentum, moments) is created lazily and owned here.

Weight decay is L2 regularisation folded into the gradient (``g + wd * w``),
applied to kernels only (``Param.decay``), as cs231n's ``reg`` does.

Every default (the learning rate, momentum, Adam's betas, ...) is the train field's
default in engine/spec.py ``TRAIN_FIELDS``: the learning rate is 0.01 for every optimizer,
Adam included (Keras and PyTorch default Adam to 0.001).
"""
from __future__ import annotations

import numpy as np

from .layers import Param
from .spec import TRAIN_FIELDS


class Optimizer:
    name = "optimizer"
    #: the train fields this optimizer reads besides lr, weight_decay and clip_norm
    hyper_fields: tuple[str, ...] = ()

    def __init__(self, params: list[Param], lr: float, weight_decay: float = 0.0,
                 clip_norm: float | None = None, **hyper):
        self.params = params
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.clip_norm = clip_norm
        self.hyper = {k: TRAIN_FIELDS[k].default for k in self.hyper_fields}
        self.hyper.update(hyper)
        self.state: dict[int, dict[str, np.ndarray]] = {}
        self.t = 0

    @property
    def momentum(self) -> float:
        return float(self.hyper.get("momentum", 0.0))

    @momentum.setter
    def momentum(self, value: float) -> None:
        self.hyper["momentum"] = float(value)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad[...] = 0

    def _grad(self, p: Param, scale: float) -> np.ndarray:
        g = p.grad
        if scale != 1.0:
            g = g * g.dtype.type(scale)
        if self.weight_decay and p.decay:
            g = g + p.value.dtype.type(self.weight_decay) * p.value
        return g

    def step(self, grad_norm: float | None = None) -> None:
        """Apply one update. ``grad_norm`` (global L2 norm of the grads) is used for clipping."""
        self.t += 1
        scale = 1.0
        if self.clip_norm and grad_norm is not None and grad_norm > self.clip_norm:
            scale = self.clip_norm / (grad_norm + 1e-12)
        for i, p in enumerate(self.params):
            self._update(p, self._grad(p, scale), self.state.setdefault(i, {}))

    def _update(self, p: Param, g: np.ndarray, st: dict) -> None:
        raise NotImplementedError

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{"opt.<i>.<name>": array}`` for checkpoints."""
        return {f"opt.{i}.{k}": v for i, st in self.state.items() for k, v in st.items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for key, v in arrays.items():
            _, i, k = key.split(".", 2)
            self.state.setdefault(int(i), {})[k] = np.array(v, dtype=self.params[int(i)].value.dtype)


class SGD(Optimizer):
    """``v = mu*v - lr*g; w += v`` (classical momentum); Nesterov looks ahead:
    ``w += mu*v - lr*g`` after the velocity update (cs231n's form)."""

    name = "sgd"
    hyper_fields = ("momentum", "nesterov")

    def _update(self, p, g, st):
        lr, mu = p.value.dtype.type(self.lr), self.hyper["momentum"]
        if not mu:
            p.value -= lr * g
            return
        mu = p.value.dtype.type(mu)
        v = st.get("v")
        if v is None:
            v = st["v"] = np.zeros_like(p.value)
        v *= mu
        v -= lr * g
        if self.hyper.get("nesterov"):
            p.value += mu * v - lr * g
        else:
            p.value += v


class Adam(Optimizer):
    """Adam with bias correction folded into the step size (Kingma & Ba, section 2)."""

    name = "adam"
    hyper_fields = ("beta1", "beta2", "eps")

    def _update(self, p, g, st):
        b1, b2, eps = self.hyper["beta1"], self.hyper["beta2"], self.hyper["eps"]
        if "m" not in st:
            st["m"], st["v"] = np.zeros_like(p.value), np.zeros_like(p.value)
        m, v = st["m"], st["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        lr_t = self.lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        p.value -= p.value.dtype.type(lr_t) * m / (np.sqrt(v) + p.value.dtype.type(eps))


class RMSProp(Optimizer):
    """``s = rho*s + (1-rho)*g^2; w -= lr*g / (sqrt(s) + eps)``, with optional momentum."""

    name = "rmsprop"
    hyper_fields = ("rho", "eps", "momentum")

    def _update(self, p, g, st):
        rho, eps, mu = self.hyper["rho"], self.hyper["eps"], self.hyper["momentum"]
        if "s" not in st:
            st["s"] = np.zeros_like(p.value)
        s = st["s"]
        s *= rho
        s += (1 - rho) * (g * g)
        upd = p.value.dtype.type(self.lr) * g / (np.sqrt(s) + p.value.dtype.type(eps))
        if mu:
            buf = st.setdefault("buf", np.zeros_like(p.value))
            buf *= p.value.dtype.type(mu)
            buf += upd
            upd = buf
        p.value -= upd


#: every optimizer by its train config name (``train.optimizer``)
OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Adam, RMSProp)}


def make_optimizer(train: dict, params: list[Param]) -> Optimizer:
    """The optimizer a train config asks for (``{"optimizer": "adam", "lr": 0.01, ...}``,
    as ``engine.spec`` normalises it), over ``params``.

    It reads ``lr``, ``weight_decay``, ``clip_norm`` and its own ``hyper_fields``; a field
    the config leaves out takes its ``TRAIN_FIELDS`` default.
    """
    def get(key):
        return train[key] if key in train else TRAIN_FIELDS[key].default

    cls = OPTIMIZERS[get("optimizer")]
    return cls(params, lr=get("lr"), weight_decay=get("weight_decay"), clip_norm=get("clip_norm"),
               **{k: get(k) for k in cls.hyper_fields})
