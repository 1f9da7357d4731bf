"""Deep BSDE training iterations: the engine's NumPy global network against a PyTorch CPU port
of the same network and recursion, in one run.

    python -m benchmarks.bench_bsde            # about 3 minutes on an idle machine
    python -m benchmarks.bench_bsde --quick    # a minute or two
    python -m benchmarks.bench_bsde --full     # also trains bsde-hjb and bsde-allen-cahn to
                                               # their targets, NumPy and PyTorch (many minutes)

1. The port is checked first: with the engine's weights (after a few Adam steps, so no
   parameter sits at its initial value) copied into it, one training-mode forward on the same
   paths gives the same loss (to 1e-10) and the same gradients of u0, z0 and every subnet
   parameter (u0 and z0 to 1e-8).
2. Time per training iteration (sample + forward + backward + Adam, batch 64) of each preset,
   NumPy (``BsdeSolver``'s net and Adam) and PyTorch (``TorchPort`` + ``torch.optim.Adam``, as
   it comes and with ``fused=True``),
   each in its own worker process, interleaved repetitions, median. Both draw their paths with
   the engine's ``Equation.sample`` (NumPy, as the reference TensorFlow code does). Where the
   engine stacks the N - 1 subnets into batched products (``GlobalNetwork(batched=True)``,
   its default), a fourth contender ``numpy-loop`` runs the same net with ``batched=False``
   (each subnet in turn, as the reference code does). Ratio x/numpy: above 1 means the
   engine as it comes is ahead. The projected full run (the preset's iterations
   x the median) stands next to the paper's runtimes (TensorFlow, laptop CPU).
3. Where a NumPy iteration goes: sampling, zero_grad, the subnets' forward, the recursion
   (f, g, the sums, the loss), the subnets' backward, the recursion's backward, Adam; timed
   with ``time.perf_counter`` around the engine's own calls (its subnets' ``forward`` and
   ``backward``, or the stacked layers' when batched, ``Equation.f``/``g`` and
   ``GlobalNetwork.forward`` are wrapped on the instance; nothing in engine/ changes); for
   both the batched and the loop net where the engine has both.
4. Time to target: ``bsde-hjb-d10`` trained until an eval (every 100 iterations, on the
   preset's fixed validation set) meets the preset's target, NumPy and PyTorch from the same
   initial weights and the same paths, in their workers, taking turns in chunks of 100
   iterations; seconds of training steps (evals excluded, as the engine's
   ``train_seconds``); a contender past ``--target-cap`` seconds stops. ``--full`` adds
   ``bsde-hjb`` and ``bsde-allen-cahn``.

Thread counts are fixed (``--threads``, default 2) before NumPy or PyTorch is imported, and
``torch.set_num_threads`` gets the same count. PyTorch is optional: without it the NumPy parts
run and the script says "torch not installed".
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections import defaultdict

PRESETS = ("bsde-hjb-d10", "bsde-allen-cahn", "bsde-hjb")
#: the paper's runtimes (Han, Jentzen and E, PNAS 2018; TensorFlow on a laptop CPU), seconds
PAPER_SECONDS = {"bsde-allen-cahn": 647, "bsde-hjb": 330}
DELTA_CLIP = 50.0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: fewer, shorter repetitions")
    ap.add_argument("--full", action="store_true",
                    help="also train bsde-hjb and bsde-allen-cahn to their targets")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    ap.add_argument("--reps", type=int, help="interleaved repetitions per contender "
                                              "(default 9, quick 3)")
    ap.add_argument("--seconds", type=float, help="target seconds per repetition "
                                                   "(default 1.0, quick 0.5)")
    ap.add_argument("--split-iterations", type=int, help="iterations of the NumPy split "
                                                          "(default 100, quick 30)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target-cap", type=float, help="stop a contender's time-to-target run "
                                                     "after this many training seconds "
                                                     "(default 120, --full 1800)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch port")
    ap.add_argument("--no-fused", action="store_true",
                    help="skip the PyTorch contender with Adam(fused=True)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's allocator as it starts (see benchmarks/README.md)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    args.reps = args.reps or (3 if args.quick else 9)
    args.seconds = args.seconds or (0.5 if args.quick else 1.0)
    args.split_iterations = args.split_iterations or (30 if args.quick else 100)
    args.target_cap = args.target_cap or (1800.0 if args.full else 120.0)
    return args


def set_threads(n: int) -> None:
    """Pin BLAS/OpenMP thread pools; must run before numpy or torch is imported."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def have_torch() -> bool:
    """True if ``import torch`` works (call after ``set_threads``)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def preset_config(name: str, **train) -> dict:
    """The preset's bsde config with ``train`` fields overridden (e.g. ``iterations``)."""
    from engine.bsde import BSDE_PRESETS
    cfg = copy.deepcopy(BSDE_PRESETS[name]["config"])
    cfg["train"] = {**cfg.get("train", {}), **train}
    return cfg


