"""Layers of the engine: one class per layer, forward caches what backward needs.

This module holds Dense, Flatten, the activations, Dropout and BatchNorm, and ``LAYER_TYPES``
(every layer by its config ``type``); convolution and pooling are in engine/conv.py, the
``Layer`` base class and ``Param`` in engine/layer_base.py, all re-exported from here.

Conventions (as in Keras, channels-last):
- Images are ``(N, H, W, C)``; flat inputs are ``(N, D)``.
- A Conv2D kernel is ``(kh, kw, C_in, filters)``; a Dense kernel is ``(in, units)``.
- ``forward(x, train)`` stores exactly what ``backward(grad)`` needs; ``backward``
  returns a fresh ``dx`` and *accumulates* into each parameter's ``grad``
  (``zero_grad`` clears them). Inputs are never modified in place, except by an
  activation called with ``overwrite=True`` (only the model's plan does that, on an
  array no one else holds).
- Each class answers its own rules before anything is allocated (``fields``,
  ``compute_output_shape``, ``count_params``): engine.spec validates configs with them.

A new layer type is one class (here, or in engine/conv.py for images) listed in
``LAYER_TYPES``: ``type``, ``fields``, ``compute_output_shape`` and, as they apply,
``count_params``, ``build``, ``get_config`` and the class attributes of ``Layer``. The
config validator, the model, GET /api/spec and the page's layer editor take it from there;
the tests want a gradient case (tests/engine/test_gradients.py) and a shape case
(tests/engine/test_layer_rules.py).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from .conv import AvgPool2D, Conv2D, MaxPool2D, _windows, conv_output_size  # noqa: F401 (re-exported)
from .fields import DEFAULT_INIT_TYPE, FLOAT, INT, MISSING, Field
from .layer_base import (Layer, Param, ShapeError, _scratch, _Weighted, init_array,  # noqa: F401
                         init_bias, shape_str)


# ---------------------------------------------------------------- dense

class Dense(_Weighted):
    """Fully connected: ``(N, in) -> (N, units)``, ``y = x @ W + b``."""

    type = "dense"
    aliases = ("linear",)
    fields = {"units": Field(INT, MISSING, 1, 65536), **_Weighted.fields}
    size_field = "units"
    fresh_output = True

    def __init__(self, units: int, use_bias: bool = True, init: dict | None = None):
        super().__init__(use_bias, init)
        self.units = int(units)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ShapeError(f"expects a flat input but gets {shape_str(input_shape)}; "
                             f"add a flatten layer before it")
        return (self.units,)

    def count_params(self, input_shape):
        # the size of any input, flat or not: the error for a far-too-big layer uses it
        return math.prod(input_shape) * self.units + (self.units if self.use_bias else 0)

    def build(self, input_shape, rng, dtype, default_init=None):
        (d,) = input_shape
        init = self.init or default_init or {"type": DEFAULT_INIT_TYPE}
        self.params = [Param(init_array(init, (d, self.units), d, self.units, rng, dtype),
                             f"{self.index}.dense.kernel")]
        if self.use_bias:
            self.params.append(Param(init_bias(init, (self.units,), rng, dtype),
                                     f"{self.index}.dense.bias", decay=False))

    def forward(self, x, train=True):
        self._x = x
        y = x @ self.params[0].value
        if self.use_bias:
            y += self.params[1].value
        return y

    def backward(self, grad):
        x = self._x
        if x.ndim == 3:     # a stack of G independent layers (Deep BSDE's time steps), below
            return self._stacked_backward(x, grad)
        self.params[0].grad += x.T @ grad
        if self.use_bias:
            self.params[1].grad += grad.sum(axis=0)
        if not self.needs_input_grad:
            return None
        return grad @ self.params[0].value.T

    def _stacked_backward(self, x, grad):
        """``x (G, N, in)``, kernel ``(G, in, units)``, bias ``(G, 1, units)``: one batched
        matrix product per term instead of G small ones (engine/bsde.py stacks its subnets)."""
        self.params[0].grad += np.swapaxes(x, 1, 2) @ grad
        if self.use_bias:
            self.params[1].grad += grad.sum(axis=1, keepdims=True)
        if not self.needs_input_grad:
            return None
        return grad @ np.swapaxes(self.params[0].value, 1, 2)

    def get_config(self):
        return {"type": self.type, "units": self.units, **self._cfg()}

class Flatten(Layer):
    """``(N, H, W, C) -> (N, H*W*C)`` (channels-last order, as Keras)."""

    type = "flatten"

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, train=True):
        self._xshape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        return grad.reshape(self._xshape)


# ---------------------------------------------------------------- activations

def _rows(x: np.ndarray) -> np.ndarray:
    """``x`` as a 2-D array whose rows are long runs (the last two axes merged for images)."""
    if x.ndim >= 3:
        return x.reshape(-1, x.shape[-2] * x.shape[-1])
    return x.reshape(-1, x.shape[-1]) if x.ndim == 2 else x.reshape(1, -1)


_ZEROS: dict[tuple, np.ndarray] = {}


def _zeros_row(n: int, dtype) -> np.ndarray:
    """A shared read-only row of ``n`` zeros (never written)."""
    key = (n, np.dtype(dtype))
    z = _ZEROS.get(key)
    if z is None:
        z = _ZEROS[key] = np.zeros(n, dtype)
        z.flags.writeable = False
    return z


class _Activation(Layer):
    """An elementwise function: the output has the input's shape.

    ``forward(x, train, overwrite=True)`` writes the result over ``x`` instead of filling a
    new array of the same size (less memory traffic). The model's plan asks for it only
    when ``x`` is the fresh output of the step before (``fresh_output``), which nothing
    else keeps; called directly, an activation never touches its input.
    """

    is_activation = True
    #: monotone with a zero gradient wherever ties could move a window's maximum: the
    #: model may run it after the max-pool that follows it (model._PoolFirst)
    commutes_with_max_pool = False

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class ReLU(_Activation):
    """``max(x, 0)``. Backward multiplies by the cached ``x > 0`` mask."""

    type = "relu"
    commutes_with_max_pool = True

    def forward(self, x, train=True, overwrite=False):
        rows = _rows(x)
        if train:
            self._mask = np.greater(rows, 0, out=_scratch(self, "mask", rows.shape, np.bool_))
        # maximum against a row of zeros: twice as fast as against the scalar 0
        return np.maximum(rows, _zeros_row(rows.shape[1], x.dtype),
                          out=rows if overwrite else None).reshape(x.shape)

    def backward(self, grad):
        return np.multiply(grad, self._mask.reshape(grad.shape))


class LeakyReLU(_Activation):
    type = "leaky_relu"
    aliases = ("leakyrelu",)
    fields = {"alpha": Field(FLOAT, 0.01, 0.0, 1.0)}
    commutes_with_max_pool = True

    def __init__(self, alpha: float = 0.01):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x, train=True, overwrite=False):  # always a new array: ax below
        # np.where with a boolean mask is ~10x slower than these elementwise passes
        if train:
            self._mask = np.greater(x, 0, out=_scratch(self, "mask", x.shape, np.bool_))
        ax = x * x.dtype.type(self.alpha)
        # x where x > 0, else alpha*x: the larger of the two if alpha <= 1, else the smaller
        return (np.maximum if self.alpha <= 1 else np.minimum)(x, ax, out=ax)

    def backward(self, grad):
        # per-element factor 1 or alpha, looked up exactly from the mask
        table = np.array([self.alpha, 1.0], dtype=grad.dtype)
        return grad * np.take(table, self._mask.view(np.uint8))

    def get_config(self):
        return {"type": self.type, "alpha": self.alpha}


class Sigmoid(_Activation):
    """Logistic sigmoid. ``scipy.special.expit`` never overflows (``exp(-x)`` would)."""

    type = "sigmoid"

    def forward(self, x, train=True, overwrite=False):
        self._y = expit(x, out=x if overwrite else None)
        return self._y

    def backward(self, grad):
        # grad*y*(1-y) as g*y - (g*y)*y: three passes, one new array, no scalar operand
        y = self._y
        gy = np.multiply(grad, y)
        gyy = np.multiply(gy, y, out=_scratch(self, "gyy", gy.shape, gy.dtype))
        return np.subtract(gy, gyy, out=gy)


class Tanh(_Activation):
    """Hyperbolic tangent; backward uses the cached output: ``grad * (1 - y**2)``."""

    type = "tanh"

    def forward(self, x, train=True, overwrite=False):
        self._y = np.tanh(x, out=x if overwrite else None)
        return self._y

    def backward(self, grad):
        # computed as g - (g*y)*y: three passes over one new array, no scalar operand
        y = self._y
        gyy = np.multiply(grad, y)
        gyy *= y
        return np.subtract(grad, gyy, out=gyy)


class Dropout(Layer):
    """Inverted dropout: keeps each unit with probability ``1 - rate`` and scales
    by ``1/(1 - rate)`` at training time, so evaluation is the identity."""

    type = "dropout"
    fields = {"rate": Field(FLOAT, 0.5, 0.0, 0.99)}

    def __init__(self, rate: float = 0.5):
        super().__init__()
        self.rate = float(rate)
        self.rng = np.random.default_rng(0)  # the model reseeds it from its seed

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def set_stream(self, key):
        self.rng = np.random.default_rng(key)

    def forward(self, x, train=True):
        if not train or self.rate == 0:
            self._mask = None
            return x
        self._mask = self._draw_mask(x.shape, x.dtype)
        return x * self._mask

    def _draw_mask(self, shape: tuple, dtype) -> np.ndarray:
        """A ``shape`` mask of 0 and ``1/keep``: each unit kept with probability ``keep``.

        Each unit gets 16 random bits straight from the generator, kept when they are below
        ``round(keep * 65536)``, so ``keep`` is exact to 1/65536 (exact for rates such as 0.5
        or 0.25). Drawing floats (``rng.random``) costs 4 times as much, and the mask was
        a third of a Grokking-CNN step.
        """
        keep = 1.0 - self.rate
        size = int(np.prod(shape))
        bits = self.rng.bit_generator.random_raw((size + 3) // 4).view(np.uint16)[:size]
        kept = np.less(bits, round(keep * 65536)).reshape(shape)
        return np.multiply(kept, dtype.type(1.0 / keep), dtype=dtype)

    def backward(self, grad):
        return grad if self._mask is None else grad * self._mask

    def get_config(self):
        return {"type": self.type, "rate": self.rate}


class BatchNorm(Layer):
    """Batch normalisation over every axis but the last (features or channels).

    Works after Dense ``(N, D)`` and after Conv2D ``(N, H, W, C)``. Keeps running
    statistics (``momentum`` as in Keras) for evaluation.

    gamma starts at 1 and beta at 0, unless ``gamma_min``/``gamma_max`` ask for
    U(gamma_min, gamma_max) and ``beta_std`` for N(0, beta_std^2): the Deep BSDE reference
    code's subnets start with U(0.1, 0.5) and N(0, 0.1^2). Only then is the model's RNG drawn
    from, so nets with the default start are unchanged.
    """

    type = "batchnorm"
    aliases = ("batch_norm",)
    fields = {"momentum": Field(FLOAT, 0.9, 0.0, 0.9999), "epsilon": Field(FLOAT, 1e-5, 1e-12, 1.0),
              "gamma_min": Field(FLOAT, 1.0, -100.0, 100.0), "gamma_max": Field(FLOAT, 1.0, -100.0, 100.0),
              "beta_std": Field(FLOAT, 0.0, 0.0, 100.0)}
    breaks_sharding = True

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, gamma_min: float = 1.0,
                 gamma_max: float = 1.0, beta_std: float = 0.0):
        super().__init__()
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.gamma_min, self.gamma_max = float(gamma_min), float(gamma_max)
        self.beta_std = float(beta_std)

    def compute_output_shape(self, input_shape):
        if self.gamma_min > self.gamma_max:
            raise ShapeError(f"gamma_min {self.gamma_min:g} is above gamma_max {self.gamma_max:g}")
        return tuple(input_shape)

    def count_params(self, input_shape):
        return 2 * input_shape[-1]

    def buffers(self):
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def build(self, input_shape, rng, dtype, default_init=None):
        c = input_shape[-1]
        gamma = (rng.uniform(self.gamma_min, self.gamma_max, c) if self.gamma_min < self.gamma_max
                 else np.full(c, self.gamma_min))
        beta = rng.standard_normal(c) * self.beta_std if self.beta_std > 0 else np.zeros(c)
        self.params = [Param(gamma.astype(dtype), f"{self.index}.batchnorm.gamma", decay=False),
                       Param(beta.astype(dtype), f"{self.index}.batchnorm.beta", decay=False)]
        self.running_mean = np.zeros(c, dtype=dtype)
        self.running_var = np.ones(c, dtype=dtype)

    def _axes(self, x) -> tuple[tuple, bool]:
        """The axes statistics are taken over, and whether they are kept: a stack of G
        independent layers (gamma ``(G, 1, C)``, input ``(G, N, C)``) normalises over N only."""
        if self.params[0].value.ndim == 3:
            return (1,), True
        return tuple(range(x.ndim - 1)), False

    def forward(self, x, train=True):
        gamma, beta = self.params[0].value, self.params[1].value
        axes, keep = self._axes(x)
        if train:
            mu = x.mean(axis=axes, keepdims=keep)
            var = x.var(axis=axes, keepdims=keep)
            m = self.momentum
            self.running_mean *= m
            self.running_mean += (1 - m) * mu
            self.running_var *= m
            self.running_var += (1 - m) * var
        else:
            mu, var = self.running_mean, self.running_var
        inv = 1.0 / np.sqrt(var + self.epsilon)
        xhat = (x - mu) * inv.astype(x.dtype)
        self._xhat, self._inv = xhat, inv.astype(x.dtype)
        return xhat * gamma + beta

    def backward(self, grad):
        axes, keep = self._axes(grad)
        m = math.prod(grad.shape[a] for a in axes)
        xhat, inv = self._xhat, self._inv
        gamma = self.params[0].value
        self.params[0].grad += (grad * xhat).sum(axis=axes, keepdims=keep)
        self.params[1].grad += grad.sum(axis=axes, keepdims=keep)
        dxhat = grad * gamma
        return (inv / m) * (m * dxhat - dxhat.sum(axis=axes, keepdims=keep)
                            - xhat * (dxhat * xhat).sum(axis=axes, keepdims=keep))

    def get_config(self):
        out = {"type": self.type, "momentum": self.momentum, "epsilon": self.epsilon}
        if (self.gamma_min, self.gamma_max, self.beta_std) != (1.0, 1.0, 0.0):
            out.update(gamma_min=self.gamma_min, gamma_max=self.gamma_max, beta_std=self.beta_std)
        return out


#: every layer by its config ``type``, in the order the page lists them
LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type: cls for cls in (Dense, Conv2D, MaxPool2D, AvgPool2D, Flatten, ReLU, Sigmoid, Tanh,
                              LeakyReLU, Dropout, BatchNorm)
}
#: other names of layer types: ``{"conv": "conv2d", ...}``
LAYER_ALIASES: dict[str, str] = {a: cls.type for cls in LAYER_TYPES.values() for a in cls.aliases}
