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

def _scratch(layer: Layer, name: str, shape: tuple, dtype, fill=None,
             reuse: bool = True) -> np.ndarray:
    """A work array owned by ``layer``, reused by later calls with the same shape and dtype.

    Only for arrays that never leave the layer (padded inputs, im2col matrices, masks): a
    layer's outputs and returned gradients are always fresh arrays. ``fill`` initialises a
    new buffer once; callers rely on it for parts they never overwrite (a zero border, a
    column of ones). Forward passes reuse only in training (``reuse=train``): evaluation
    may run in several threads at once on one model (the server's predictions), so it
    gets fresh arrays.
    """
    if not reuse:
        return np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
    bufs = layer.__dict__.setdefault("_scratch", {})
    buf = bufs.get(name)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
        bufs[name] = buf
    return buf


def _windows(x: np.ndarray, kh: int, kw: int, stride: int, oh: int, ow: int) -> np.ndarray:
    """A read-only strided view ``(N, oh, ow, kh, kw, C)`` of the windows of ``x`` (NHWC)."""
    n, _, _, c = x.shape
    sn, sh, sw, sc = x.strides
    return as_strided(x, shape=(n, oh, ow, kh, kw, c),
                      strides=(sn, sh * stride, sw * stride, sh, sw, sc), writeable=False)


