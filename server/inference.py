"""Using a run's saved weights: predict, gradient check, export and import.

All the math is the engine's (``Model.predict_proba``, ``feature_maps``,
``engine.gradcheck.check_model``); this module finds the weights, caches the
rebuilt model, and checks inputs against the run's dataset shape.
"""
from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine import DatasetError, Model, SpecError, is_bsde, load_dataset, validate_config
from engine.bsde import gradcheck_run
from engine.datasets import DATASETS_ENV, DatasetInfo, dataset_info
from engine.events import encode_array
from engine.gradcheck import check_model, verdict
from engine.inspect import layer_outputs, layer_weights, saliency

from .errors import ApiError
from .npz import read_npz

GRADCHECK_SAMPLES = 3
GRADCHECK_ENTRIES = 20              # entries checked per parameter tensor
GRADCHECK_THRESHOLD = 1e-4          # float64 central differences; entries at kinks are not compared
GRADCHECK_MAX_PARAMS = 5_000_000
GRADCHECK_MAX_MEMORY = 512 << 20

_gradcheck_lock = threading.Semaphore(1)   # one at a time: it is CPU-bound


class ModelCache:
    """Rebuilt models keyed by (checkpoint path, mtime, size); a new checkpoint reloads."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, config: dict, path: Path) -> tuple[Model, dict]:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ApiError(409, ["path", "run_id"],
                           "this run has no saved weights yet (they are saved every few seconds "
                           "while it trains and when it ends)") from None
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        spec, arrays = Model.read_checkpoint(path)
        model = Model.from_config(config)
        model.load_state_arrays(arrays)
        item = (model, spec.get("meta", {}))
        with self._lock:
            self._items[key] = item
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return item

    def forget(self, path: Path) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == str(path)]:
                del self._items[key]


def run_dataset(config: dict) -> DatasetInfo:
    """The registry's record of a run's dataset; 409 if this server does not know it (a run
    made while the server was started with another ``BACKPROP_DATASETS``)."""
    name = config["dataset"]["name"]
    try:
        return dataset_info(name)
    except DatasetError:
        raise ApiError(409, ["path", "run_id"], f"this run's dataset {name!r} is not registered "
                       f"on this server (start it with {DATASETS_ENV} naming the folder of "
                       f"{name}.npz)") from None


def predict(cache: ModelCache, config: dict, path: Path, image: list[list[float]]) -> dict:
    """``image``: H rows of W greyscale values in 0..1; for a dataset of C channels the same
    value goes to every channel (a drawing has no colour). Probabilities: one per class."""
    h, w, c = run_dataset(config).input_shape
    rows = len(image)
    cols = {len(r) for r in image}
    if rows != h or cols != {w}:
        got = f"{rows} x {'/'.join(str(c) for c in sorted(cols))}"
        raise ApiError(422, ["body", "image"], f"image must be {h} x {w} (the run's dataset "
                                               f"{config['dataset']['name']}), got {got}")
    x = np.asarray(image, dtype=np.float64)
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ApiError(422, ["body", "image"], "image values must be finite numbers in 0..1")
    model, meta = cache.get(config, path)
    x = np.repeat(x.reshape(1, h, w, 1), c, axis=3).astype(model.dtype)
    probs = model.predict_proba(x)[0]
    fmaps = model.feature_maps(x)
    return {"probabilities": [float(p) for p in probs], "predicted": int(np.argmax(probs)),
            "feature_maps": encode_array(fmaps[0]) if fmaps is not None else None,
            "step": meta.get("step")}


def export_named(config: dict, path: Path) -> bytes:
    """The run's saved weights as an .npz keyed as the page names them (``layer2.dense.kernel``,
    ``layer3.batchnorm.running_mean``; Model.named_state), without optimizer state."""
    import io
    model = Model.from_config(config)
    _, arrays = Model.read_checkpoint(path)
    model.load_state_arrays(arrays)
    buf = io.BytesIO()
    np.savez(buf, **model.named_state())
    return buf.getvalue()


def import_weights(config: dict, path: Path, data: bytes, max_total: int) -> int | None:
    """Check an uploaded .npz against the run's model and save it as the run's weights."""
    arrays = read_npz(data, max_total)
    arrays.pop("__spec__", None)
    for k, a in arrays.items():
        if k.startswith(("param.", "buffer.", "layer")) and a.dtype.kind != "f":
            raise ApiError(422, ["body", k], f"array {k!r} has dtype {a.dtype}; weights must be "
                                             "float32 or float64")
    run_dataset(config)
    model = Model.from_config(config)
    try:
        # as exported (layer2.dense.kernel ...), or a checkpoint's own keys (param.0 ...)
        if not any(k.startswith(("param.", "buffer.")) for k in arrays):
            arrays = model.from_named(arrays)
        model.load_state_arrays(arrays)
    except ValueError as e:
        name = str(e).split("'")[1] if "'" in str(e) else None
        raise ApiError(422, ["body"] + ([name] if name else []), str(e)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".upload")
    model.save(tmp, meta={"step": None, "imported": True, "config": config})
    os.replace(tmp, path)
    return None


def gradcheck(config: dict | None, model_spec: list | None, dataset: dict | None,
              path: Path | None = None) -> dict:
    """Numerical vs analytic gradients in float64 on a few test images.

    ``status`` is engine.gradcheck.verdict's: agrees / inconclusive (``at_kinks`` entries
    sit on a ReLU or max-pool kink and were not compared) / disagrees. ``ok`` is False only
    for disagrees.
    """
    if config is not None and is_bsde(config):      # float64 already; its own global network
        if path is not None and not path.is_file():
            raise ApiError(409, ["body", "run_id"], "this run has no saved weights yet")
        with _gradcheck_lock:
            rows = gradcheck_run(config, path)
        v = verdict(rows, GRADCHECK_THRESHOLD)
        return {"rows": rows, **v, "ok": v["status"] != "disagrees", "threshold": GRADCHECK_THRESHOLD}
    if config is not None:
        cfg = copy.deepcopy(config)
        cfg["train"]["dtype"] = "float64"
        cfg["train"]["batch_size"] = GRADCHECK_SAMPLES
        cfg.pop("name", None)
    else:
        cfg = {"model": model_spec, "train": {"dtype": "float64", "batch_size": GRADCHECK_SAMPLES},
               "dataset": dataset or {}}
    try:
        cfg, summary = validate_config(cfg)
    except SpecError as e:
        raise ApiError(422, errors=[{"loc": ["body", *err["loc"]], "msg": err["msg"]}
                                    for err in e.errors]) from None
    if summary["params"] > GRADCHECK_MAX_PARAMS or summary["memory_bytes"] > GRADCHECK_MAX_MEMORY:
        raise ApiError(422, ["body", "model"], f"a model of {summary['params']:,} parameters is "
                       f"too large for a gradient check here (limit {GRADCHECK_MAX_PARAMS:,})")
    with _gradcheck_lock:
        model = Model.from_config(cfg)
        if path is not None:
            if not path.is_file():
                raise ApiError(409, ["body", "run_id"], "this run has no saved weights yet")
            _, arrays = Model.read_checkpoint(path)
            model.load_state_arrays(arrays)
        d = cfg["dataset"]
        data = load_dataset(d["name"], test_limit=GRADCHECK_SAMPLES, train_limit=1)
        x = data.batch(data.x_test, slice(0, GRADCHECK_SAMPLES), np.float64)
        y = data.y_test[:GRADCHECK_SAMPLES]
        rows = check_model(model, x, y, max_entries=GRADCHECK_ENTRIES)
    v = verdict(rows, GRADCHECK_THRESHOLD)     # a non-finite error disagrees
    rows = [{**r, "rel_error": r["rel_error"] if r["rel_error"] is not None
             and np.isfinite(r["rel_error"]) else None} for r in rows]
    if v["max_rel_error"] is not None and not np.isfinite(v["max_rel_error"]):
        v["max_rel_error"] = None
    return {"rows": rows, "max_rel_error": v["max_rel_error"], "ok": v["status"] != "disagrees",
            "status": v["status"], "at_kinks": v["at_kinks"], "checked": v["checked"],
            "threshold": GRADCHECK_THRESHOLD}


@lru_cache(maxsize=4)
def _test_set(name: str, datasets_env: str | None):
    """A dataset's test images and labels (cached: probes are asked for again and again)."""
    data = load_dataset(name, train_limit=1)
    return data.x_test, data.y_test