def make_solver(name: str, **train):
    from engine.bsde import BsdeSolver
    return BsdeSolver(preset_config(name, **train))


# ---------------------------------------------------------------- the PyTorch port


def torch_f(eq, t: float, x, y, z):
    """``f(t, x, y, z)`` of the engine's equation ``eq`` in torch: ``(B,)`` from ``x, z``
    ``(B, d)`` and ``y`` ``(B,)``."""
    import torch
    if eq.name == "hjb_lq":
        return -eq.params["lambda"] * 0.5 * (z * z).sum(1)
    if eq.name == "allen_cahn":
        return y - y ** 3
    if eq.name == "reaction_diffusion":
        e = y - torch_exact(eq, t, x)
        return torch.clamp(e * e, max=1.0)
    raise ValueError(f"no torch port of equation {eq.name!r}")


def torch_g(eq, x):
    """``g(x)`` ``(B,)`` from ``x`` ``(B, d)``."""
    import torch
    if eq.name == "hjb_lq":
        return torch.log((1 + (x * x).sum(1)) / 2)
    if eq.name == "allen_cahn":
        return 0.5 / (1 + 0.2 * (x * x).sum(1))
    if eq.name == "reaction_diffusion":
        return torch_exact(eq, eq.total_time, x)
    raise ValueError(f"no torch port of equation {eq.name!r}")


def torch_exact(eq, t: float, x):
    import torch
    lam = 1 / eq.dim ** 0.5
    return 1.6 + torch.sin(lam * x.sum(1)) * math.exp(lam ** 2 * eq.dim * (t - eq.total_time) / 2)


