"""What every layer shares: ``Param``, the ``Layer`` base class, initialisers, work buffers.

The layers themselves are in engine/layers.py (dense, activations, dropout, batchnorm) and
engine/conv.py (convolution and pooling); engine/layers.py re-exports everything.
"""
from __future__ import annotations

import numpy as np


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


# ---------------------------------------------------------------- work buffers

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