def inspect(cache: ModelCache, config: dict, path: Path, image: int | None,
            pixels: list[float] | None, what: list[str], cls: int | None = None) -> dict:
    """Every layer's output, weights and/or the saliency for one image, with the run's
    latest weights (engine.inspect does the math).

    ``image``: a test-set index (a probe); ``pixels``: H*W greyscale values in 0..1, row by
    row, copied to every channel (a drawing has no colour). Arrays are EncodedArrays.
    """
    info = run_dataset(config)
    label = None
    if image is not None:
        x_test, y_test = _test_set(config["dataset"]["name"], os.environ.get(DATASETS_ENV))
        n = len(x_test)
        limit = config["dataset"].get("test_limit")
        n = min(n, limit) if limit else n
        if image >= n:
            raise ApiError(422, ["body", "image"], f"image must be a test-set index in "
                                                   f"0..{n - 1}, got {image}")
        x = x_test[image].astype(np.float64) * (1 / 255)     # as Dataset.batch scales
        label = int(y_test[image])
    else:
        if len(info.input_shape) != 3:
            raise ApiError(422, ["body", "pixels"], f"the run's dataset {info.name} is not "
                                                    "images; give a test image by index")
        h, w, c = info.input_shape
        if len(pixels) != h * w:
            raise ApiError(422, ["body", "pixels"], f"pixels must be {h * w} values ({h} x {w}, "
                                                    f"the run's dataset {info.name}), got "
                                                    f"{len(pixels)}")
        x = np.asarray(pixels, dtype=np.float64)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ApiError(422, ["body", "pixels"], "pixels must be finite numbers in 0..1")
        x = np.repeat(x.reshape(h, w, 1), c, axis=2)
    if cls is not None and cls >= info.num_classes:
        raise ApiError(422, ["body", "cls"], f"cls must be a class in 0..{info.num_classes - 1}")
    model, meta = cache.get(config, path)
    xm = x.astype(model.dtype)
    outs = layer_outputs(model, xm)
    scores = outs[-1]["array"][:1]
    probs = model.loss_fn.probabilities(scores)[0]
    out = {"step": meta.get("step"), "image": encode_array(x), "label": label,
           "probabilities": [float(p) for p in probs], "predicted": int(np.argmax(probs))}
    if "outputs" in what:
        out["layers"] = [{"index": o["index"], "name": o["name"], "type": o["type"],
                          "shape": o["shape"], "output": encode_array(o["array"][0])}
                         for o in outs]
    if "weights" in what:
        out["weights"] = [{k: v for k, v in wt.items() if k != "bias"}
                          | {"kernels": encode_array(wt["kernels"])}
                          for wt in layer_weights(model)]
    if "saliency" in what:
        sal = saliency(model, xm, cls)
        g = sal["gradient"]
        out["saliency"] = {"cls": sal["cls"], "score": sal["score"], "gradient": encode_array(g),
                           "abs_max": float(np.abs(g).max()) if g.size else 0.0}
    return out