class TorchPort:
    """The reference code's global network in PyTorch, float64, CPU.

    ``u0`` ``(1,)`` and ``z0`` ``(d,)`` parameters and N - 1 subnets
    ``BN -> (Linear(d + 10, no bias) -> BN -> ReLU) x 2 -> Linear(d) -> BN`` (BN momentum 0.01
    in torch terms, i.e. 0.99 in Keras terms, eps 1e-6). ``loss(dw (B, d, N), x (B, d, N + 1))``
    runs ``y <- y - dt f + z . dW`` with ``z = subnet(x) / d`` and returns the mean of the loss
    with its linear tail past |delta| = 50 (a scalar tensor; autograd does the backward).
    """

    def __init__(self, eq, y_init_range=(0.0, 1.0), seed: int = 0):
        import torch
        from torch import nn
        f64 = torch.float64
        self.eq = eq
        d, h = eq.dim, eq.dim + 10
        torch.manual_seed(seed)

        def bn(c):
            return nn.BatchNorm1d(c, eps=1e-6, momentum=0.01, dtype=f64)

        def subnet():
            return nn.Sequential(bn(d), nn.Linear(d, h, bias=False, dtype=f64), bn(h), nn.ReLU(),
                                 nn.Linear(h, h, bias=False, dtype=f64), bn(h), nn.ReLU(),
                                 nn.Linear(h, d, dtype=f64), bn(d))
        self.u0 = nn.Parameter(torch.empty(1, dtype=f64).uniform_(*y_init_range))
        self.z0 = nn.Parameter(torch.empty(d, dtype=f64).uniform_(-0.1, 0.1))
        self.subnets = nn.ModuleList(subnet() for _ in range(eq.n - 1))

    def parameters(self) -> list:
        """``[u0, z0, subnet 0's parameters in layer order, subnet 1's, ...]``: the order of
        the engine's ``GlobalNetwork.params``."""
        return [self.u0, self.z0, *self.subnets.parameters()]

    def train(self, mode: bool = True) -> None:
        self.subnets.train(mode)

    def pairs(self, net) -> list[tuple]:
        """``[(engine Param, torch parameter, g), ...]`` for every torch parameter: ``g`` is
        None for an engine array that is the torch one's (transposed for a Dense kernel), or
        the time step whose slice of a stacked engine array it is (a batched net stacks the
        N - 1 subnets' parameters along a first axis: kernel ``(N - 1, in, out)``, gamma
        ``(N - 1, 1, C)``)."""
        ours = list(net.params)
        subs = [list(m.parameters()) for m in self.subnets]
        per = len(subs[0]) if subs else 0
        out = [(ours[0], self.u0, None), (ours[1], self.z0, None)]
        if getattr(net, "layers", None) is not None:          # stacked subnets
            if len(ours) - 2 != per:
                raise ValueError(f"the engine net has {len(ours) - 2} stacked subnet "
                                 f"parameters, a port subnet {per}")
            out += [(p, subs[g][k], g) for k, p in enumerate(ours[2:]) for g in range(len(subs))]
        else:
            if len(ours) - 2 != per * len(subs):
                raise ValueError(f"the engine net has {len(ours)} parameters, the port "
                                 f"{2 + per * len(subs)}")
            out += list(zip(ours[2:], [q for sub in subs for q in sub], [None] * len(ours)))
        return out

    @staticmethod
    def engine_view(arr, g, shape):
        """The engine array (or its slice ``g``) in the torch parameter's layout."""
        v = arr if g is None else arr[g]
        v = v.T if len(shape) == 2 else v.reshape(-1)
        if tuple(v.shape) != tuple(shape):
            raise ValueError(f"engine {arr.shape} (slice {g}) does not fit the port's {tuple(shape)}")
        return v

    def load_from(self, net) -> None:
        """Copy the engine net's parameters (Dense kernels ``(in, out)`` transposed to
        Linear's ``(out, in)``) and its batchnorm running statistics."""
        import numpy as np
        import torch
        with torch.no_grad():
            for p, q, g in self.pairs(net):
                q.copy_(torch.from_numpy(np.ascontiguousarray(self.engine_view(p.value, g, q.shape))))
            bns = [[m for m in sub if isinstance(m, torch.nn.BatchNorm1d)] for sub in self.subnets]
            if getattr(net, "layers", None) is not None:
                ebn = [la for la in net.layers if hasattr(la, "running_mean")]
                stats = [[(la.running_mean[g], la.running_var[g]) for la in ebn]
                         for g in range(len(bns))]
            else:
                stats = [[(la.running_mean, la.running_var) for la in m.layers
                          if hasattr(la, "running_mean")] for m in getattr(net, "subnets", [])]
            for mods, st in zip(bns, stats):
                for m, (mean, var) in zip(mods, st):
                    m.running_mean.copy_(torch.from_numpy(np.ravel(mean)))
                    m.running_var.copy_(torch.from_numpy(np.ravel(var)))

    def loss(self, dw, x):
        import torch
        eq = self.eq
        b, d = dw.shape[0], eq.dim
        y = self.u0.expand(b)
        z = self.z0.expand(b, d)
        for i in range(eq.n):
            y = y - eq.dt * torch_f(eq, i * eq.dt, x[:, :, i], y, z) + (z * dw[:, :, i]).sum(1)
            if i < eq.n - 1:
                z = self.subnets[i](x[:, :, i + 1]) / d
        delta = y - torch_g(eq, x[:, :, -1])
        a = delta.abs()
        return torch.where(a < DELTA_CLIP, delta * delta, 2 * DELTA_CLIP * a - DELTA_CLIP ** 2).mean()


def engine_steps(solver, k: int, rng) -> None:
    """``k`` training iterations of the engine's net (public API only)."""
    b = solver.config["train"]["batch_size"]
    for _ in range(k):
        dw, x = solver.eq.sample(b, rng)
        solver.net.zero_grad()
        solver.net.loss_and_grad(dw, x)
        solver.opt.step()


