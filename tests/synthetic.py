"""A tiny generated dataset with 3 channels and 4 classes, for tests of anything that must not
assume MNIST's 28x28x1 images or its 10 classes.

Class k has a bright square in quadrant k (top-left, top-right, bottom-left, bottom-right), drawn
in a random colour on dark noise, so a small net learns it in a few steps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NAME = "tiny-rgb"
SIZE = 12
CHANNELS = 3
CLASS_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")


def make_arrays(n_train: int = 96, n_test: int = 32, size: int = SIZE, seed: int = 0) -> dict:
    """``{"x_train", "y_train", "x_test", "y_test"}``: uint8 ``(N, size, size, 3)``, int64 labels."""
    rng = np.random.default_rng(seed)
    out = {}
    half = size // 2
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % len(CLASS_NAMES)
        rng.shuffle(y)
        x = rng.integers(0, 40, (n, size, size, CHANNELS)).astype(np.uint8)
        for i, k in enumerate(y):
            r, c = (k // 2) * half, (k % 2) * half
            colour = rng.integers(150, 256, CHANNELS).astype(np.uint8)
            x[i, r + 1:r + half - 1, c + 1:c + half - 1] = colour
        out["x_" + split], out["y_" + split] = x, y.astype(np.int64)
    return out


def write_npz(folder: Path, name: str = NAME, **kw) -> Path:
    """Write the dataset as ``folder/<name>.npz`` (as ``BACKPROP_DATASETS`` reads it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npz"
    np.savez_compressed(path, **make_arrays(**kw), class_names=np.array(CLASS_NAMES),
                        description=np.array(f"{name}: generated 12x12 RGB squares, 4 classes "
                                             "(tests only). Licence: none needed."))
    return path
