"""Datasets and their sample images."""
from __future__ import annotations

import base64
from typing import Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from engine import DatasetError, list_datasets, load_dataset
from engine.datasets import dataset_names

from ..errors import ApiError
from ..schemas import errors

router = APIRouter(prefix="/api/datasets", tags=["datasets"])
MAX_SAMPLES = 256


@router.get("", summary="Known datasets and whether each is installed")
async def get_datasets():
    return {"datasets": list_datasets()}


def _samples(name: str, split: str, idx: list[int] | None, start: int, count: int) -> dict:
    try:
        data = load_dataset(name)
    except DatasetError as e:
        raise ApiError(409, ["path", "name"], f"dataset {name} cannot be loaded: {e}") from None
    x = data.x_train if split == "train" else data.x_test
    y = data.y_train if split == "train" else data.y_test
    n = len(x)
    if idx is None:
        if start >= n:
            raise ApiError(422, ["query", "start"], f"start must be below {n} (the {split} "
                                                    f"split's size), got {start}")
        idx = list(range(start, min(start + count, n)))
    bad = [i for i in idx if i >= n]
    if bad:
        raise ApiError(422, ["query", "indices"], f"indices must be below {n} (the {split} "
                                                  f"split's size), got {bad[0]}")
    # one channel: (H, W) images, as before colour; C channels: (H, W, C), channels last
    h, w, c = x.shape[1:]
    shape = [h, w] if c == 1 else [h, w, c]
    items = [{"index": i, "label": int(y[i]),
              "pixels": {"__array__": "uint8", "shape": shape, "min": 0.0, "max": 255.0,
                         "b64": base64.b64encode(x[i].tobytes()).decode("ascii")}}
             for i in idx]
    return {"shape": shape, "channels": c, "class_names": list(data.class_names), "items": items}


@router.get("/{name}/samples", responses=errors(422, e404="Unknown dataset",
                                              e409="the dataset cannot be loaded"),
            summary="Raw images with labels: by range (start, count) or by indices=3,17,42")
async def get_samples(name: str, split: Literal["train", "test"] = "test",
                      start: int = Query(0, ge=0), count: int = Query(64, ge=1, le=MAX_SAMPLES),
                      indices: str | None = Query(None, max_length=4000,
                                                  description="comma-separated, at most 256")):
    if name not in dataset_names():
        raise ApiError(404, ["path", "name"], f"dataset {name[:60]!r} not found "
                                              f"(one of {', '.join(dataset_names())})")
    idx = None
    if indices is not None:
        parts = [p.strip() for p in indices.split(",") if p.strip()]
        if not parts or len(parts) > MAX_SAMPLES or not all(p.isdigit() for p in parts):
            raise ApiError(422, ["query", "indices"], "indices must be 1 to 256 comma-separated "
                                                      f"non-negative integers, got {indices[:60]!r}")
        idx = [int(p) for p in parts]
    return await run_in_threadpool(_samples, name, split, idx, start, count)