def can_unbatch() -> bool:
    """True if the engine's ``GlobalNetwork`` stacks its subnets and can be told not to."""
    import inspect

    from engine.bsde import GlobalNetwork
    return "batched" in inspect.signature(GlobalNetwork).parameters


def unbatched(solver) -> None:
    """Give ``solver`` the same network (same seed, same weights) with its subnets called one
    after the other inside the recursion (``batched=False``), and a fresh Adam over it."""
    from engine.bsde import GlobalNetwork
    from engine.optim import Adam
    cfg = solver.config
    solver.net = GlobalNetwork(solver.eq, cfg["subnet"], cfg["y_init_range"],
                               cfg["train"]["seed"], batched=False)
    solver.opt = Adam(solver.net.params, lr=cfg["train"]["lr"], eps=1e-8)
    if hasattr(solver, "optimizer"):
        solver.optimizer = solver.opt
    if hasattr(solver, "model"):
        solver.model = solver.net


def check_port(name: str, warm_steps: int = 3, batch: int = 64, seed: int = 5) -> dict:
    """Loss and gradients of the engine net and the port with the same weights, same paths.

    Returns ``{"loss", "loss_diff", "u0_grad", "u0_grad_diff", "z0_grad_diff",
    "max_grad_diff", "max_grad"}``: absolute differences; the last two over every entry of
    every parameter (a relative measure per parameter would divide rounding by the exact zero
    gradient of a bias or beta right before a batchnorm).
    """
    import numpy as np
    import torch
    solver = make_solver(name)
    engine_steps(solver, warm_steps, np.random.default_rng([seed, 1]))
    port = TorchPort(solver.eq, solver.config["y_init_range"])
    port.load_from(solver.net)
    port.train(True)
    dw, x = solver.eq.sample(batch, np.random.default_rng([seed, 2]))
    solver.net.zero_grad()
    loss = solver.net.loss_and_grad(dw, x)
    tloss = port.loss(torch.from_numpy(dw), torch.from_numpy(x))
    tloss.backward()
    diff = big = 0.0
    for p, q, g in port.pairs(solver.net):
        ours = port.engine_view(p.grad, g, q.shape)
        diff = max(diff, float(np.max(np.abs(ours - q.grad.numpy()))))
        big = max(big, float(np.max(np.abs(ours))))
    return {"loss": loss, "loss_diff": abs(loss - tloss.item()),
            "u0_grad_diff": float(np.max(np.abs(solver.net.params[0].grad - port.u0.grad.numpy()))),
            "z0_grad_diff": float(np.max(np.abs(solver.net.params[1].grad - port.z0.grad.numpy()))),
            "u0_grad": float(solver.net.params[0].grad[0]),
            "max_grad_diff": diff, "max_grad": big}


# ---------------------------------------------------------------- contenders (in workers)


