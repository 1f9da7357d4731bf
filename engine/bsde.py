"""Deep BSDE (Han, Jentzen and E, PNAS 2018): a network stacked from per-time-step subnets that
solves a high-dimensional semilinear parabolic PDE, trained with the engine's own layers.

The forward process X does not depend on the network: ``Equation.sample`` draws ``dW`` of shape
``(B, d, N)`` and ``X`` of shape ``(B, d, N + 1)``. The global network holds ``u0`` (a scalar)
and ``z0`` (``(d,)``) as parameters, and N - 1 subnets (ordinary engine ``Model``s, float64)
map ``X_i`` to ``z_i = subnet_i(X_i) / d`` for i = 1 .. N - 1. The recursion, as in the
reference code::

    y_{i+1} = y_i - f(t_i, X_i, y_i, z_i) dt + z_i . dW_i,      y_0 = u0, z_0 = z0

and the loss is the mean of ``phi(y_N - g(X_N))`` with ``phi(e) = e^2`` for |e| < 50 and
``2 * 50 |e| - 50^2`` beyond. Its backward pass is written out by hand below; every subnet's
part goes through its own ``Model.backward``.

    solver = BsdeSolver(config)          # validated: errors with loc, like image configs
    summary = solver.run(emit=print)     # progress, eval, snapshot, run_finished events
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import numpy as np

from .layer_base import Param
from .model import Model
from .optim import Adam
from .spec import SpecError

DELTA_CLIP = 50.0
MAX_DIM = 10_000
MAX_STEPS = 200
MAX_ITERATIONS = 100_000
MEMORY_LIMIT = 2 << 30         # bytes a config may need for its paths and activations


# ---------------------------------------------------------------------------------- equations


class Equation:
    """A PDE: the forward process, ``f``, ``g`` and their derivatives, and the exact
    ``u(0, x0)`` where one is known. Subclasses set ``name`` and the methods below."""

    name = "equation"
    reference: float | None = None
    sigma = 1.0            # X_{i+1} = X_i + sigma dW_i (the default forward process)
    defaults: dict = {}

    def __init__(self, dim: int, total_time: float, num_time_interval: int, **params):
        self.dim, self.total_time, self.n = int(dim), float(total_time), int(num_time_interval)
        self.dt = self.total_time / self.n
        self.params = {**self.defaults, **params}
        self.x0 = np.zeros(self.dim)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(dW (B, d, N), X (B, d, N + 1))``."""
        dw = rng.standard_normal((batch, self.dim, self.n)) * math.sqrt(self.dt)
        x = np.empty((batch, self.dim, self.n + 1))
        x[:, :, 0] = self.x0
        x[:, :, 1:] = self.x0[None, :, None] + self.sigma * np.cumsum(dw, axis=2)
        return dw, x

    def f(self, t, x, y, z):
        """``(f, df/dy, df/dz)`` with shapes ``(B,), (B,), (B, d)``; ``x, z`` are ``(B, d)``."""
        raise NotImplementedError

    def g(self, t, x):
        raise NotImplementedError

    def exact(self, t: float, x: np.ndarray) -> np.ndarray | None:
        """The exact ``u(t, x)`` for ``x`` of shape ``(B, d)``, where known."""
        return None


class HJBLQ(Equation):
    """Hamilton-Jacobi-Bellman, linear-quadratic control: f = -lambda |z|^2 / 2 (z is sigma^T
    grad u with sigma = sqrt 2), g = ln((1 + |x|^2) / 2)."""
    name = "hjb_lq"
    sigma = math.sqrt(2.0)
    defaults = {"lambda": 1.0}

    def __init__(self, dim, total_time, num_time_interval, **params):
        super().__init__(dim, total_time, num_time_interval, **params)
        if self.dim == 100 and self.total_time == 1.0 and self.n == 20 and self.params["lambda"] == 1.0:
            self.reference = 4.590162
        elif self.dim == 10 and self.total_time == 1.0 and self.n == 20 and self.params["lambda"] == 1.0:
            self.reference = 2.157022

    def f(self, t, x, y, z):
        lam = self.params["lambda"]
        return -lam * 0.5 * np.sum(z * z, axis=1), np.zeros(len(y)), -lam * z

    def g(self, t, x):
        return np.log((1 + np.sum(x * x, axis=1)) / 2)