def _pad(x: np.ndarray, p: int, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` ``(N, H, W, C)`` with ``p`` zeros around H and W: ``(N, H+2p, W+2p, C)``.

    ``out``, if given, is a buffer of that shape whose border is already zero (only the
    interior is written).
    """
    if p == 0:
        return x
    n, h, w, c = x.shape
    if out is None:
        out = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=x.dtype)
    out[:, p:p + h, p:p + w, :] = x
    return out


def conv_output_size(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


#: Up to this many input channels Conv2D builds its im2col matrix transposed (one row per
#: kernel offset and channel, copied as long contiguous runs); with more channels the
#: window rows (kw*C contiguous values) are long enough for the direct layout.
_TRANSPOSED_IM2COL_MAX_C = 4


class Conv2D(_Weighted):
    """2-D convolution (cross-correlation, as in every framework).

    ``(N, H, W, C) -> (N, OH, OW, filters)`` with ``OH = (H + 2p - k)//s + 1``.

    Forward is im2col: the windows go into a reused ``(M, K+1)`` matrix ``cols``
    (``M = N*OH*OW`` output pixels, ``K = k*k*C`` window values, plus a column of ones
    when there is a bias) and one matrix product with ``[kernel; bias]`` ``(K+1, filters)``
    gives the output, bias included. For few input channels ``cols`` is stored transposed,
    ``(K+1, M)``: each row is then one kernel offset of the input, copied as long runs, and
    BLAS reads the transpose without a copy.

    Backward: ``cols.T @ grad`` gives the kernel and bias gradients in one product. The input
    gradient is built per kernel offset, ``grad @ kernel[i, j].T`` ``(M, C)``, added onto
    the matching shifted slice of ``dx``: no ``(M, K)`` window-gradient matrix, no
    scatter with short strided runs.
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

    def _im2col(self, x: np.ndarray, train: bool) -> np.ndarray:
        """The ``(M, K + bias)`` window matrix of ``x`` (reused buffer in training)."""
        k, s, p = self.kernel_size, self.stride, self.padding
        n, h, w, c = x.shape
        oh, ow = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
        m, kk, nb = n * oh * ow, k * k * c, int(self.use_bias)
        if p:
            xp = _scratch(self, "xpad", (n, h + 2 * p, w + 2 * p, c), x.dtype, 0, reuse=train)
            x = _pad(x, p, out=xp)
        win = _windows(x, k, k, s, oh, ow)                       # (n, oh, ow, k, k, c) view
        if c <= _TRANSPOSED_IM2COL_MAX_C:
            cols_t = _scratch(self, "cols_t", (kk + nb, m), x.dtype, 1, reuse=train)
            rows = cols_t[:kk].reshape(k, k, c, n, oh, ow)     # the last row stays all ones
            # one call (runs of ow values): faster than a call per offset, and one GIL
            # release instead of k*k while the other shard's thread works
            np.copyto(rows, win.transpose(3, 4, 5, 0, 1, 2))
            return cols_t.T
        cols = _scratch(self, "cols", (m, kk + nb), x.dtype, 1, reuse=train)
        np.copyto(cols[:, :kk].reshape(n, oh, ow, k, k, c), win)  # the last column stays ones
        return cols

    def forward(self, x, train=True):
        k, s, p = self.kernel_size, self.stride, self.padding
        n, h, w, c = x.shape
        oh, ow = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
        cols = self._im2col(x, train)                               # (M, K + bias)
        wmat = self.params[0].value.reshape(k * k * c, self.filters)
        if self.use_bias:
            wmat = np.concatenate([wmat, self.params[1].value[None]])  # (K+1, F), small
        y = cols @ wmat                                             # (M, F), fresh
        if train:
            self._cols, self._xshape, self._oshape = cols, x.shape, (n, oh, ow)
        return y.reshape(n, oh, ow, self.filters)

    def backward(self, grad):
        k, s, p = self.kernel_size, self.stride, self.padding
        n, oh, ow = self._oshape
        _, h, w, c = self._xshape
        kk = k * k * c
        g = grad.reshape(n * oh * ow, self.filters)               # (M, F)
        kern = self.params[0]
        dw = self._cols.T @ g                                      # (K + bias, F)
        kern.grad += dw[:kk].reshape(kern.value.shape)
        if self.use_bias:
            self.params[1].grad += dw[kk]
        if not self.needs_input_grad:
            return None
        # dx[:, i + s*r, j + s*q] += grad[:, r, q] @ kernel[i, j].T, one product per offset
        wt = np.ascontiguousarray(kern.value.reshape(k * k, c, self.filters).transpose(0, 2, 1))
        dxp = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=g.dtype)
        part = _scratch(self, "dx_part", (n * oh * ow, c), g.dtype)
        he, we = s * (oh - 1) + 1, s * (ow - 1) + 1
        for o in range(k * k):
            i, j = divmod(o, k)
            np.matmul(g, wt[o], out=part)                          # (M, C)
            dxp[:, i:i + he:s, j:j + we:s, :] += part.reshape(n, oh, ow, c)
        return dxp[:, p:p + h, p:p + w, :] if p else dxp

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


def _even_crop(x: np.ndarray) -> np.ndarray:
    """``x`` ``(N, H, W, C)`` cut to even H and W, as a C-contiguous array (no copy if it is)."""
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        x = x[:, :h - h % 2, :w - w % 2, :]
    return np.ascontiguousarray(x)


def _uncrop(dx: np.ndarray, shape: tuple) -> np.ndarray:
    """Put the gradient of an even-cropped input back into zeros of the full ``shape``."""
    if dx.shape == tuple(shape):
        return dx
    full = np.zeros(shape, dtype=dx.dtype)
    full[:, :dx.shape[1], :dx.shape[2], :] = dx
    return full


class MaxPool2D(_Pool2D):
    """Max pooling ``(N, H, W, C) -> (N, OH, OW, C)``.

    Each window's gradient goes to exactly one input: the *first* maximum in
    row-major window order, as PyTorch does. MNIST's flat background makes ties
    common, and a ``x == max`` mask would send the gradient to every tied cell.

    The common 2x2, stride-2 case never touches the windows through short strided runs
    (NHWC with few channels makes every window a run of only C values, and NumPy's
    per-run overhead then dominates). It works on the flat input instead: comparing
    ``x[t + C]`` with ``x[t]`` over the whole array pairs each pixel with its right
    neighbour, and ``x[t + W*C]`` with ``x[t]`` pairs rows, all as long contiguous runs;
    results at odd pixels and odd rows are computed too and simply never used.
    """

    type = "maxpool2d"

    def forward(self, x, train=True):
        k, s = self.pool_size, self.stride
        n, h, w, c = x.shape
        oh, ow = self._out(h, w)
        if train:
            self._xshape = x.shape
        if k == 2 and s == 2:
            return self._forward2(_even_crop(x), train)
        win = _windows(x, k, k, s, oh, ow).reshape(n, oh, ow, k * k, c)
        idx = win.argmax(axis=3)                         # argmax picks the first maximum
        out = np.take_along_axis(win, idx[:, :, :, None, :], axis=3)[:, :, :, 0, :]
        if train:
            self._idx = idx
        return out

    def _forward2(self, x, train):
        """2x2/2 pooling of a contiguous ``(N, 2*OH, 2*OW, C)`` input."""
        n, h, w, c = x.shape
        rows, row_len = n * h // 2, w * c
        xf = x.reshape(-1)
        # pmax[t] = max(x[t], x[t + C]): the max of each horizontal pair, at its left pixel
        pmax = _scratch(self, "pmax", xf.shape, x.dtype, reuse=train)
        np.maximum(xf[:-c], xf[c:], out=pmax[:-c])
        pmax[-c:] = xf[-c:]                              # last pixel: odd, never used
        pairs = pmax.reshape(rows, 2, row_len)           # (top row, bottom row) per window row
        wmax = np.maximum(pairs[:, 0], pairs[:, 1])      # (N*OH, W*C), valid at even pixels
        if train:
            # where the first maximum is: right pixel of its pair / bottom pair of its window
            # (strict comparisons: ties go left and up, i.e. first in row-major order)
            self._right = np.greater(xf[c:], xf[:-c],
                                     out=_scratch(self, "right", (xf.size - c,), np.bool_))
            self._bottom = np.greater(pairs[:, 1], pairs[:, 0],
                                      out=_scratch(self, "bottom", wmax.shape, np.bool_))
        return np.ascontiguousarray(wmax.reshape(n, h // 2, w // 2, 2 * c)[..., :c])

    def backward(self, grad):
        k, s = self.pool_size, self.stride
        n, h, w, c = self._xshape
        if k == 2 and s == 2:
            return _uncrop(self._backward2(grad), self._xshape)
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

    def _backward2(self, grad):
        """Route ``grad`` ``(N, OH, OW, C)`` to the first maxima: ``(N, 2*OH, 2*OW, C)``."""
        n, oh, ow, c = grad.shape
        row_len = 2 * ow * c
        # the gradient at the left pixel of each window's top pair, zero at odd pixels
        g = _scratch(self, "g_left", (n * oh, ow, 2, c), grad.dtype, fill=0)
        g[:, :, 0, :] = grad.reshape(n * oh, ow, c)
        g = g.reshape(n * oh, row_len)
        # split between the top and bottom pair (exact: g - g is 0, g - 0 is g)
        pairs = _scratch(self, "pairs", (n * oh, 2, row_len), grad.dtype)
        np.multiply(g, self._bottom, out=pairs[:, 1])
        np.subtract(g, pairs[:, 1], out=pairs[:, 0])
        # then between the left and right pixel of each pair (a shift by C on the flat array)
        pf = pairs.reshape(-1)
        to_right = np.multiply(pf[:-c], self._right,
                               out=_scratch(self, "to_right", (pf.size - c,), grad.dtype))
        dx = np.empty(pf.shape, grad.dtype)
        np.subtract(pf[:-c], to_right, out=dx[:-c])
        dx[-c:] = 0
        dx[c:] += to_right
        return dx.reshape(n, 2 * oh, 2 * ow, c)


class AvgPool2D(_Pool2D):
    """Average pooling ``(N, H, W, C) -> (N, OH, OW, C)``.

    The 2x2, stride-2 case sums pairs on the flat input (long contiguous runs), as
    ``MaxPool2D`` does.
    """

    type = "avgpool2d"

    def forward(self, x, train=True):
        k, s = self.pool_size, self.stride
        n, h, w, c = x.shape
        oh, ow = self._out(h, w)
        if train:
            self._xshape = x.shape
        scale = x.dtype.type(1.0 / (k * k))
        if k == 2 and s == 2:
            x = _even_crop(x)
            xf = x.reshape(-1)
            psum = _scratch(self, "psum", xf.shape, x.dtype, reuse=train)
            np.add(xf[:-c], xf[c:], out=psum[:-c])      # pair sums at each pair's left pixel
            psum[-c:] = 0                                # last pixel: odd, never used
            pairs = psum.reshape(n * oh, 2, 2 * ow * c)  # (top row, bottom row) per window row
            wsum = np.add(pairs[:, 0], pairs[:, 1])
            return np.multiply(wsum.reshape(n, oh, ow, 2 * c)[..., :c], scale)
        he, we = s * (oh - 1) + 1, s * (ow - 1) + 1
        out = np.zeros((n, oh, ow, c), dtype=x.dtype)
        for i in range(k):
            for j in range(k):
                out += x[:, i:i + he:s, j:j + we:s, :]
        out *= scale
        return out

    def backward(self, grad):
        k, s = self.pool_size, self.stride
        oh, ow = grad.shape[1:3]
        g = grad * grad.dtype.type(1.0 / (k * k))
        if k == 2 and s == 2:
            n, _, _, c = grad.shape
            dx = np.empty((n, oh, 2, ow, 2, c), dtype=grad.dtype)
            dx[:, :, 0, :, 0, :] = g                         # top-left of each window
            dx[:, :, 0, :, 1, :] = g                         # top-right
            dx[:, :, 1] = dx[:, :, 0]                        # bottom row: one long-run copy
            return _uncrop(dx.reshape(n, 2 * oh, 2 * ow, c), self._xshape)
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
    #: set by the Model when this layer's input is the fresh output of the layer before
    #: (Conv2D, Dense, pooling), which nothing else keeps: forward then writes over it
    #: instead of filling a new array of the same size (less memory traffic)
    overwrite_input = False

    def _out(self, x):
        return x if self.overwrite_input else None


class ReLU(_Activation):
    """``max(x, 0)``. Backward multiplies by the cached ``x > 0`` mask."""

    type = "relu"

    def forward(self, x, train=True):
        rows = _rows(x)
        if train:
            self._mask = np.greater(rows, 0, out=_scratch(self, "mask", rows.shape, np.bool_))
        # maximum against a row of zeros: twice as fast as against the scalar 0
        return np.maximum(rows, _zeros_row(rows.shape[1], x.dtype),
                          out=self._out(rows)).reshape(x.shape)

    def backward(self, grad):
        return np.multiply(grad, self._mask.reshape(grad.shape))


class LeakyReLU(_Activation):
    type = "leaky_relu"

    def __init__(self, alpha: float = 0.01):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x, train=True):
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

    def forward(self, x, train=True):
        self._y = expit(x, out=self._out(x))
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

    def forward(self, x, train=True):
        self._y = np.tanh(x, out=self._out(x))
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

    def __init__(self, rate: float = 0.5):
        super().__init__()
        self.rate = float(rate)
        self.rng = np.random.default_rng(0)  # the model reseeds it from its seed

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
