"""Shared helpers of the benchmark scripts (import after the thread variables are set)."""
from __future__ import annotations

import numpy as np

from engine.datasets import Dataset
from engine.model import Model
from engine.presets import get_preset

N_BATCHES = 16  # distinct batches cycled through by every contender


def make_batches(data: Dataset, batch_size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``N_BATCHES`` float32 NHWC MNIST batches in ``[0, 1]`` with their int64 labels."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data.x_train))[:N_BATCHES * batch_size].reshape(N_BATCHES, -1)
    return [(Dataset.batch(data.x_train, i, np.float32), data.y_train[i]) for i in idx]


def engine_model(net: str) -> Model:
    """The preset's network as an engine model, float32, with the preset's initialiser."""
    cfg = get_preset(net)
    return Model(cfg["model"], input_shape=(28, 28, 1), dtype="float32", seed=0,
                 init=cfg["train"].get("init"))


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of returning it to the OS (process-wide).

    By default glibc gives large freed blocks back to the OS, and the next training step's
    arrays of the same size then page-fault their memory in again (about 1,500 faults per
    LeNet step at batch 64). ``mallopt`` with a fixed mmap threshold and a high trim
    threshold keeps those blocks for reuse. Returns False where glibc is not available.
    """
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 256 << 20) and
                libc.mallopt(m_trim_threshold, 1 << 30))