class AllenCahn(Equation):
    """f = y - y^3, g = 0.5 / (1 + 0.2 |x|^2), X = x + sqrt 2 W."""
    name = "allen_cahn"
    sigma = math.sqrt(2.0)

    def __init__(self, dim, total_time, num_time_interval, **params):
        super().__init__(dim, total_time, num_time_interval, **params)
        if self.dim == 100 and abs(self.total_time - 0.3) < 1e-12 and self.n == 20:
            self.reference = 0.052802

    def f(self, t, x, y, z):
        return y - y ** 3, 1 - 3 * y ** 2, np.zeros_like(z)

    def g(self, t, x):
        return 0.5 / (1 + 0.2 * np.sum(x * x, axis=1))


class ReactionDiffusion(Equation):
    """A closed form everywhere: u(t, x) = 1.6 + sin(lambda sum x) exp(lambda^2 d (t - T) / 2),
    lambda = 1 / sqrt(d); f = min(1, (y - u(t, x))^2)."""
    name = "reaction_diffusion"
    reference = 1.6

    def exact(self, t, x):
        lam = 1 / math.sqrt(self.dim)
        return 1.6 + np.sin(lam * np.sum(x, axis=1)) * math.exp(lam ** 2 * self.dim * (t - self.total_time) / 2)

    def f(self, t, x, y, z):
        e = y - self.exact(t, x)
        sq = e * e
        inside = sq < 1
        return np.minimum(1.0, sq), np.where(inside, 2 * e, 0.0), np.zeros_like(z)

    def g(self, t, x):
        return self.exact(self.total_time, x)


EQUATIONS = {cls.name: cls for cls in (HJBLQ, AllenCahn, ReactionDiffusion)}


def reference_subnet(dim: int) -> list[dict]:
    """The reference code's subnet: BN -> (Dense(d + 10, no bias) -> BN -> ReLU) x 2 ->
    Dense(d) -> BN, BN momentum 0.99 and epsilon 1e-6."""
    bn = {"type": "batchnorm", "momentum": 0.99, "epsilon": 1e-6}
    hidden = [{"type": "dense", "units": dim + 10, "use_bias": False}, bn, {"type": "relu"}]
    return [bn, *hidden, *hidden, {"type": "dense", "units": dim}, bn]


def tanh_subnet(dim: int) -> list[dict]:
    """The seed's variant: Dense(d + 10) -> tanh, twice, then Dense(d); no batchnorm."""
    return [{"type": "dense", "units": dim + 10}, {"type": "tanh"},
            {"type": "dense", "units": dim + 10}, {"type": "tanh"}, {"type": "dense", "units": dim}]


# ---------------------------------------------------------------------------------- config

TRAIN_DEFAULTS = {"lr": 1e-2, "iterations": 2000, "batch_size": 64, "valid_size": 256,
                  "eval_every": 100, "seed": 0, "dtype": "float64",
                  "schedule": {"type": "constant"}}


