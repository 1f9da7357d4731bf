"""Convolution and pooling, channels-last: images are ``(N, H, W, C)``.

``Conv2D`` is im2col plus one matrix product; the pools have fast paths for the common
2x2, stride-2 case that work on the flat input as long contiguous runs.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .fields import DEFAULT_INIT_TYPE, INT, MISSING, Field
from .layer_base import Layer, Param, ShapeError, _scratch, _Weighted, init_array, init_bias, shape_str


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


def _image_input(shape: tuple) -> tuple[int, int, int]:
    """``(H, W, C)``, or a ``ShapeError`` for any other input."""
    if len(shape) != 3:
        raise ShapeError(f"expects an image input (height, width, channels) but gets "
                         f"{shape_str(shape)}; put it before any flatten or dense layer")
    return shape


def _window_fits(field: str, k: int, h: int, w: int, p: int) -> None:
    """A ``ShapeError`` on ``field`` unless a ``k`` x ``k`` window fits the padded input."""
    if k > h + 2 * p or k > w + 2 * p:
        raise ShapeError(f"{field} {k} is larger than its input {h}x{w}"
                         + (f" padded by {p}" if p else ""), field)


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
    aliases = ("conv",)
    fields = {"filters": Field(INT, MISSING, 1, 1024), "kernel_size": Field(INT, MISSING, 1, 64),
              "stride": Field(INT, 1, 1, 64), "padding": Field(INT, 0, 0, 64), **_Weighted.fields}
    size_field = "filters"
    fresh_output = True
    gains_from_shards = True

    def __init__(self, filters: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 use_bias: bool = True, init: dict | None = None):
        super().__init__(use_bias, init)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.padding = int(padding)

    def compute_output_shape(self, input_shape):
        h, w, c = _image_input(input_shape)
        k, s, p = self.kernel_size, self.stride, self.padding
        _window_fits("kernel_size", k, h, w, p)
        if p >= k:
            raise ShapeError(f"padding must be smaller than kernel_size ({k}), got {p}", "padding")
        return conv_output_size(h, k, s, p), conv_output_size(w, k, s, p), self.filters

    def count_params(self, input_shape):
        k, f = self.kernel_size, self.filters
        return k * k * input_shape[-1] * f + (f if self.use_bias else 0)

    def work_size(self, input_shape):
        oh, ow, _ = self.compute_output_shape(input_shape)
        return oh * ow * self.kernel_size ** 2 * input_shape[-1]

    def build(self, input_shape, rng, dtype, default_init=None):
        h, w, c = input_shape
        k = self.kernel_size
        init = self.init or default_init or {"type": DEFAULT_INIT_TYPE}
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
    """``(N, H, W, C) -> (N, OH, OW, C)`` over ``pool_size`` windows (stride: the pool size)."""

    fields = {"pool_size": Field(INT, 2, 1, 64), "stride": Field(INT, None, 1, 64)}
    fresh_output = True

    def __init__(self, pool_size: int = 2, stride: int | None = None):
        super().__init__()
        self.pool_size = int(pool_size)
        self.stride = int(stride) if stride is not None else self.pool_size

    def compute_output_shape(self, input_shape):
        h, w, c = _image_input(input_shape)
        _window_fits("pool_size", self.pool_size, h, w, 0)
        return (*self._out(h, w), c)

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
    aliases = ("maxpool",)

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
    aliases = ("avgpool",)

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
