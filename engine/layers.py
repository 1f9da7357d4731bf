"""Layers of the engine: one class per layer, forward caches what backward needs.

Conventions (as in Keras, channels-last):
- Images are ``(N, H, W, C)``; flat inputs are ``(N, D)``.
- A Conv2D kernel is ``(kh, kw, C_in, filters)``; a Dense kernel is ``(in, units)``.
- ``forward(x, train)`` stores exactly what ``backward(grad)`` needs; ``backward``
  returns a fresh ``dx`` and *accumulates* into each parameter's ``grad``
  (``zero_grad`` clears them). Inputs are never modified in place.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy.special import expit


class Param:
    """A trainable array and its gradient. Updated in place so references stay valid."""

    __slots__ = ("value", "grad", "name", "decay")

    def __init__(self, value: np.ndarray, name: str, decay: bool = True):
        self.value = value
        self.grad = np.zeros_like(value)
        self.name = name
        self.decay = decay  # biases and BatchNorm parameters are not weight-decayed

    def __repr__(self) -> str:
        return f"Param({self.name}, shape={self.value.shape}, dtype={self.value.dtype})"


class Layer:
    """Base layer. Subclasses set ``type`` and implement forward/backward."""

    type = "layer"
    #: False for the first layer of a model: its input gradient is never needed.
    needs_input_grad = True

    def __init__(self):
        self.params: list[Param] = []
        self.index = 0  # position in the model, for names and error messages

    def build(self, input_shape: tuple, rng: np.random.Generator, dtype) -> None:
        """Allocate parameters for an input of shape ``input_shape`` (no batch axis)."""

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad[...] = 0

    def get_config(self) -> dict:
        return {"type": self.type}

    def __repr__(self) -> str:
        cfg = {k: v for k, v in self.get_config().items() if k != "type"}
        inner = ", ".join(f"{k}={v!r}" for k, v in cfg.items())
        return f"{type(self).__name__}({inner})"


# ---------------------------------------------------------------- initialisers

def init_array(init: dict, shape: tuple, fan_in: int, fan_out: int,
               rng: np.random.Generator, dtype) -> np.ndarray:
    """Draw a weight array. ``init`` is ``{"type": ..., "std"|"limit": ...}``.

    - ``normal``: N(0, std^2), as in the exercises (std 0.01, 1e-4, 1.0).
    - ``uniform``: U(-limit, limit) (the Grokking book's ``0.2*rand - 0.1``).
    - ``xavier``/``glorot``: U(+-sqrt(6/(fan_in+fan_out))), Keras' default.
    - ``he``: N(0, 2/fan_in), for ReLU nets.
    """
    kind = init.get("type", "glorot")
    if kind == "normal":
        w = rng.standard_normal(shape) * float(init.get("std", 0.01))
    elif kind == "uniform":
        lim = float(init.get("limit", 0.05))
        w = rng.uniform(-lim, lim, shape)
    elif kind in ("xavier", "glorot"):
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-lim, lim, shape)
    elif kind == "he":
        w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    else:  # validated earlier; kept as a guard for direct use
        raise ValueError(f"unknown initialiser {kind!r}")
    return w.astype(dtype)


def init_bias(init: dict, shape: tuple, rng: np.random.Generator, dtype) -> np.ndarray:
    """Biases start at zero unless ``bias_std`` asks for N(0, bias_std^2) (Nielsen)."""
    std = float(init.get("bias_std", 0.0))
    if std > 0:
        return (rng.standard_normal(shape) * std).astype(dtype)
    return np.zeros(shape, dtype=dtype)


class _Weighted(Layer):
    def __init__(self, use_bias: bool = True, init: dict | None = None):
        super().__init__()
        self.use_bias = use_bias
        self.init = init  # None: the model's default initialiser

    def _cfg(self) -> dict:
        cfg = {"use_bias": self.use_bias}
        if self.init is not None:
            cfg["init"] = dict(self.init)
        return cfg

    @property
    def kernel(self) -> Param:
        return self.params[0]

    @property
    def bias(self) -> Param | None:
        return self.params[1] if self.use_bias else None


# ---------------------------------------------------------------- dense

class Dense(_Weighted):
    """Fully connected: ``(N, in) -> (N, units)``, ``y = x @ W + b``."""

    type = "dense"

    def __init__(self, units: int, use_bias: bool = True, init: dict | None = None):
        super().__init__(use_bias, init)
        self.units = int(units)

    def build(self, input_shape, rng, dtype, default_init=None):
        (d,) = input_shape
        init = self.init or default_init or {"type": "glorot"}
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
        self.params[0].grad += x.T @ grad
        if self.use_bias:
            self.params[1].grad += grad.sum(axis=0)
        if not self.needs_input_grad:
            return None
        return grad @ self.params[0].value.T

    def get_config(self):
        return {"type": self.type, "units": self.units, **self._cfg()}


# ---------------------------------------------------------------- convolution helpers

def _windows(x: np.ndarray, kh: int, kw: int, stride: int, oh: int, ow: int) -> np.ndarray:
    """A read-only strided view ``(N, oh, ow, kh, kw, C)`` of the windows of ``x`` (NHWC)."""
    n, _, _, c = x.shape
    sn, sh, sw, sc = x.strides
    return as_strided(x, shape=(n, oh, ow, kh, kw, c),
                      strides=(sn, sh * stride, sw * stride, sh, sw, sc), writeable=False)


def _pad(x: np.ndarray, p: int) -> np.ndarray:
    if p == 0:
        return x
    n, h, w, c = x.shape
    out = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=x.dtype)
    out[:, p:p + h, p:p + w, :] = x
    return out


def _scatter_windows(dwin: np.ndarray, in_shape: tuple, stride: int, pad: int) -> np.ndarray:
    """Sum window gradients ``(N, oh, ow, kh, kw, C)`` back onto the padded input.

    One strided slice-add per kernel offset (kh*kw vectorised adds) instead of
    ``np.add.at``, which is an order of magnitude slower.
    """
    n, oh, ow, kh, kw, c = dwin.shape
    _, h, w, _ = in_shape
    dx = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=dwin.dtype)
    he, we = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    for i in range(kh):
        for j in range(kw):
            dx[:, i:i + he:stride, j:j + we:stride, :] += dwin[:, :, :, i, j, :]
    if pad:
        dx = dx[:, pad:pad + h, pad:pad + w, :]
    return dx


def conv_output_size(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


class Conv2D(_Weighted):
    """2-D convolution (cross-correlation, as in every framework).

    ``(N, H, W, C) -> (N, OH, OW, filters)`` with ``OH = (H + 2p - k)//s + 1``.
    Forward is im2col: the windows are copied into a ``(N*OH*OW, kh*kw*C)``
    matrix and multiplied by the kernel viewed as ``(kh*kw*C, filters)``; the
    channels-last layout makes both the column matrix and the result contiguous
    without transposes.
    """

    type = "conv2d"

    def __init__(self, filters: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 use_bias: bool = True, init: dict | None = None):
        super().__init__(use_bias, init)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.padding = int(padding)

    def build(self, input_shape, rng, dtype, default_init=None):
        h, w, c = input_shape
        k = self.kernel_size
        init = self.init or default_init or {"type": "glorot"}
        shape = (k, k, c, self.filters)
        self.params = [Param(init_array(init, shape, k * k * c, k * k * self.filters, rng, dtype),
                             f"{self.index}.conv2d.kernel")]
        if self.use_bias:
            self.params.append(Param(init_bias(init, (self.filters,), rng, dtype),
                                     f"{self.index}.conv2d.bias", decay=False))

    def forward(self, x, train=True):
        k, s, p = self.kernel_size, self.stride, self.padding
        n, h, w, c = x.shape
        oh, ow = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
        xp = _pad(x, p)
        cols = _windows(xp, k, k, s, oh, ow).reshape(n * oh * ow, k * k * c)  # copies
        wmat = self.params[0].value.reshape(k * k * c, self.filters)
        y = cols @ wmat
        if self.use_bias:
            y += self.params[1].value
        self._cols, self._xshape, self._oshape = cols, x.shape, (n, oh, ow)
        return y.reshape(n, oh, ow, self.filters)

    def backward(self, grad):
        k, s, p = self.kernel_size, self.stride, self.padding
        n, oh, ow = self._oshape
        c = self._xshape[3]
        g = grad.reshape(n * oh * ow, self.filters)
        kern = self.params[0]
        kern.grad += (self._cols.T @ g).reshape(kern.value.shape)
        if self.use_bias:
            self.params[1].grad += g.sum(axis=0)
        if not self.needs_input_grad:
            return None
        dcols = g @ kern.value.reshape(k * k * c, self.filters).T
        return _scatter_windows(dcols.reshape(n, oh, ow, k, k, c), self._xshape, s, p)

    def get_config(self):
        return {"type": self.type, "filters": self.filters, "kernel_size": self.kernel_size,
                "stride": self.stride, "padding": self.padding, **self._cfg()}


# ---------------------------------------------------------------- pooling

class _Pool2D(Layer):
    def __init__(self, pool_size: int = 2, stride: int | None = None):
        super().__init__()
        self.pool_size = int(pool_size)
        self.stride = int(stride) if stride is not None else self.pool_size

    def _out(self, h, w):
        return conv_output_size(h, self.pool_size, self.stride, 0), \
            conv_output_size(w, self.pool_size, self.stride, 0)

    def get_config(self):
        return {"type": self.type, "pool_size": self.pool_size, "stride": self.stride}


class MaxPool2D(_Pool2D):
    """Max pooling ``(N, H, W, C) -> (N, OH, OW, C)``.

    Each window's gradient goes to exactly one input: the *first* maximum in
    row-major window order, as PyTorch does. MNIST's flat background makes ties
    common, and a ``x == max`` mask would send the gradient to every tied cell.
    """

    type = "maxpool2d"

    def forward(self, x, train=True):
        k, s = self.pool_size, self.stride
        n, h, w, c = x.shape
        oh, ow = self._out(h, w)
        self._xshape = x.shape
        if k == 2 and s == 2:
            # Four strided views; cheaper than materialising the windows.
            xs = x[:, :2 * oh, :2 * ow, :]
            a, b = xs[:, 0::2, 0::2], xs[:, 0::2, 1::2]
            cc, d = xs[:, 1::2, 0::2], xs[:, 1::2, 1::2]
            ab, cd = np.maximum(a, b), np.maximum(cc, d)
            out = np.maximum(ab, cd)
            if train:
                # index of the first maximum: 0=a, 1=b, 2=c, 3=d
                top = ab >= cd                           # first max is in the top row
                idx = np.where(top, np.where(a >= b, 0, 1), np.where(cc >= d, 2, 3))
                self._idx = idx.astype(np.uint8)
            return out
        win = _windows(x, k, k, s, oh, ow).reshape(n, oh, ow, k * k, c)
        idx = win.argmax(axis=3)                         # argmax picks the first maximum
        out = np.take_along_axis(win, idx[:, :, :, None, :], axis=3)[:, :, :, 0, :]
        if train:
            self._idx = idx
        return out

    def backward(self, grad):
        k, s = self.pool_size, self.stride
        n, h, w, c = self._xshape
        oh, ow = grad.shape[1:3]
        idx = self._idx
        dx = np.zeros(self._xshape, dtype=grad.dtype)
        he, we = s * (oh - 1) + 1, s * (ow - 1) + 1
        for o in range(k * k):
            i, j = divmod(o, k)
            sel = grad * (idx == o)
            if s == k:  # windows do not overlap: plain assignment
                dx[:, i:i + he:s, j:j + we:s, :] = sel
            else:
                dx[:, i:i + he:s, j:j + we:s, :] += sel
        return dx


class AvgPool2D(_Pool2D):
    """Average pooling ``(N, H, W, C) -> (N, OH, OW, C)``."""

    type = "avgpool2d"

    def forward(self, x, train=True):
        k, s = self.pool_size, self.stride
        n, h, w, c = x.shape
        oh, ow = self._out(h, w)
        self._xshape = x.shape
        he, we = s * (oh - 1) + 1, s * (ow - 1) + 1
        out = np.zeros((n, oh, ow, c), dtype=x.dtype)
        for i in range(k):
            for j in range(k):
                out += x[:, i:i + he:s, j:j + we:s, :]
        out *= x.dtype.type(1.0 / (k * k))
        return out

    def backward(self, grad):
        k, s = self.pool_size, self.stride
        oh, ow = grad.shape[1:3]
        g = grad * grad.dtype.type(1.0 / (k * k))
        dx = np.zeros(self._xshape, dtype=grad.dtype)
        he, we = s * (oh - 1) + 1, s * (ow - 1) + 1
        for i in range(k):
            for j in range(k):
                dx[:, i:i + he:s, j:j + we:s, :] += g
        return dx


class Flatten(Layer):
    """``(N, H, W, C) -> (N, H*W*C)`` (channels-last order, as Keras)."""

    type = "flatten"

    def forward(self, x, train=True):
        self._xshape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        return grad.reshape(self._xshape)


# ---------------------------------------------------------------- activations

class ReLU(Layer):
    type = "relu"

    def forward(self, x, train=True):
        self._mask = x > 0
        return np.maximum(x, 0)

    def backward(self, grad):
        return grad * self._mask


class LeakyReLU(Layer):
    type = "leaky_relu"

    def __init__(self, alpha: float = 0.01):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x, train=True):
        self._mask = x > 0
        return np.where(self._mask, x, x * x.dtype.type(self.alpha))

    def backward(self, grad):
        return np.where(self._mask, grad, grad * grad.dtype.type(self.alpha))

    def get_config(self):
        return {"type": self.type, "alpha": self.alpha}


class Sigmoid(Layer):
    """Logistic sigmoid. ``scipy.special.expit`` never overflows (``exp(-x)`` would)."""

    type = "sigmoid"

    def forward(self, x, train=True):
        self._y = expit(x)
        return self._y

    def backward(self, grad):
        y = self._y
        return grad * y * (1 - y)


class Tanh(Layer):
    type = "tanh"

    def forward(self, x, train=True):
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad):
        y = self._y
        return grad * (1 - y * y)


class Dropout(Layer):
    """Inverted dropout: keeps each unit with probability ``1 - rate`` and scales
    by ``1/(1 - rate)`` at training time, so evaluation is the identity."""

    type = "dropout"

    def __init__(self, rate: float = 0.5):
        super().__init__()
        self.rate = float(rate)
        self.rng = np.random.default_rng(0)  # the model reseeds it from its seed

    def forward(self, x, train=True):
        if not train or self.rate == 0:
            self._mask = None
            return x
        keep = 1.0 - self.rate
        # float32 draws: a float64 mask costs more than the layer itself
        self._mask = (self.rng.random(x.shape, dtype=np.float32) < keep).astype(x.dtype)
        self._mask *= x.dtype.type(1.0 / keep)
        return x * self._mask

    def backward(self, grad):
        return grad if self._mask is None else grad * self._mask

    def get_config(self):
        return {"type": self.type, "rate": self.rate}


class BatchNorm(Layer):
    """Batch normalisation over every axis but the last (features or channels).

    Works after Dense ``(N, D)`` and after Conv2D ``(N, H, W, C)``. Keeps running
    statistics (``momentum`` as in Keras) for evaluation.
    """

    type = "batchnorm"

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5):
        super().__init__()
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape, rng, dtype, default_init=None):
        c = input_shape[-1]
        self.params = [Param(np.ones(c, dtype=dtype), f"{self.index}.batchnorm.gamma", decay=False),
                       Param(np.zeros(c, dtype=dtype), f"{self.index}.batchnorm.beta", decay=False)]
        self.running_mean = np.zeros(c, dtype=dtype)
        self.running_var = np.ones(c, dtype=dtype)

    def forward(self, x, train=True):
        gamma, beta = self.params[0].value, self.params[1].value
        axes = tuple(range(x.ndim - 1))
        if train:
            mu = x.mean(axis=axes)
            var = x.var(axis=axes)
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
        axes = tuple(range(grad.ndim - 1))
        m = grad.size // grad.shape[-1]
        xhat, inv = self._xhat, self._inv
        gamma = self.params[0].value
        self.params[0].grad += (grad * xhat).sum(axis=axes)
        self.params[1].grad += grad.sum(axis=axes)
        dxhat = grad * gamma
        return (inv / m) * (m * dxhat - dxhat.sum(axis=axes) - xhat * (dxhat * xhat).sum(axis=axes))

    def get_config(self):
        return {"type": self.type, "momentum": self.momentum, "epsilon": self.epsilon}


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type: cls for cls in (Dense, Conv2D, MaxPool2D, AvgPool2D, Flatten, ReLU, LeakyReLU,
                              Sigmoid, Tanh, Dropout, BatchNorm)
}