def validate_bsde(raw: dict) -> dict:
    """The normalised config, or ``SpecError`` with every problem at its ``loc``."""
    errors: list[dict] = []

    def err(loc, msg):
        errors.append({"loc": list(loc), "msg": msg})
    if not isinstance(raw, dict):
        raise SpecError([{"loc": [], "msg": "a bsde config is a JSON object"}])
    for key in ("model", "dataset"):
        if key in raw:
            err([key], f"{key}: an image-task field; a bsde config has 'equation' and 'subnet'")
    eq = raw.get("equation")
    if not isinstance(eq, dict):
        err(["equation"], "equation: required, an object with name, dim, total_time and "
                          "num_time_interval")
        eq = {}
    name = eq.get("name")
    if name not in EQUATIONS:
        err(["equation", "name"], f"equation.name: unknown equation {str(name)[:40]!r} (one of "
                                   f"{', '.join(EQUATIONS)})")
    out_eq = {"name": name}
    for key, lo, hi, kind in (("dim", 1, MAX_DIM, int), ("num_time_interval", 1, MAX_STEPS, int)):
        v = eq.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            err(["equation", key], f"equation.{key}: an integer from {lo} to {hi:,}, got {v!r}")
        out_eq[key] = v
    t = eq.get("total_time")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not (t > 0 and math.isfinite(t)):
        err(["equation", "total_time"], f"equation.total_time: a number above 0, got {t!r}")
    out_eq["total_time"] = t
    extra = {k: v for k, v in eq.items() if k not in ("name", "dim", "num_time_interval", "total_time")}
    known = EQUATIONS[name].defaults if name in EQUATIONS else {}
    for k, v in extra.items():
        if k not in known:
            err(["equation", k], f"equation.{k}: not a parameter of {name} "
                                 f"({', '.join(known) or 'it has none'})")
        elif not isinstance(v, (int, float)) or isinstance(v, bool):
            err(["equation", k], f"equation.{k}: a number, got {v!r}")
    out_eq.update(extra)
    yr = raw.get("y_init_range", [0.0, 1.0])
    if (not isinstance(yr, list) or len(yr) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in yr)):
        err(["y_init_range"], "y_init_range: [low, high], two numbers")
    elif yr[0] > yr[1]:
        err(["y_init_range"], f"y_init_range: low {yr[0]} is above high {yr[1]}")
    tr = {**copy.deepcopy(TRAIN_DEFAULTS), **(raw.get("train") or {})}
    for key in tr:
        if key not in TRAIN_DEFAULTS:
            err(["train", key], f"train.{key}: not a bsde training field "
                                f"({', '.join(TRAIN_DEFAULTS)})")
    for key, lo, hi in (("iterations", 1, MAX_ITERATIONS), ("batch_size", 2, 100_000),
                        ("valid_size", 2, 100_000), ("eval_every", 1, MAX_ITERATIONS)):
        v = tr.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            err(["train", key], f"train.{key}: an integer from {lo} to {hi:,}, got {v!r}")
    if not isinstance(tr.get("lr"), (int, float)) or not tr["lr"] > 0:
        err(["train", "lr"], f"train.lr: a number above 0, got {tr.get('lr')!r}")
    if tr.get("dtype") != "float64":
        err(["train", "dtype"], "train.dtype: float64 (the recursion's small increments need it)")
    dim = out_eq.get("dim") if isinstance(out_eq.get("dim"), int) else None
    subnet = raw.get("subnet", "reference")
    if subnet in ("reference", "tanh") and dim:
        subnet = reference_subnet(dim) if subnet == "reference" else tanh_subnet(dim)
    if not errors and dim:
        n, b = out_eq["num_time_interval"], max(tr["batch_size"], tr["valid_size"])
        need = 8 * b * dim * (n + 1) * 12      # paths, and each subnet's activations, roughly
        if need > MEMORY_LIMIT:
            err(["equation", "dim"], f"equation.dim: this config needs about {need / 2**30:.1f} "
                                     f"GiB (paths x dim x steps); the limit is "
                                     f"{MEMORY_LIMIT / 2**30:.0f} GiB")
        if not isinstance(subnet, list) or not subnet:
            err(["subnet"], "subnet: a list of layers, 'reference' or 'tanh'")
        else:
            try:
                m = Model(subnet, input_shape=(dim,), num_classes=dim, dtype="float64")
                if tuple(m.summary["output_shape"]) != (dim,):
                    raise SpecError([{"loc": [len(subnet) - 1], "msg": "output"}])
            except SpecError as e:
                last = e.errors[0]
                if "output" in last["msg"] or "units" in last["msg"] or "classes" in last["msg"]:
                    err(["subnet"], f"subnet: it must end in {dim} units (the equation's dim), "
                                    f"as z has one value per dimension: {last['msg']}")
                else:
                    for x in e.errors:
                        err(["subnet", *x["loc"]], x["msg"])
    if errors:
        raise SpecError(errors)
    return {"task": "bsde", "name": raw.get("name"), "equation": out_eq, "subnet": subnet,
            "y_init_range": [float(yr[0]), float(yr[1])], "train": tr}


# ---------------------------------------------------------------------------------- the network


