"""Numerical gradient checks (central differences in float64), as in cs231n.

``rel_error(a, b) = max |a - b| / max(1e-8, |a| + |b|)``, elementwise then max:
below 1e-7 is right for smooth functions in float64. ``check_model`` raises the floor to
the rounding noise of the difference itself: ``f(x+h) - f(x-h)`` carries an absolute error
of a few ``eps * |loss|``, i.e. about ``1e-16 * loss / h`` in the quotient, which swamps
entries far smaller than their neighbours (cs231n's 1e-4 initial weights make many such).
With the floor ``NOISE_FLOOR * eps * max(1, |loss|) / h`` that noise stays below 1e-5, and
a gradient 1% off is still caught on any entry above ~1e-7 (at ``h = 1e-5``, loss ~2).

ReLU and max pooling are not smooth: a central difference whose ``+-h`` window crosses a
kink (a ReLU input changing sign, a max-pool window changing its maximum) measures the
average of two slopes, not the gradient, and says nothing about backprop. MNIST makes this
common: its exact-zero background and zero initial biases put whole feature maps exactly
on ReLU's kink. ``check_model`` therefore records which side of every kink each unit is
on, at ``+h`` and ``-h``; an entry whose window changes any of them is counted as "at a
kink" and retried once with a step 100 times smaller, and if it still crosses it is left
out of the comparison (and counted), never compared. ``verdict`` turns the rows into
one of three answers: agrees, inconclusive (n entries at kinks), disagrees.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .layers import LeakyReLU, MaxPool2D, ReLU, _windows
from .model import Model

#: a retry step for entries at kinks: h / KINK_RETRY
KINK_RETRY = 100.0
#: the error's floor in units of ``eps * max(1, |loss|) / h`` (see the module docstring)
NOISE_FLOOR = 1e5
EPS = float(np.finfo(np.float64).eps)


def rel_error(a: np.ndarray, b: np.ndarray, floor: float = 1e-8) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(floor, np.abs(a) + np.abs(b))))


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


def loss_and_kinks(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """The training-mode loss of ``model`` on ``(x, y)`` and the side of every kink.

    The layers run one by one in the spec's order (the model's own plan pools before the
    activation; both give the same numbers). The pattern holds, per ReLU/LeakyReLU, its
    input's ``> 0`` mask and, per MaxPool2D, the index of each window's first maximum
    ``(N, OH, OW, C)``: the loss is smooth in any parameter while none of them changes.
    """
    h = model._standardise(x.copy())          # a copy: an activation may overwrite its input
    pattern = []
    for layer in model.layers:
        if isinstance(layer, (ReLU, LeakyReLU)):
            pattern.append(h > 0)
        elif isinstance(layer, MaxPool2D):
            k, s = layer.pool_size, layer.stride
            oh, ow = layer._out(h.shape[1], h.shape[2])
            win = _windows(h, k, k, s, oh, ow)
            pattern.append(win.reshape(*win.shape[:3], k * k, -1).argmax(axis=3))
        h = layer.forward(h, train=True)
    return float(model.loss_fn(h, y)[0]), pattern


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(p, q) for p, q in zip(a, b))


def check_model(model: Model, x: np.ndarray, y: np.ndarray, max_entries: int = 50,
                h: float = 1e-5, seed: int = 0) -> list[dict]:
    """Analytic vs numerical gradient of the model's loss, per parameter tensor.

    The model must be float64. Dropout is switched off (its mask would change between
    evaluations). Up to ``max_entries`` random entries of each tensor are perturbed by
    ``+-h``; an entry whose window crosses a kink (see the module docstring) is retried
    with ``h / KINK_RETRY`` and, if it still crosses, counted in ``at_kinks`` and not
    compared. Returns ``[{"name", "shape", "rel_error", "checked", "at_kinks"}]`` where
    ``rel_error`` is over the ``checked`` entries (None when every entry sat at a kink),
    its floor the difference's rounding noise (see the module docstring).
    """
    if model.dtype != np.float64:
        raise ValueError("gradient checks need a float64 model (build it with dtype='float64')")
    saved = [(layer, layer.rate) for layer in model.layers if layer.type == "dropout"]
    for layer, _ in saved:
        layer.rate = 0.0
    try:
        x = x.astype(np.float64)
        model.zero_grad()
        model.loss_and_grad(x, y)
        analytic = [p.grad.copy() for p in model.params]
        loss, base = loss_and_kinks(model, x, y)
        rng = np.random.default_rng(seed)
        rows = []
        for p, a in zip(model.params, analytic):
            flat, ga = p.value.reshape(-1), a.reshape(-1)
            idx = np.arange(flat.size)
            if flat.size > max_entries:
                idx = rng.choice(flat.size, max_entries, replace=False)
            errs, kinks = [], 0
            for i in idx:
                old = flat[i]
                for step in (h, h / KINK_RETRY):
                    flat[i] = old + step
                    fp, kp = loss_and_kinks(model, x, y)
                    flat[i] = old - step
                    fm, km = loss_and_kinks(model, x, y)
                    flat[i] = old
                    if _same(kp, base) and _same(km, base):
                        floor = max(1e-8, NOISE_FLOOR * EPS * max(1.0, abs(loss)) / step)
                        errs.append(rel_error(ga[i], (fp - fm) / (2 * step), floor))
                        break
                else:
                    kinks += 1
            rows.append({"name": p.name, "shape": list(p.value.shape),
                         "rel_error": max(errs) if errs else None,
                         "checked": len(errs), "at_kinks": kinks})
        return rows
    finally:
        for layer, rate in saved:
            layer.rate = rate


def verdict(rows: list[dict], threshold: float) -> dict:
    """One answer for a ``check_model`` result.

    - ``disagrees``: some entry off the kinks has a relative error of ``threshold`` or more
      (backprop is wrong there, whatever the kinks do);
    - ``inconclusive``: every compared entry agrees but ``at_kinks`` entries could not be
      compared (their windows cross a kink even at the smaller step);
    - ``agrees``: every sampled entry was compared and agrees.

    Returns ``{"status", "max_rel_error", "at_kinks", "checked"}``.
    """
    errs = [r["rel_error"] for r in rows if r["rel_error"] is not None]
    worst = max(errs) if errs else None
    at_kinks = sum(r["at_kinks"] for r in rows)
    bad = any(not np.isfinite(e) or e >= threshold for e in errs)
    status = "disagrees" if bad else "inconclusive" if at_kinks else "agrees"
    return {"status": status, "max_rel_error": worst, "at_kinks": at_kinks,
            "checked": sum(r["checked"] for r in rows)}
