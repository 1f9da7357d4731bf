"""Looking inside a model: every layer's output, every layer's weights, saliency.

NumPy only. Nothing here changes the model it is given: outputs are computed by calling
the layers directly in evaluation mode (none writes over its input), and the saliency
works on a float64 copy.
"""
from __future__ import annotations

import numpy as np

from .layers import BatchNorm, Dropout
from .model import Model

#: dense units shown as tiles at most (the rest counted as "N of M")
MAX_UNITS = 64


def layer_name(index: int, kind: str) -> str:
    """The name the page shows for layer ``index`` (0-based, as the parameter names)."""
    return f"{index}.{kind}"


def _as_batch(model: Model, x: np.ndarray) -> np.ndarray:
    """``x``: one image ``model.input_shape`` or a batch ``(N, *input_shape)``."""
    x = np.asarray(x)
    if x.shape == tuple(model.input_shape):
        x = x[None]
    if x.shape[1:] != tuple(model.input_shape):
        raise ValueError(f"input shape {x.shape} does not match the model's "
                         f"{tuple(model.input_shape)}")
    return x


def layer_outputs(model: Model, x: np.ndarray) -> list[dict]:
    """Every layer's output for ``x`` (one image ``(H, W, C)`` or ``(N, H, W, C)``).

    Returns one dict per layer: ``index``, ``name``, ``type``, ``shape`` (without the batch
    axis, equal to the validated summary's ``output_shape``) and ``array`` ``(N, *shape)``
    in the model's dtype (a new array; ``x`` is not modified).
    """
    h = model._standardise(_as_batch(model, x).astype(model.dtype))   # always a new array
    out = []
    for layer in model.layers:
        h = layer.forward(h, train=False)      # called directly: never overwrites its input
        out.append({"index": layer.index, "name": layer_name(layer.index, layer.type),
                    "type": layer.type, "shape": list(h.shape[1:]), "array": h.copy()})
    return out


def layer_weights(model: Model, max_units: int = MAX_UNITS) -> list[dict]:
    """Every weighted layer's kernel, arranged for display.

    Conv2D: ``kernels`` ``(F, kh, kw, C)``. Dense: ``kernels`` ``(U, D)`` one row per
    unit, or ``(U, H, W, C)`` when its input is the image itself (a Flatten of it), so a
    unit reads as a 28x28 tile. At most ``max_units`` units/filters; ``shown`` and
    ``total`` say how many of how many. Also ``index``, ``name``, ``type``, ``shape``
    (the kernel's shape as stored) and ``bias`` ``(total,)`` or None.
    """
    out = []
    input_is_image = True          # layers so far only reshape the input
    for layer in model.layers:
        if layer.has_kernel:
            kern = layer.params[0].value
            if kern.ndim == 4:                                   # conv (kh, kw, C, F)
                total = kern.shape[3]
                shown = kern.transpose(3, 0, 1, 2)[:max_units]
            else:                                                # dense (D, U)
                total = kern.shape[1]
                shown = kern.T[:max_units]
                if input_is_image and kern.shape[0] == int(np.prod(model.input_shape)):
                    shown = shown.reshape((len(shown),) + tuple(model.input_shape))
            bias = layer.params[1].value if getattr(layer, "use_bias", False) else None
            out.append({"index": layer.index, "name": layer_name(layer.index, layer.type),
                        "type": layer.type, "shape": list(kern.shape), "kernels": shown.copy(),
                        "shown": int(len(shown)), "total": int(total),
                        "bias": None if bias is None else bias.copy()})
        if layer.type != "flatten":
            input_is_image = False
    return out


def float64_copy(model: Model) -> Model:
    """A new model with the same layers and weights, in float64 (``model`` is unchanged)."""
    twin = Model(model.get_config(), model.input_shape, model.num_classes, loss=model.loss_name,
                 dtype="float64", seed=model.seed, init=model.default_init,
                 normalize=model.normalize)
    twin.load_state_arrays(model.state_arrays())          # copies, cast to float64
    return twin


def saliency(model: Model, x: np.ndarray, cls: int | None = None) -> dict:
    """d(score of class ``cls``)/d(input) for one image, by the engine's backward pass.

    ``x``: one image ``model.input_shape`` (pixels, before the model's standardisation).
    ``cls``: the class whose score (the model's output before softmax) is differentiated;
    None: the predicted class. Computed in float64 on a copy of the model, in evaluation
    mode (Dropout is the identity, BatchNorm uses its running statistics).

    Returns ``{"gradient": (H, W, C) float64, "cls": int, "score": float,
    "scores": (num_classes,)}``. ``x`` and ``model`` are not modified.
    """
    net = float64_copy(model)
    xb = _as_batch(net, x).astype(np.float64)
    if len(xb) != 1:
        raise ValueError("saliency takes one image")
    h = net._standardise(xb)
    steps = []
    for layer in net.layers:
        layer.needs_input_grad = True
        if isinstance(layer, BatchNorm):
            h = layer.forward(h, train=False)
            steps.append(("bn", layer))
        elif isinstance(layer, Dropout):
            h = layer.forward(h, train=False)               # identity, backward too
            steps.append(("layer", layer))
        else:
            # train=True only makes the layer keep what backward needs; for these layers
            # the values are the same as in evaluation
            h = layer.forward(h, train=True)
            steps.append(("layer", layer))
    scores = h[0]
    c = int(np.argmax(scores)) if cls is None else int(cls)
    if not 0 <= c < net.num_classes:
        raise ValueError(f"class {c} is not one of 0..{net.num_classes - 1}")
    g = np.zeros_like(h)
    g[0, c] = 1.0
    for kind, layer in reversed(steps):
        if kind == "bn":       # evaluation-mode BatchNorm is affine per channel
            g = g * (layer.params[0].value * layer._inv)
        else:
            g = layer.backward(g)
    if net.normalize is not None:
        g = g / np.asarray(net.normalize[1], dtype=np.float64)
    return {"gradient": g[0], "cls": c, "score": float(scores[c]), "scores": scores.copy()}


__all__ = ["layer_outputs", "layer_weights", "saliency", "float64_copy", "layer_name"]