class Trainer:
    """One contender's training state: ``steps(k)`` runs k iterations (sample + forward +
    backward + Adam), ``evaluate()`` gives ``(u0, validation loss)`` on the preset's fixed
    validation set. ``kind`` is ``numpy`` (the engine's ``BsdeSolver`` net and Adam),
    ``torch`` (``TorchPort`` from the same initial weights, ``torch.optim.Adam`` as it comes)
    or ``torch-fused`` (the same with ``Adam(fused=True)``, PyTorch's fastest CPU Adam); all
    draw the same training paths with the engine's ``Equation.sample``."""

    def __init__(self, kind: str, name: str, threads: int):
        import numpy as np
        self.kind, self.solver = kind, make_solver(name)
        tr = self.solver.config["train"]
        self.rng = np.random.default_rng([tr["seed"], 1])
        self.step = 0
        if kind == "numpy-loop":
            unbatched(self.solver)
        elif kind in ("torch", "torch-fused"):
            import torch
            torch.set_num_threads(threads)
            self.torch = torch
            self.port = TorchPort(self.solver.eq, self.solver.config["y_init_range"])
            self.port.load_from(self.solver.net)
            self.port.train(True)
            self.topt = torch.optim.Adam(self.port.parameters(), lr=tr["lr"], eps=1e-8,
                                         **({"fused": True} if kind == "torch-fused" else {}))
            self.valid = [torch.from_numpy(a) for a in self.solver.valid]
        elif kind != "numpy":
            raise ValueError(kind)

    def lr(self) -> float:
        """The preset's learning rate for the next iteration (its piecewise constant schedule
        where the engine has one)."""
        at = getattr(self.solver, "lr_at", None)
        return at(self.step) if at else self.solver.config["train"]["lr"]

    def steps(self, k: int) -> None:
        if self.kind.startswith("numpy"):
            for _ in range(k):
                self.solver.opt.lr = self.lr()
                engine_steps(self.solver, 1, self.rng)
                self.step += 1
            return
        eq, b = self.solver.eq, self.solver.config["train"]["batch_size"]
        for _ in range(k):
            for group in self.topt.param_groups:
                group["lr"] = self.lr()
            self.step += 1
            dw, x = eq.sample(b, self.rng)
            self.topt.zero_grad(set_to_none=True)
            loss = self.port.loss(self.torch.from_numpy(dw), self.torch.from_numpy(x))
            loss.backward()
            self.topt.step()

    def evaluate(self) -> tuple[float, float]:
        if self.kind.startswith("numpy"):
            ev = self.solver.evaluate()
            ev = ev if isinstance(ev, dict) else vars(ev)   # a dict, or an event dataclass
            return ev["u0"], ev["valid_loss"]
        self.port.train(False)
        with self.torch.no_grad():
            loss = self.port.loss(*self.valid).item()
        self.port.train(True)
        return self.port.u0.item(), loss


def worker(conn, kind: str, name: str, threads: int, tune_malloc: bool) -> None:
    """Build one contender, then answer ``k`` (run k iterations) with the seconds taken and
    ``"eval"`` with ``(u0, validation loss)``."""
    if tune_malloc:
        from .common import keep_freed_memory
        keep_freed_memory()
    try:
        trainer = Trainer(kind, name, threads)
        conn.send(("ready", None))
    except Exception as exc:  # e.g. torch not importable
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        k = conn.recv()
        if k is None:
            return
        if k == "eval":
            conn.send(("ok", trainer.evaluate()))
            continue
        t0 = time.perf_counter()
        trainer.steps(k)
        conn.send(("ok", time.perf_counter() - t0))


class Contender:
    """A worker process holding one contender; ``run(k)`` trains k iterations there."""

    def __init__(self, ctx, kind: str, name: str, threads: int, tune_malloc: bool):
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, kind, name, threads, tune_malloc),
                                daemon=True)
        self.proc.start()
        self.steps, self.times, self.error = 1, [], None   # times: seconds per iteration

    def wait_ready(self) -> bool:
        status, msg = self.conn.recv()
        self.error = msg if status == "error" else None
        return self.error is None

    def run(self, k: int) -> float:
        self.conn.send(k)
        return self.conn.recv()[1]

    def evaluate(self) -> tuple[float, float]:
        self.conn.send("eval")
        return tuple(self.conn.recv()[1])

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=10)


def start(ctx, args, name: str, kinds: list[str]) -> list[Contender]:
    """One ready worker per kind; a torch worker that fails is dropped (its error printed)."""
    cs = [Contender(ctx, k, name, args.threads, not args.default_malloc) for k in kinds]
    for c in cs:
        if not c.wait_ready():
            if not c.kind.startswith("torch"):
                raise RuntimeError(f"{c.kind} failed: {c.error}")
            print(f"  (PyTorch skipped: {c.error})")
    return cs


def measure(contenders: list[Contender], reps: int, seconds: float) -> None:
    """Warm up, size each repetition to ~``seconds``, then time interleaved repetitions."""
    for c in contenders:
        c.run(3)
        t = c.run(2) / 2
        c.steps = max(1, round(seconds / t))
    for _ in range(reps):
        for c in contenders:
            c.times.append(c.run(c.steps) / c.steps)


def median(c: Contender | None) -> float | None:
    return statistics.median(c.times) if c and c.times else None


