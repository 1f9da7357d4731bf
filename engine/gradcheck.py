"""Numerical gradient checks (central differences in float64), as in cs231n.

``rel_error(a, b) = max |a - b| / max(1e-8, |a| + |b|)``, elementwise then max:
below 1e-7 is right for smooth functions in float64.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .model import Model


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5,
                       max_entries: int | None = None, rng: np.random.Generator | None = None):
    """Central-difference gradient of ``f()`` with respect to ``x``, perturbed in place.

    With ``max_entries``, only that many randomly chosen entries are checked and
    the returned mask says which (``grad`` is NaN elsewhere).
    """
    grad = np.full(x.shape, np.nan)
    flat = x.reshape(-1)
    idx = np.arange(flat.size)
    if max_entries is not None and flat.size > max_entries:
        idx = (rng or np.random.default_rng(0)).choice(flat.size, max_entries, replace=False)
    g = grad.reshape(-1)
    for i in idx:
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        g[i] = (fp - fm) / (2 * h)
    return grad, ~np.isnan(grad)


def check_model(model: Model, x: np.ndarray, y: np.ndarray, max_entries: int = 50,
                h: float = 1e-5, seed: int = 0) -> list[dict]:
    """Analytic vs numerical gradient of the model's loss, per parameter tensor.

    The model must be float64. Dropout is switched off (its mask would change
    between evaluations). Returns ``[{"name", "shape", "rel_error", "checked"}]``.
    """
    if model.dtype != np.float64:
        raise ValueError("gradient checks need a float64 model (build it with dtype='float64')")
    saved = [(layer, layer.rate) for layer in model.layers if layer.type == "dropout"]
    for layer, _ in saved:
        layer.rate = 0.0
    try:
        x = x.astype(np.float64)

        def loss() -> float:
            return model.loss_fn(model.forward(x, train=True), y)[0]

        model.zero_grad()
        model.loss_and_grad(x, y)
        analytic = [p.grad.copy() for p in model.params]
        rng = np.random.default_rng(seed)
        rows = []
        for p, a in zip(model.params, analytic):
            num, mask = numerical_gradient(loss, p.value, h, max_entries, rng)
            rows.append({"name": p.name, "shape": list(p.value.shape),
                         "rel_error": rel_error(a[mask], num[mask]), "checked": int(mask.sum())})
        return rows
    finally:
        for layer, rate in saved:
            layer.rate = rate
