"""A sequential model built from a plain-JSON layer list."""
from __future__ import annotations

import copy
import json
import os
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import runtime
from .fields import DEFAULT_INIT_TYPE
from .layers import LAYER_TYPES, Layer, MaxPool2D, Param
from .losses import LOSSES
from .spec import validate_model

#: a conv net's batch is computed in shards once each has at least this many images
MIN_SHARD = 16
#: images per shard aimed at (an even number of shards, so two threads share them equally)
SHARD_TARGET = 32


def _run_shards(jobs: list, n: int, err: dict) -> list:
    """``[(model, x, y), ...]`` one after the other: ``[(loss, output), ...]``."""
    return [model._shard_step(xs, ys, n, err) for model, xs, ys in jobs]


class _PoolFirst:
    """ReLU (or LeakyReLU) then MaxPool2D, computed as MaxPool2D then the activation.

    The two commute: both are monotone, so the max of the activations is the activation
    of the max, and the first maximum of a window is the same before and after. Gradients
    are identical too (a window whose maximum is <= 0 gets a zero gradient either way).
    Pooling first runs the activation on a quarter of the values, written over the pool's
    fresh output. The layers keep their own state; only the order of the calls changes.
    """

    def __init__(self, act: Layer, pool: Layer):
        self.act, self.pool = act, pool

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        return self.act.forward(self.pool.forward(x, train), train, overwrite=True)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return self.pool.backward(self.act.backward(grad))


class _Overwrite:
    """An activation run on the fresh output of the layer before it (Conv2D, Dense,
    pooling: ``fresh_output``), which nothing else keeps: it writes over that array
    instead of filling a new one of the same size."""

    def __init__(self, act: Layer):
        self.act = act

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        return self.act.forward(x, train, overwrite=True)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return self.act.backward(grad)


def _plan(layers: list[Layer]) -> list:
    """The steps that compute ``layers``: each layer, except activation -> max-pool pairs
    swapped (``_PoolFirst``) and activations after a fresh output writing over it
    (``_Overwrite``). The layers are not changed: called directly (``Model.feature_maps``)
    they never write over their input."""
    plan, i = [], 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if getattr(layer, "commutes_with_max_pool", False) and type(nxt) is MaxPool2D:
            plan.append(_PoolFirst(layer, nxt))
            i += 2
            continue
        if layer.is_activation and i > 0 and layers[i - 1].fresh_output:
            plan.append(_Overwrite(layer))
        else:
            plan.append(layer)
        i += 1
    return plan