def phi(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The loss per path and its derivative: quadratic inside |delta| < 50, linear beyond."""
    a = np.abs(delta)
    inside = a < DELTA_CLIP
    return (np.where(inside, delta ** 2, 2 * DELTA_CLIP * a - DELTA_CLIP ** 2),
            np.where(inside, 2 * delta, 2 * DELTA_CLIP * np.sign(delta)))


class GlobalNetwork:
    """u0, z0 and N - 1 subnets; ``loss_and_grad`` runs the recursion and its backward pass."""

    def __init__(self, eq: Equation, subnet: list[dict], y_init_range, seed: int = 0):
        rng = np.random.default_rng([seed, 7])
        self.eq = eq
        d = eq.dim
        self.u0 = Param(np.array([rng.uniform(*y_init_range)]), "u0", decay=False)
        self.z0 = Param(rng.uniform(-0.1, 0.1, d), "z0", decay=False)
        self.subnets = [Model(subnet, input_shape=(d,), num_classes=d, dtype="float64",
                              seed=seed * 1000 + i + 1) for i in range(eq.n - 1)]

    @property
    def params(self) -> list[Param]:
        return [self.u0, self.z0] + [p for m in self.subnets for p in m.params]

    def zero_grad(self) -> None:
        self.u0.grad[...] = 0
        self.z0.grad[...] = 0
        for m in self.subnets:
            m.zero_grad()

    def forward(self, dw: np.ndarray, x: np.ndarray, train: bool):
        """``(loss, ys (N + 1, B), zs list of (B, d), fs cache)``."""
        eq = self.eq
        b, d = dw.shape[0], eq.dim
        y = np.full(b, self.u0.value[0])
        z = np.broadcast_to(self.z0.value, (b, d)).copy()
        ys, zs, fy, fz = [y], [], [], []
        for i in range(eq.n):
            t = i * eq.dt
            f, dfy, dfz = eq.f(t, x[:, :, i], y, z)
            zs.append(z)
            fy.append(dfy)
            fz.append(dfz)
            y = y - eq.dt * f + np.sum(z * dw[:, :, i], axis=1)
            ys.append(y)
            if i < eq.n - 1:
                z = self.subnets[i].forward(x[:, :, i + 1], train=train) / d
        delta = y - eq.g(eq.total_time, x[:, :, -1])
        per, dper = phi(delta)
        return float(np.mean(per)), ys, zs, (fy, fz, dper / b)

    def loss_and_grad(self, dw: np.ndarray, x: np.ndarray) -> float:
        """Forward in training mode, then the gradients of every parameter (accumulated)."""
        eq, d = self.eq, self.eq.dim
        loss, ys, zs, (fy, fz, dy) = self.forward(dw, x, train=True)
        for i in range(eq.n - 1, -1, -1):
            # y_{i+1} = y_i - dt f(t_i, x_i, y_i, z_i) + z_i . dW_i
            dz = dy[:, None] * (dw[:, :, i] - eq.dt * fz[i])
            dy = dy * (1 - eq.dt * fy[i])
            if i == 0:
                self.z0.grad += dz.sum(axis=0)
            else:
                self.subnets[i - 1].backward(dz / d)
        self.u0.grad += dy.sum(keepdims=True)
        return loss


# ---------------------------------------------------------------------------------- training


class BsdeSolver:
    """Trains a validated bsde config with Adam; reports through ``emit`` (plain dicts with a
    ``type``: progress every iteration, eval every ``eval_every``, snapshots, run_finished)."""

    def __init__(self, config: dict):
        self.config = validate_bsde(config)
        e = self.config["equation"]
        cls = EQUATIONS[e["name"]]
        self.eq = cls(e["dim"], e["total_time"], e["num_time_interval"],
                      **{k: v for k, v in e.items() if k not in ("name", "dim", "total_time", "num_time_interval")})
        tr = self.config["train"]
        self.net = GlobalNetwork(self.eq, self.config["subnet"], self.config["y_init_range"], tr["seed"])
        self.opt = Adam(self.net.params, lr=tr["lr"], eps=1e-8)
        self.rng = np.random.default_rng([tr["seed"], 1])
        self.valid = self.eq.sample(tr["valid_size"], np.random.default_rng([tr["seed"], 2]))
        self.step = 0

    def evaluate(self) -> dict:
        loss, ys, zs, _ = self.net.forward(*self.valid, train=False)
        u0 = float(self.net.u0.value[0])
        ref = self.eq.reference
        return {"type": "eval", "step": self.step, "valid_loss": loss, "u0": u0,
                "reference": ref, "relative_error": abs(u0 - ref) / abs(ref) if ref else None}

    def snapshot(self) -> dict:
        """Mean |z| per time step and a few validation paths of y = u(t, X_t)."""
        loss, ys, zs, _ = self.net.forward(*self.valid, train=False)
        k = min(4, len(ys[0]))
        x = self.valid[1]
        exact = None
        if self.eq.exact(0.0, x[:1, :, 0]) is not None:
            exact = [[float(v) for v in self.eq.exact(i * self.eq.dt, x[:k, :, i])] for i in range(self.eq.n + 1)]
        return {"type": "snapshot", "step": self.step,
                "z_mean_abs": [float(np.mean(np.abs(z))) for z in zs],
                "paths": [[float(y[j]) for y in ys] for j in range(k)],
                "exact_paths": None if exact is None else [[row[j] for row in exact] for j in range(k)]}

    def run(self, emit: Callable[[dict], None] = lambda e: None, stop=lambda: False) -> dict:
        tr = self.config["train"]
        emit({"type": "run_started", "task": "bsde", "config": self.config,
              "total_steps": tr["iterations"], "reference": self.eq.reference})
        t_train, wall0, last = 0.0, time.perf_counter(), None
        while self.step < tr["iterations"] and not stop():
            t0 = time.perf_counter()
            dw, x = self.eq.sample(tr["batch_size"], self.rng)
            self.net.zero_grad()
            loss = self.net.loss_and_grad(dw, x)
            self.opt.step()
            t_train += time.perf_counter() - t0
            self.step += 1
            emit({"type": "progress", "step": self.step, "loss": loss,
                  "u0": float(self.net.u0.value[0]), "lr": self.opt.lr})
            if self.step % tr["eval_every"] == 0 or self.step == tr["iterations"]:
                last = self.evaluate()
                emit(last)
        if last is None or last["step"] != self.step:
            last = self.evaluate()
            emit(last)
        emit(self.snapshot())
        done = {"type": "run_finished", "status": "completed" if self.step >= tr["iterations"] else "stopped",
                "step": self.step, "u0": last["u0"], "reference": last["reference"],
                "relative_error": last["relative_error"], "valid_loss": last["valid_loss"],
                "train_seconds": t_train, "wall_seconds": time.perf_counter() - wall0}
        emit(done)
        return done


# ---------------------------------------------------------------------------------- presets

BSDE_PRESETS = {
    "bsde-hjb-d10": {"title": "HJB, d = 10 (seconds): z must be learned",
                     "target": {"u0": 2.157022, "band": 0.02, "valid_loss_below": 0.06},
                     "config": {"task": "bsde", "name": "bsde-hjb-d10",
                                "equation": {"name": "hjb_lq", "dim": 10, "total_time": 1.0,
                                             "num_time_interval": 20},
                                "y_init_range": [0.0, 1.0],
                                "train": {"lr": 1e-2, "iterations": 2000, "batch_size": 64}}},
    "bsde-hjb": {"title": "HJB linear-quadratic, d = 100 (the paper's)",
                 "target": {"u0": 4.590162, "band": 0.005, "valid_loss_below": 0.0200},
                 "config": {"task": "bsde", "name": "bsde-hjb",
                            "equation": {"name": "hjb_lq", "dim": 100, "total_time": 1.0,
                                         "num_time_interval": 20},
                            "y_init_range": [0.0, 1.0],
                            "train": {"lr": 1e-2, "iterations": 2000, "batch_size": 64}}},
    "bsde-allen-cahn": {"title": "Allen-Cahn, d = 100 (the paper's)",
                        "target": {"u0": 0.052802, "band": 0.01, "valid_loss_below": 2.68e-5},
                        "config": {"task": "bsde", "name": "bsde-allen-cahn",
                                   "equation": {"name": "allen_cahn", "dim": 100, "total_time": 0.3,
                                                "num_time_interval": 20},
                                   "y_init_range": [0.3, 0.5],
                                   "train": {"lr": 5e-4, "iterations": 4000, "batch_size": 64}}},
}