def spread(c: Contender | None) -> str:
    """Half the min..max range over the median, in percent: how noisy the machine was."""
    if not c or len(c.times) < 2:
        return ""
    return f"±{50 * (max(c.times) - min(c.times)) / statistics.median(c.times):.0f}%"


def time_iterations(ctx, args, name: str, kinds: list[str]) -> dict[str, Contender]:
    cs = start(ctx, args, name, kinds)
    try:
        measure([c for c in cs if not c.error], args.reps, args.seconds)
    finally:
        for c in cs:
            c.close()
    print(f"  {name:>16}: " + ", ".join(
        f"{c.kind} {1e3 * median(c):.2f} ms {spread(c)}" for c in cs if not c.error), flush=True)
    return {c.kind: c for c in cs if not c.error}


# ---------------------------------------------------------------- where the time goes

SPLIT_PARTS = ("sample", "zero_grad", "subnets forward", "recursion forward",
               "subnets backward", "recursion backward", "adam")


def split_numpy(name: str, iterations: int, warm: int = 5, loop: bool = False) -> dict:
    """Median seconds per part of a NumPy iteration (``SPLIT_PARTS``, plus ``f + g`` within the
    recursion forward, the instrumented ``total`` and an uninstrumented ``plain`` median);
    ``loop``: the subnets called one after the other (``batched=False``)."""
    import numpy as np
    solver = make_solver(name)
    if loop:
        unbatched(solver)
    net, eq, opt = solver.net, solver.eq, solver.opt
    b = solver.config["train"]["batch_size"]
    rng = np.random.default_rng([0, 1])
    plain = []
    engine_steps(solver, warm, rng)
    for _ in range(iterations // 2):
        t0 = time.perf_counter()
        engine_steps(solver, 1, rng)
        plain.append(time.perf_counter() - t0)
    acc: dict[str, float] = defaultdict(float)

    def timed(key, fn):
        def wrapped(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            acc[key] += time.perf_counter() - t0
            return out
        return wrapped
    stacked = getattr(net, "layers", None)
    # the stacked layers when batched (called once per iteration each), else every subnet
    for m in stacked if stacked is not None else getattr(net, "subnets", []):
        m.forward = timed("subnets forward", m.forward)
        m.backward = timed("subnets backward", m.backward)
    eq.f = timed("f + g", eq.f)
    eq.g = timed("f + g", eq.g)
    net.forward = timed("net forward", net.forward)
    rows = defaultdict(list)
    for it in range(warm + iterations):
        acc.clear()
        t0 = time.perf_counter()
        dw, x = eq.sample(b, rng)
        t1 = time.perf_counter()
        net.zero_grad()
        t2 = time.perf_counter()
        net.loss_and_grad(dw, x)
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if it < warm:
            continue
        part = {"sample": t1 - t0, "zero_grad": t2 - t1,
                "subnets forward": acc["subnets forward"],
                "recursion forward": acc["net forward"] - acc["subnets forward"],
                "subnets backward": acc["subnets backward"],
                "recursion backward": (t3 - t2) - acc["net forward"] - acc["subnets backward"],
                "adam": t4 - t3, "f + g": acc["f + g"], "total": t4 - t0}
        for k, v in part.items():
            rows[k].append(v)
    out = {k: statistics.median(v) for k, v in rows.items()}
    out["plain"] = statistics.median(plain)
    out["subnets_seen"] = rows["subnets forward"][0] > 0
    return out


# ---------------------------------------------------------------- time to target


def to_target(ctx, args, name: str, kinds: list[str], eval_every: int = 100) -> list[dict]:
    """Train ``name`` with every kind (workers, chunks of ``eval_every`` iterations taken in
    turn, so a change of the machine's load hits all alike) until an eval meets the preset's
    target, its iterations run out, or a kind's training seconds pass ``args.target_cap``.
    Seconds count training iterations only, not the evals."""
    from engine.bsde import BSDE_PRESETS
    target = BSDE_PRESETS[name]["target"]
    total = make_solver(name).config["train"]["iterations"]
    cs = [c for c in start(ctx, args, name, kinds) if not c.error]
    out = {c.kind: {"preset": name, "kind": c.kind, "reached": False, "iterations": 0,
                    "seconds": 0.0, "u0": None, "valid_loss": None, "preset_iterations": total,
                    "capped": False} for c in cs}
    try:
        live = list(cs)
        while live:
            for c in list(live):
                r = out[c.kind]
                k = min(eval_every, total - r["iterations"])
                r["seconds"] += c.run(k)
                r["iterations"] += k
                r["u0"], r["valid_loss"] = c.evaluate()
                r["reached"] = (abs(r["u0"] - target["u0"]) <= target["band"] * abs(target["u0"])
                                and r["valid_loss"] < target["valid_loss_below"])
                r["capped"] = not r["reached"] and r["seconds"] > args.target_cap
                if r["reached"] or r["capped"] or r["iterations"] >= total:
                    live.remove(c)
    finally:
        for c in cs:
            c.close()
    for r in out.values():
        state = ("reached" if r["reached"] else
                 f"NOT reached (stopped past --target-cap {args.target_cap:.0f} s)" if r["capped"]
                 else "NOT reached")
        print(f"  {name:>16} {r['kind']:>5}: {state} at iteration {r['iterations']} after "
              f"{r['seconds']:.1f} s, u0 {r['u0']:.6f}, valid loss {r['valid_loss']:.3g}",
              flush=True)
    return list(out.values())


# ---------------------------------------------------------------- main


def load() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def main(args) -> int:
    t_start = time.perf_counter()
    import numpy as np
    use_torch = not args.no_torch and have_torch()
    print(f"numpy {np.__version__}, {args.threads} threads, {args.reps} interleaved repetitions "
          f"of ~{args.seconds} s per contender, median; one worker process per contender; "
          f"glibc malloc {'as it starts' if args.default_malloc else 'keeping freed memory'}; "
          f"load average {load()} on {os.cpu_count()} CPUs")
    if not args.no_torch and not use_torch:
        print("torch not installed: NumPy parts only")
    result: dict = {"threads": args.threads, "reps": args.reps, "seconds": args.seconds}

    if use_torch:
        import torch
        torch.set_num_threads(args.threads)
        print(f"torch {torch.__version__}; the port against the engine (same weights, same 64 "
              f"paths, one training-mode forward and backward):")
        result["check"] = {}
        for name in args.presets:
            c = check_port(name)
            result["check"][name] = c
            ok = (c["loss_diff"] < 1e-10 and c["u0_grad_diff"] < 1e-8 and c["z0_grad_diff"] < 1e-8
                  and c["max_grad_diff"] < 1e-8 * c["max_grad"])
            print(f"  {name:>16}: loss {c['loss']:.6g}, |diff| {c['loss_diff']:.1e}; "
                  f"u0 grad |diff| {c['u0_grad_diff']:.1e}, z0 grad {c['z0_grad_diff']:.1e}, "
                  f"every parameter {c['max_grad_diff']:.1e} (largest grad {c['max_grad']:.2g}) "
                  f"{'ok' if ok else 'MISMATCH'}", flush=True)
            if not ok:
                raise SystemExit("the PyTorch port does not compute what the engine computes")

    print("time per training iteration (sample + forward + backward + Adam, batch 64):")
    ctx = mp.get_context("spawn")
    loop = can_unbatch()
    kinds = ["numpy"] + (["numpy-loop"] if loop else []) + (["torch"] if use_torch else []) + (
        ["torch-fused"] if use_torch and not args.no_fused else [])
    rows = []
    for name in args.presets:
        by = time_iterations(ctx, args, name, kinds)
        kinds = [k for k in kinds if k in by]
        iters = make_solver(name).config["train"]["iterations"]
        med = {k: median(c) for k, c in by.items()}
        rows.append({"preset": name, "seconds": med,
                     "over_numpy": {k: v / med["numpy"] for k, v in med.items()},
                     "iterations": iters, "projected_s": {k: iters * v for k, v in med.items()},
                     "paper_s": PAPER_SECONDS.get(name),
                     "times": {k: c.times for k, c in by.items()}})
    result["iterations"] = rows

    print("where a NumPy iteration goes (instrumented, median per part):", flush=True)
    splits = {name: split_numpy(name, args.split_iterations) for name in args.presets}
    if loop:
        splits.update({f"{name} (loop)": split_numpy(name, args.split_iterations, loop=True)
                       for name in args.presets})
    result["split"] = splits

    target_presets = ["bsde-hjb-d10"] + (["bsde-hjb", "bsde-allen-cahn"] if args.full else [])
    print("time to target (train until an eval every 100 iterations meets the preset's target; "
          "the contenders take turns in chunks of 100):", flush=True)
    targets = []
    for name in target_presets:
        targets += to_target(ctx, args, name, [k for k in kinds if k in ("numpy", "torch")])
    result["to_target"] = targets

    def ms(v):
        return "-" if v is None else f"{1e3 * v:.2f}"

    def sec(v):
        return "-" if v is None else f"{v:,.0f}"

    def ratio(v):
        return "-" if v is None else f"{v:.2f}x"
    print()
    others = [k for k in kinds if k != "numpy"]
    short = {"numpy-loop": "loop", "torch-fused": "fused", "numpy": "numpy", "torch": "torch"}
    head = (f"{'preset':<17}{'numpy ms':>9}" + "".join(
        f"{short[k] + ' ms':>10}{short[k] + '/numpy':>13}" for k in others)
        + f"{'iterations':>11}" + "".join(f"{short[k] + ' run s':>13}" for k in kinds
                                          if k in ("numpy", "torch")) + f"{'paper s':>9}")
    print("time per training iteration (numpy: the engine as it comes" +
          ("; loop: its subnets one after the other, batched=False" if loop else "") +
          "; fused: torch with Adam(fused=True);\nrun s = iterations x median)\n"
          + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['preset']:<17}{ms(r['seconds']['numpy']):>9}" + "".join(
            f"{ms(r['seconds'].get(k)):>10}{ratio(r['over_numpy'].get(k)):>13}" for k in others)
            + f"{r['iterations']:>11,}" + "".join(
            f"{sec(r['projected_s'].get(k)):>13}" for k in kinds if k in ("numpy", "torch"))
            + f"{sec(r['paper_s']):>9}")
    print("\nNumPy iteration by part, ms (share of the instrumented total)")
    head = f"{'part':<20}" + "".join(f"{n:>24}" for n in splits)
    print(head + "\n" + "-" * len(head))
    for part in (*SPLIT_PARTS, "f + g", "total", "plain"):
        cells = []
        for n in splits:
            s = splits[n]
            share = f" ({100 * s[part] / s['total']:.0f}%)" if part not in ("total", "plain") else ""
            cells.append(f"{1e3 * s[part]:.2f}{share}")
        label = {"f + g": "  of which f, g", "plain": "uninstrumented"}.get(part, part)
        print(f"{label:<20}" + "".join(f"{c:>24}" for c in cells))
    if not all(s["subnets_seen"] for s in splits.values()):
        print("(a column whose subnet rows are 0: the engine calls its subnets some other way; "
              "their time is in the recursion's rows)")
    print("\ntime to target (training iterations only)")
    head = f"{'preset':<17}{'kind':>7}{'reached':>9}{'iteration':>11}{'seconds':>9}{'u0':>11}{'valid loss':>12}"
    print(head + "\n" + "-" * len(head))
    for r in targets:
        print(f"{r['preset']:<17}{r['kind']:>7}{'yes' if r['reached'] else 'capped' if r['capped'] else 'no':>9}"
              f"{r['iterations']:>11,}{r['seconds']:>9.1f}{r['u0']:>11.6f}{r['valid_loss']:>12.3g}")
    by_kind = {(r["preset"], r["kind"]): r for r in targets}
    for name in target_presets:
        a, b = by_kind.get((name, "numpy")), by_kind.get((name, "torch"))
        if a and b and a["reached"] and b["reached"]:
            print(f"{name}: torch/numpy seconds to target {b['seconds'] / a['seconds']:.2f}x")
    print(f"\ngoal: torch/numpy >= 1.0x (NumPy ahead); load average now {load()}; "
          f"{time.perf_counter() - t_start:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    ARGS = parse_args()
    set_threads(ARGS.threads)  # inherited by the spawned workers
    sys.exit(main(ARGS))