class Model:
    """A stack of layers ending in ``num_classes`` outputs, with its loss.

    ``x`` is ``(N, H, W, C)`` (or ``(N, D)`` for flat datasets) in the model's
    dtype; the output is ``(N, num_classes)`` (logits for cross-entropy).
    """

    def __init__(self, spec: list[dict], input_shape: tuple = (28, 28, 1), num_classes: int = 10,
                 loss: str = "cross_entropy", dtype: str = "float32", seed: int = 0,
                 init: dict | None = None, normalize: tuple[float, float] | None = None,
                 threads: int = 1):
        norm, self.summary = validate_model(spec, tuple(input_shape), num_classes)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.dtype = np.dtype(dtype)
        self.seed = seed
        self.default_init = init or {"type": DEFAULT_INIT_TYPE}
        self.loss_name = loss
        self.loss_fn = LOSSES[loss]()
        # Inputs are pixels in [0, 1]; with (mean, std) they are standardised on the way in,
        # so predictions and feature maps of raw pixels always match training. Kept per
        # channel ((m1, ..), (s1, ..)); checkpoints from before the registry hold two scalars.
        self.normalize = (tuple(tuple(float(v) for v in np.ravel(a)) for a in normalize)
                          if normalize else None)
        rng = np.random.default_rng(seed)
        self.layers: list[Layer] = []
        shape = self.input_shape
        for i, cfg in enumerate(norm):
            layer = LAYER_TYPES[cfg["type"]].from_config(cfg)
            layer.index = i
            layer.build(shape, rng, self.dtype, self.default_init)  # draws from rng in order
            layer.set_stream([seed, i])
            shape = tuple(self.summary["layers"][i]["output_shape"])
            self.layers.append(layer)
        # Nothing below the first layer with parameters needs a gradient: that layer skips
        # computing its input gradient and backward stops there (in an MLP the first Dense
        # sits after Flatten; its dx would be ~20% of a step).
        first = next((layer for layer in self.layers if layer.params), self.layers[0])
        first.needs_input_grad = False
        self._plan_for: tuple = ()
        # Conv nets split big batches into shards (see shard_bounds); BatchNorm's batch
        # statistics would change with the split, so a net with BatchNorm never shards.
        self.shardable = (any(layer.gains_from_shards for layer in self.layers)
                          and not any(layer.breaks_sharding for layer in self.layers))
        self.threads = int(threads)
        self._replicas: list[Model] = []
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, config: dict, threads: int = 1) -> "Model":
        """Build from a validated run config (``{"model", "train", "dataset"}``); the input
        shape, class count and mean/std (per channel) are the dataset record's."""
        from .datasets import dataset_info
        tr, ds = config["train"], config["dataset"]
        info = dataset_info(ds["name"])
        norm = (info.mean, info.std) if ds.get("normalize") == "standard" else None
        return cls(config["model"], info.input_shape, info.num_classes, loss=tr["loss"],
                   dtype=tr["dtype"], seed=tr["seed"], init=tr["init"], normalize=norm,
                   threads=threads)

    def get_config(self) -> list[dict]:
        return [layer.get_config() for layer in self.layers]

    @property
    def params(self) -> list[Param]:
        return [p for layer in self.layers for p in layer.params]

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        if self.normalize is None:
            return x
        # mean/std: one value per channel (broadcast over NHWC's last axis), or scalars in
        # checkpoints saved before the dataset registry
        mean, std = self.normalize
        mean = np.asarray(mean, dtype=x.dtype)
        scale = (1.0 / np.asarray(std, dtype=np.float64)).astype(x.dtype)
        return (x - mean) * scale  # a new array: x is untouched

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        x = self._standardise(x)
        for step in self.plan:
            x = step.forward(x, train)
        return x

    def backward(self, grad: np.ndarray) -> None:
        for step in reversed(self.plan):
            grad = step.backward(grad)
            if grad is None:
                break

    @property
    def plan(self) -> list:
        """The steps that compute the layers (``_plan``), rebuilt if ``layers`` was replaced.

        Reading it changes no layer: whether an activation writes over its input is a
        property of its step (``_Overwrite``, ``_PoolFirst``), not of the layer."""
        key = tuple(map(id, self.layers))
        if key != self._plan_for:
            self._plan, self._plan_for = _plan(self.layers), key
        return self._plan

    def shard_bounds(self, n: int) -> list[tuple[int, int]]:
        """How a training batch of ``n`` is split: ``[(start, stop), ...]``.

        A conv net's batch of ``2 * MIN_SHARD`` or more is computed as an even number of
        shards of about ``SHARD_TARGET`` images (two for a batch of 64, four for 128), whose
        gradients are summed in shard order (each shard's loss gradient is scaled by its
        share of the batch, so the sum is the full batch's mean gradient). With
        ``threads >= 2`` the threads take equal runs of shards at the same time. The split
        depends on the batch only, never on the thread count, so a seed gives the same
        numbers on any machine. Smaller shards also keep each one's arrays in cache.
        Dense-only nets do not split: their steps are too short to gain from threads.
        """
        if not self.shardable or n < 2 * MIN_SHARD:
            return [(0, n)]
        k = 2 * max(1, round(n / (2 * SHARD_TARGET)))
        k = min(k, 2 * (n // (2 * MIN_SHARD)))
        edges = [round(i * n / k) for i in range(k + 1)]
        return list(zip(edges[:-1], edges[1:]))

    def _replica(self, k: int) -> "Model":
        """The model that computes shard ``k``: shard 0 is this model; the others share its
        parameter values but have their own gradients, work buffers and dropout streams."""
        if k == 0:
            return self
        while len(self._replicas) < k:
            rep = copy.copy(self)
            rep._replicas, rep._pool = [], None
            rep.layers = []
            for layer in self.layers:
                twin = copy.copy(layer)
                twin.__dict__.pop("_scratch", None)
                twin.params = [Param(p.value, p.name, p.decay) for p in layer.params]
                for p, q in zip(layer.params, twin.params):
                    q.value = p.value                           # shared, updated in place
                twin.set_stream([self.seed, layer.index, len(self._replicas) + 1])
                rep.layers.append(twin)
            rep._plan_for = ()
            self._replicas.append(rep)
        return self._replicas[k - 1]

    def rng_states(self) -> dict:
        """Every random stream's state (dropout masks of this model and of each shard
        replica), as JSON-safe ``{"<replica>.<layer index>": bit generator state}``."""
        out = {}
        for k, model in enumerate([self] + self._replicas):
            for layer in model.layers:
                if getattr(layer, "rng", None) is not None:
                    out[f"{k}.{layer.index}"] = layer.rng.bit_generator.state
        return out

    def set_rng_states(self, states: dict) -> None:
        """Restore what ``rng_states`` returned (replicas are created as needed)."""
        for key, state in states.items():
            k, index = (int(v) for v in key.split("."))
            model = self._replica(k)
            layer = model.layers[index]
            layer.rng.bit_generator.state = state

    def _shard_step(self, x: np.ndarray, y: np.ndarray, n: int, err: dict):
        """Forward, loss and backward of one shard, with the loss gradient scaled by its
        share ``len(x) / n`` of the batch. Returns ``(loss, output)``."""
        with np.errstate(**err):                 # errstate is per thread: carry the caller's
            out = self.forward(x, train=True)
            loss, dout = self.loss_fn(out, y)
            if len(x) != n:
                dout *= dout.dtype.type(len(x) / n)
            self.backward(dout)
        return loss, out

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Forward in training mode, loss, backward. Returns ``(loss, output)``.

        Gradients accumulate into ``Param.grad``; call ``zero_grad`` first. Big batches of
        conv nets are computed in shards of ~32 images (``shard_bounds``), in parallel when
        ``threads >= 2``.
        """
        n = len(x)
        bounds = self.shard_bounds(n)
        err = np.geterr()
        if len(bounds) == 1:
            return self._shard_step(x, y, n, err)
        reps = [self._replica(k) for k in range(len(bounds))]
        for rep in reps[1:]:
            rep.zero_grad()
        jobs = [(rep, x[a:b], y[a:b]) for rep, (a, b) in zip(reps, bounds)]
        threads = min(self.threads, len(jobs))
        if threads >= 2:
            # equal runs of shards per thread; this thread takes the first run
            cut = [round(t * len(jobs) / threads) for t in range(threads + 1)]
            runs = [jobs[cut[t]:cut[t + 1]] for t in range(threads)]
            pool = self._thread_pool(threads - 1)
            with runtime.single_threaded_blas():
                futures = [pool.submit(_run_shards, run, n, err) for run in runs[1:]]
                results = _run_shards(runs[0], n, err)
                for f in futures:
                    results += f.result()
        else:
            results = _run_shards(jobs, n, err)
        for rep in reps[1:]:
            for p, q in zip(self.params, rep.params):
                p.grad += q.grad
        loss = sum(loss * (b - a) / n for (loss, _), (a, b) in zip(results, bounds))
        return float(loss), np.concatenate([out for _, out in results])

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, num_classes)``; evaluates in batches (faster than all at once)."""
        out = [self.loss_fn.probabilities(self.forward(x[i:i + batch_size].astype(self.dtype, copy=False)))
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), self.dtype)

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 256,
                 scale: float = 1.0) -> dict:
        """Mean loss, accuracy and predictions over ``x``.

        ``x`` may be raw uint8 images: each batch is cast and multiplied by ``scale``. With
        ``threads >= 2`` the threads take alternate batches; the batch losses are summed
        in batch order, so the result does not depend on the thread count.
        """
        starts = list(range(0, len(x), batch_size))
        preds = np.empty(len(x), dtype=np.int64)
        err = np.geterr()

        def one(i: int) -> float:
            with np.errstate(**err):
                xb = x[i:i + batch_size].astype(self.dtype)
                if scale != 1.0:
                    xb *= self.dtype.type(scale)
                out = self.forward(xb, train=False)
                loss, _ = self.loss_fn(out, y[i:i + batch_size])
                preds[i:i + batch_size] = out.argmax(axis=1)
                return loss * len(xb)

        threads = min(self.threads, len(starts))
        if threads >= 2:
            pool = self._thread_pool(threads - 1)
            with runtime.single_threaded_blas():
                futures = {i: pool.submit(one, i) for k, i in enumerate(starts) if k % threads}
                losses = {i: one(i) for k, i in enumerate(starts) if k % threads == 0}
                losses.update({i: f.result() for i, f in futures.items()})
            total = sum(losses[i] for i in starts)
        else:
            total = sum(one(i) for i in starts)
        n = max(len(x), 1)
        return {"loss": total / n, "accuracy": float(np.mean(preds == y)) if len(x) else 0.0,
                "predictions": preds}

    def _thread_pool(self, workers: int) -> ThreadPoolExecutor:
        """This model's pool of helper threads (at least ``workers`` of them)."""
        if self._pool is None or self._pool._max_workers < workers:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="shard")
            weakref.finalize(self, self._pool.shutdown, wait=False)
        return self._pool

    # ------------------------------------------------------------ inspection

    def first_weighted(self) -> tuple[int, Layer] | None:
        for i, layer in enumerate(self.layers):
            if layer.has_kernel:
                return i, layer
        return None

    def feature_maps(self, x: np.ndarray) -> np.ndarray | None:
        """The first weighted layer's output (after its activation, if one follows).

        ``(P, OH, OW, filters)`` for a conv layer, ``(P, units)`` for a dense one.
        """
        found = self.first_weighted()
        if found is None:
            return None
        end = found[0] + 1
        if end < len(self.layers) and self.layers[end].is_activation:
            end += 1
        h = self._standardise(x.astype(self.dtype, copy=False))
        for layer in self.layers[:end]:     # the layers alone: none writes over its input
            h = layer.forward(h, train=False)
        return h

    def all_finite(self) -> bool:
        """True while every parameter is finite (a checkpoint worth keeping)."""
        return all(bool(np.isfinite(p.value).all()) for p in self.params)

    def norms(self) -> list[dict]:
        """L2 norm of each parameter tensor and of its current gradient."""
        return [{"name": p.name, "weight_norm": float(np.sqrt(np.vdot(p.value, p.value))),
                 "grad_norm": float(np.sqrt(np.vdot(p.grad, p.grad)))} for p in self.params]

    # ------------------------------------------------------------ checkpoints

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{name: array}``: parameters and the layers' buffers (BatchNorm's running
        statistics)."""
        out = {f"param.{i}": p.value for i, p in enumerate(self.params)}
        for layer in self.layers:
            for key, arr in layer.buffers().items():
                out[f"buffer.{layer.index}.{key}"] = arr
        return out

    def _named(self) -> list[tuple[str, str, np.ndarray]]:
        """``(page name, state_arrays key, array)`` of every parameter, then every buffer, in
        ``state_arrays`` order. Page names count layers from 1: ``layer2.dense.kernel``."""
        params = [(f"layer{layer.index + 1}.{p.name.split('.', 1)[1]}", p.value)
                  for layer in self.layers for p in layer.params]      # self.params' order
        out = [(name, f"param.{i}", v) for i, (name, v) in enumerate(params)]
        for layer in self.layers:
            for key, arr in layer.buffers().items():
                out.append((f"layer{layer.index + 1}.{layer.type}.{key}",
                            f"buffer.{layer.index}.{key}", arr))
        return out

    def named_state(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by the names the page shows (``layer2.dense.kernel``,
        ``layer3.batchnorm.running_mean``): what GET /api/runs/{id}/weights exports."""
        return {name: arr for name, _, arr in self._named()}

    def from_named(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``arrays`` keyed as ``named_state`` names them, re-keyed for ``load_state_arrays``;
        ValueError naming (in the file's names) an array that is unknown, missing (a
        parameter; buffers may be left out) or of the wrong shape."""
        known = {name: (key, arr) for name, key, arr in self._named()}
        for k in arrays:
            if k not in known:
                raise ValueError(f"the file has an array '{k}' this model does not have (its "
                                 f"arrays: {', '.join(known)})")
        for name, (key, arr) in known.items():
            if name not in arrays:
                if key.startswith("param."):
                    needed = [n for n, (k, _) in known.items() if k.startswith("param.")]
                    raise ValueError(f"the file has no array '{name}' (this model needs "
                                     f"{', '.join(needed)})")
            elif tuple(arrays[name].shape) != arr.shape:
                raise ValueError(f"array '{name}' has shape {tuple(arrays[name].shape)}, this "
                                 f"model needs {arr.shape}")
        return {known[k][0]: v for k, v in arrays.items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy arrays in place; shapes must match this model exactly."""
        params = self.params
        expected = {f"param.{i}": p.value.shape for i, p in enumerate(params)}
        for name, shape in expected.items():
            if name not in arrays:
                raise ValueError(f"checkpoint has no array {name!r} (this model has {len(params)} "
                                 f"parameter tensors)")
            if tuple(arrays[name].shape) != tuple(shape):
                raise ValueError(f"checkpoint array {name!r} has shape {tuple(arrays[name].shape)}, "
                                 f"this model needs {tuple(shape)}")
        for i, p in enumerate(params):
            p.value[...] = arrays[f"param.{i}"]
        for layer in self.layers:
            for key, arr in layer.buffers().items():
                name = f"buffer.{layer.index}.{key}"
                if name in arrays:
                    arr[...] = arrays[name]

    def save(self, path: str | os.PathLike, extra: dict[str, np.ndarray] | None = None,
             meta: dict | None = None) -> None:
        """Save as ``.npz`` with flat keys and the layer spec as JSON text (no pickle)."""
        arrays = dict(self.state_arrays())
        arrays.update(extra or {})
        arrays["__spec__"] = np.array(json.dumps({"model": self.get_config(),
                                                  "input_shape": list(self.input_shape),
                                                  "num_classes": self.num_classes,
                                                  "loss": self.loss_name,
                                                  "normalize": self.normalize,
                                                  "meta": meta or {}}))
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @staticmethod
    def read_checkpoint(path_or_file) -> tuple[dict, dict[str, np.ndarray]]:
        """Read an ``.npz`` checkpoint safely: ``(spec dict, arrays)``.

        ``allow_pickle=False``: an object array in the file raises instead of running code.
        """
        with np.load(path_or_file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        spec = json.loads(str(arrays.pop("__spec__"))) if "__spec__" in arrays else {}
        return spec, arrays

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: str = "float32") -> "Model":
        spec, arrays = cls.read_checkpoint(path)
        model = cls(spec["model"], tuple(spec["input_shape"]), spec["num_classes"],
                    loss=spec.get("loss", "cross_entropy"), dtype=dtype,
                    normalize=spec.get("normalize"))
        model.load_state_arrays(arrays)
        return model

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Model(input_shape={self.input_shape}, layers=[\n  {inner}\n])"
