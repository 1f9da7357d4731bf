"""What every layer shares: ``Param``, the ``Layer`` base class, initialisers, work buffers.

The layers themselves are in engine/layers.py (dense, activations, dropout, batchnorm) and
engine/conv.py (convolution and pooling); engine/layers.py re-exports everything.
"""
from __future__ import annotations

import numpy as np

from .fields import BOOL, DEFAULT_INIT_TYPE, INIT, INIT_COMMON_FIELDS, Field, init_default


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


class ShapeError(ValueError):
    """A layer cannot take an input of some shape.

    The message reads after the layer's name ("layer 3 (dense): expects a flat input ...");
    ``field`` is the config field at fault, or None when it is the input itself.
    """

    def __init__(self, msg: str, field: str | None = None):
        super().__init__(msg)
        self.field = field


def shape_str(shape) -> str:
    """``(28, 28, 1)``, ``(10,)``: a shape as a person writes it."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class Layer:
    """Base layer. A subclass sets ``type`` and ``fields`` (its config fields, one table per
    layer type) and the class attributes below that apply, and answers, for an input shape
    without the batch axis, its output shape (``compute_output_shape``), its parameter
    count and its work size before anything is allocated: engine.spec validates a config
    with them. ``build`` allocates, ``forward``/``backward`` compute.
    """

    type = "layer"
    #: the config fields besides ``type``: ``{name: engine.fields.Field}``, in config order
    fields: dict[str, Field] = {}
    #: other names a config may give as its ``type``
    aliases: tuple[str, ...] = ()
    #: an elementwise activation: ``forward(x, train, overwrite=True)`` may write its result
    #: over ``x``, and a snapshot's feature maps include the activation after a weighted layer
    is_activation = False
    #: forward returns a new array that the layer does not keep (an activation after it
    #: may write over it)
    fresh_output = False
    #: has a kernel: the model's first such layer is the one a snapshot shows
    has_kernel = False
    #: the field that sets the layer's size: when it is far out of range, the error says
    #: what the weights would weigh
    size_field: str | None = None
    #: a net with this layer computes big training batches in shards (Model.shard_bounds)
    gains_from_shards = False
    #: a net with this layer never shards (BatchNorm: batch statistics depend on the split)
    breaks_sharding = False
    #: False for the first layer of a model: its input gradient is never needed.
    needs_input_grad = True

    def __init__(self):
        self.params: list[Param] = []
        self.index = 0  # position in the model, for names and error messages

    @classmethod
    def from_config(cls, cfg: dict) -> "Layer":
        """The layer of a config entry (``{"type": ..., field: value, ...}``)."""
        return cls(**{k: v for k, v in cfg.items() if k != "type"})

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """The output shape for an input of ``input_shape`` (no batch axis).

        Raises ``ShapeError`` when the layer cannot take that input.
        """
        raise NotImplementedError(f"{type(self).__name__} must say its output shape")

    def count_params(self, input_shape: tuple) -> int:
        """How many numbers ``build`` allocates as parameters for this input shape."""
        return 0

    def work_size(self, input_shape: tuple) -> int:
        """Values per image of the largest work array forward keeps (Conv2D's im2col
        matrix), for the memory estimate."""
        return 0

    def build(self, input_shape: tuple, rng: np.random.Generator, dtype,
              default_init: dict | None = None) -> None:
        """Allocate parameters and state for an input of ``input_shape`` (no batch axis).

        ``rng`` draws initial weights; ``default_init`` is the run's initialiser, for a
        layer that names none of its own. Layers without parameters allocate nothing.
        """

    def set_stream(self, key: list[int]) -> None:
        """Seed the layer's own random numbers (Dropout's masks) from ``key``; a layer that
        draws none ignores it."""

    def buffers(self) -> dict[str, np.ndarray]:
        """Arrays saved with the parameters that are not trained (BatchNorm's running
        statistics), by name; loading copies into them in place."""
        return {}

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad[...] = 0

    def get_config(self) -> dict:
        """The layer's config entry with every default filled in (``from_config`` of it
        gives the same layer)."""
        return {"type": self.type}

    def __repr__(self) -> str:
        cfg = {k: v for k, v in self.get_config().items() if k != "type"}
        inner = ", ".join(f"{k}={v!r}" for k, v in cfg.items())
        return f"{type(self).__name__}({inner})"


# ---------------------------------------------------------------- initialisers

def init_array(init: dict, shape: tuple, fan_in: int, fan_out: int,
               rng: np.random.Generator, dtype) -> np.ndarray:
    """Draw a weight array. ``init`` is ``{"type": ..., "std"|"limit": ...}``; a parameter
    left out takes its default from ``engine.fields.INIT_FIELDS``.

    - ``normal``: N(0, std^2), as in the exercises (std 0.01, 1e-4, 1.0).
    - ``uniform``: U(-limit, limit) (the Grokking book's ``0.2*rand - 0.1``).
    - ``xavier``/``glorot``: U(+-sqrt(6/(fan_in+fan_out))), Keras' default.
    - ``he``: N(0, 2/fan_in), for ReLU nets.
    """
    kind = init.get("type", DEFAULT_INIT_TYPE)
    if kind == "normal":
        w = rng.standard_normal(shape) * float(init.get("std", init_default("normal", "std")))
    elif kind == "uniform":
        lim = float(init.get("limit", init_default("uniform", "limit")))
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
    std = float(init.get("bias_std", INIT_COMMON_FIELDS["bias_std"].default))
    if std > 0:
        return (rng.standard_normal(shape) * std).astype(dtype)
    return np.zeros(shape, dtype=dtype)


class _Weighted(Layer):
    """A layer with a kernel and an optional bias, drawn by ``init`` (or the run's)."""

    fields = {"use_bias": Field(BOOL, True), "init": Field(INIT, None)}
    has_kernel = True

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
