"""Shared helpers of the benchmark scripts (import after the thread variables are set)."""
from __future__ import annotations

import numpy as np

from engine.datasets import Dataset, dataset_info
from engine.model import Model
from engine.presets import get_preset

N_BATCHES = 16  # distinct batches cycled through by every contender


def make_batches(data: Dataset, batch_size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``N_BATCHES`` float32 NHWC MNIST batches in ``[0, 1]`` with their int64 labels."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data.x_train))[:N_BATCHES * batch_size].reshape(N_BATCHES, -1)
    return [(Dataset.batch(data.x_train, i, np.float32), data.y_train[i]) for i in idx]


def engine_model(net: str, threads: int = 1) -> Model:
    """The preset's network as an engine model, float32, with the preset's initialiser; input
    shape and classes are its dataset's."""
    cfg = get_preset(net)
    info = dataset_info((cfg.get("dataset") or {}).get("name", "mnist"))
    return Model(cfg["model"], input_shape=info.input_shape, num_classes=info.num_classes,
                 dtype="float32", seed=0, init=cfg["train"].get("init"), threads=threads)


def keep_freed_memory() -> bool:
    """glibc keeps freed memory for reuse (see ``engine.runtime.keep_freed_memory``)."""
    from engine.runtime import keep_freed_memory as keep
    return keep()
