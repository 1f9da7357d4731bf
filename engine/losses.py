"""Losses. Each returns ``(loss, dlogits)`` for a batch: the mean loss over the
batch and its gradient with respect to the model's output ``(N, K)``."""
from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, K)``; shifted by the row max so ``exp`` cannot overflow."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


class SoftmaxCrossEntropy:
    """Softmax folded into cross-entropy: ``mean(logsumexp(z) - z[y])``.

    Fused because the gradient is simply ``(softmax(z) - onehot(y)) / N`` and the
    log-sum-exp form stays finite where ``log(softmax)`` would hit ``log(0)``.
    """

    name = "cross_entropy"

    def __call__(self, logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        n = logits.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        loss = float(np.mean(np.log(s[:, 0]) - shifted[rows, y]))
        grad = e / s
        grad[rows, y] -= 1
        grad /= n
        return loss, grad

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits)


class MeanSquaredError:
    """Nielsen's quadratic cost: ``mean over the batch of 0.5 * ||a - onehot(y)||^2``.

    Applied to the model's output as it is (in ``network.py`` that is a sigmoid
    layer), so its gradient per sample is ``a - y``, as in the book.
    """

    name = "mse"

    def __call__(self, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        n = out.shape[0]
        diff = out.copy()
        diff[np.arange(n), y] -= 1
        loss = 0.5 * float(np.einsum("ij,ij->", diff, diff)) / n
        return loss, diff / out.dtype.type(n)

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        """Outputs normalised to sum to one: a display aid, not a calibrated probability."""
        a = np.clip(out, 0, None)
        s = a.sum(axis=1, keepdims=True)
        return np.where(s > 0, a / np.where(s > 0, s, 1), 1.0 / out.shape[1])


LOSSES = {"cross_entropy": SoftmaxCrossEntropy, "mse": MeanSquaredError}
