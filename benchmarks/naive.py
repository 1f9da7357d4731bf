"""Small, honest reimplementations of the seeds' naive convolution code, for timing only.

- :class:`BookCNN` is the training step of *Grokking Deep Learning* (Trask), chapter 10:
  ``get_image_section`` slices one ``(row, col)`` window position at a time, the slices are
  concatenated into the im2col matrix and multiplied by the kernels; tanh, a dropout mask from
  ``np.random.randint``, a dense layer to 10 and softmax, plain SGD. Two deliberate differences
  from the book: float32 (the book's arrays are float64) so that only the algorithm differs from
  ours, and ``range(28 - 3 + 1)`` window positions (the book's ``range(28 - 3)`` drops the last
  row and column of windows) so the output is 26x26 like the ``grokking-cnn`` preset.
- :class:`Convolve2dConv` is a conv layer written the way a first from-scratch CNN often is:
  per sample, per input channel, per filter, one ``scipy.signal.correlate2d`` call forward and
  ``correlate2d``/``convolve2d`` calls backward. It follows the engine's layer contract, so it
  can replace the ``Conv2D`` layers of an engine ``Model`` and share their parameters.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import convolve2d, correlate2d

from engine.layers import Conv2D, Layer


# ---------------------------------------------------------------- Grokking ch. 10

def get_image_section(layer, row_from, row_to, col_from, col_to):
    """The book's helper: one window position for the whole batch, ``(N, 1, kh, kw)``."""
    section = layer[:, row_from:row_to, col_from:col_to]
    return section.reshape(-1, 1, row_to - row_from, col_to - col_from)


def tanh2deriv(output):
    return 1 - (output ** 2)


def softmax(x):
    temp = np.exp(x)
    return temp / np.sum(temp, axis=1, keepdims=True)


class BookCNN:
    """Grokking ch. 10: conv 16@3x3 (no bias) - tanh - dropout 0.5 - dense 10 - softmax."""

    def __init__(self, kernel_rows=3, kernel_cols=3, num_kernels=16, alpha=2.0, seed=1,
                 dtype=np.float32):
        rng = np.random.RandomState(seed)
        self.kernel_rows, self.kernel_cols = kernel_rows, kernel_cols
        hidden_size = (28 - kernel_rows + 1) * (28 - kernel_cols + 1) * num_kernels
        self.kernels = (0.02 * rng.random_sample((kernel_rows * kernel_cols, num_kernels))
                        - 0.01).astype(dtype)
        self.weights_1_2 = (0.2 * rng.random_sample((hidden_size, 10)) - 0.1).astype(dtype)
        self.alpha = dtype(alpha)

    def conv_forward(self, layer_0):
        """``(N, 28, 28)`` -> im2col ``(N*26*26, 9)`` and conv output ``(N*26*26, 16)``."""
        kr, kc = self.kernel_rows, self.kernel_cols
        sects = list()
        for row_start in range(layer_0.shape[1] - kr + 1):
            for col_start in range(layer_0.shape[2] - kc + 1):
                sect = get_image_section(layer_0, row_start, row_start + kr,
                                         col_start, col_start + kc)
                sects.append(sect)
        expanded_input = np.concatenate(sects, axis=1)
        es = expanded_input.shape
        flattened_input = expanded_input.reshape(es[0] * es[1], -1)
        kernel_output = flattened_input.dot(self.kernels)
        return flattened_input, kernel_output, es

    def train_step(self, images, labels):
        """One batch: ``images`` ``(N, 28, 28)`` float, ``labels`` one-hot ``(N, 10)``."""
        batch_size = images.shape[0]
        layer_0 = images
        flattened_input, kernel_output, es = self.conv_forward(layer_0)
        layer_1 = np.tanh(kernel_output.reshape(es[0], -1))
        dropout_mask = np.random.randint(2, size=layer_1.shape)
        layer_1 *= dropout_mask * 2
        layer_2 = softmax(np.dot(layer_1, self.weights_1_2))
        correct_cnt = 0
        for k in range(batch_size):
            correct_cnt += int(np.argmax(layer_2[k:k + 1]) == np.argmax(labels[k:k + 1]))
        layer_2_delta = (labels - layer_2) / (batch_size * layer_2.shape[0])
        layer_1_delta = layer_2_delta.dot(self.weights_1_2.T) * tanh2deriv(layer_1)
        layer_1_delta *= dropout_mask
        self.weights_1_2 += self.alpha * layer_1.T.dot(layer_2_delta)
        l1d_reshape = layer_1_delta.reshape(kernel_output.shape)
        k_update = flattened_input.T.dot(l1d_reshape)
        self.kernels -= self.alpha * k_update
        return correct_cnt


# ---------------------------------------------------------------- per-sample convolve2d

class Convolve2dConv(Layer):
    """A ``Conv2D`` done with per-sample, per-channel ``scipy.signal`` 2-D correlations.

    ``(N, H, W, C) -> (N, OH, OW, F)``, stride 1 only. It takes over an engine ``Conv2D``'s
    parameters (same ``Param`` objects), padding and ``needs_input_grad``.
    """

    type = "conv2d"

    def __init__(self, conv: Conv2D):
        super().__init__()
        if conv.stride != 1:
            raise ValueError("the convolve2d reference supports stride 1 only")
        self.padding = conv.padding
        self.use_bias = conv.use_bias
        self.params = conv.params
        self.index = conv.index
        self.needs_input_grad = conv.needs_input_grad

    def forward(self, x, train=True):
        p = self.padding
        if p:
            x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        w = self.params[0].value
        kh, kw, c, f = w.shape
        n, h, wd, _ = x.shape
        out = np.zeros((n, h - kh + 1, wd - kw + 1, f), dtype=x.dtype)
        for i in range(n):
            for o in range(f):
                for ch in range(c):
                    out[i, :, :, o] += correlate2d(x[i, :, :, ch], w[:, :, ch, o], mode="valid")
        if self.use_bias:
            out += self.params[1].value
        self._x = x
        return out

    def backward(self, grad):
        x, p = self._x, self.padding
        w = self.params[0].value
        kh, kw, c, f = w.shape
        n = x.shape[0]
        dw = self.params[0].grad
        dx = np.zeros_like(x) if self.needs_input_grad else None
        for i in range(n):
            for o in range(f):
                g = grad[i, :, :, o]
                for ch in range(c):
                    dw[:, :, ch, o] += correlate2d(x[i, :, :, ch], g, mode="valid")
                    if dx is not None:
                        dx[i, :, :, ch] += convolve2d(g, w[:, :, ch, o], mode="full")
        if self.use_bias:
            self.params[1].grad += grad.sum(axis=(0, 1, 2))
        if dx is None:
            return None
        if p:
            dx = dx[:, p:-p, p:-p, :]
        return dx
