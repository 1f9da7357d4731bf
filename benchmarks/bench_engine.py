"""Training throughput of the engine, side by side with PyTorch and the seeds' naive code.

    python -m benchmarks.bench_engine            # full run, a few minutes
    python -m benchmarks.bench_engine --quick    # a short run, well under a minute

One training step is forward + backward + SGD-momentum update on one batch of real MNIST
images (float32, prepared once beforehand, the same for everyone). Contenders per network:

- ``ours``: ``engine.model.Model`` built from the preset's layer list, ``engine.optim.SGD``
  with momentum 0.9; ``zero_grad`` / ``loss_and_grad`` / ``step``.
- ``torch`` (when ``import torch`` works): the same layers as ``nn.Sequential`` in NCHW,
  ``torch.optim.SGD`` with momentum 0.9, ``cross_entropy``; eager mode, no ``torch.compile``.
- ``convolve2d`` (``lenet``): our model with both conv layers replaced by a per-sample,
  per-channel ``scipy.signal`` conv layer (``benchmarks/naive.py``).
- ``book`` (``grokking-cnn``): the Grokking Deep Learning ch. 10 step with its per-window
  ``get_image_section`` loop (``benchmarks/naive.py``).

Repetitions are interleaved (A, B, C, A, B, C, ...) and the median is reported, because the
machine is shared and noisy. Threads are pinned to 2 (``--threads``) before NumPy or PyTorch
is imported.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

NETS = ("lenet", "mlp", "grokking-cnn")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: fewer, shorter repetitions")
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--reps", type=int, help="interleaved repetitions per contender "
                                              "(default 7, quick 3)")
    ap.add_argument("--seconds", type=float, help="target seconds per repetition "
                                                   "(default 0.6, quick 0.25)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive references")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    args.reps = args.reps or (3 if args.quick else 7)
    args.seconds = args.seconds or (0.25 if args.quick else 0.6)
    return args


ARGS = parse_args() if __name__ == "__main__" else None
_THREADS = str(ARGS.threads if ARGS else 2)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS  # must happen before numpy / torch load their BLAS

import json  # noqa: E402
import statistics  # noqa: E402

import numpy as np  # noqa: E402

from engine.datasets import load_dataset  # noqa: E402
from engine.layers import Conv2D  # noqa: E402
from engine.optim import SGD  # noqa: E402
from engine.presets import get_preset  # noqa: E402

from .common import engine_model, make_batches  # noqa: E402
from .naive import BookCNN, Convolve2dConv  # noqa: E402

try:
    import torch  # noqa: E402
    torch.set_num_threads(int(_THREADS))
    from .torch_nets import torch_net  # noqa: E402
except ImportError:  # optional reference
    torch = None


# ---------------------------------------------------------------- contenders

class Contender:
    """A named training step on a fixed batch size; ``step()`` trains on the next batch."""

    def __init__(self, name: str, batch_size: int, step):
        self.name, self.batch_size, self.step = name, batch_size, step
        self.step_seconds = None  # estimate from the warm-up
        self.steps = 1            # steps per timed repetition
        self.rates: list[float] = []

    def time_steps(self, k: int) -> float:
        t0 = time.perf_counter()
        for _ in range(k):
            self.step()
        return time.perf_counter() - t0


def cycle(items):
    i = 0
    while True:
        yield items[i % len(items)]
        i += 1


def ours(net, batches):
    model = engine_model(net)
    opt = SGD(model.params, lr=0.01, momentum=0.9)
    it = cycle(batches)

    def step():
        x, y = next(it)
        model.zero_grad()
        model.loss_and_grad(x, y)
        opt.step()
    return step


def convolve2d_model(net, batches):
    """Our model with every Conv2D replaced by the per-sample ``convolve2d`` layer."""
    model = engine_model(net)
    model.layers = [Convolve2dConv(la) if isinstance(la, Conv2D) else la for la in model.layers]
    opt = SGD(model.params, lr=0.01, momentum=0.9)
    it = cycle(batches)

    def step():
        x, y = next(it)
        model.zero_grad()
        model.loss_and_grad(x, y)
        opt.step()
    return step


def book(net, batches):
    cnn = BookCNN()
    data = [(x.reshape(len(x), 28, 28), np.eye(10, dtype=np.float32)[y]) for x, y in batches]
    it = cycle(data)

    def step():
        cnn.train_step(*next(it))
    return step


def pytorch(net, batches):
    torch.manual_seed(0)
    module = torch_net(get_preset(net)["model"])
    module.train()
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    data = [(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y))
            for x, y in batches]
    it = cycle(data)

    def step():
        x, y = next(it)
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(module(x), y)
        loss.backward()
        opt.step()
    return step


# ---------------------------------------------------------------- self-checks

def check_references() -> None:
    """The naive references must compute what our layers compute (else the race is unfair)."""
    rng = np.random.default_rng(0)
    for k, p, c in ((5, 2, 1), (5, 0, 8)):
        conv = Conv2D(4, k, padding=p)
        conv.build((12, 12, c), rng, np.float64)
        conv.params[1].value[...] = rng.standard_normal(4)
        x = rng.standard_normal((3, 12, 12, c))
        ref = Convolve2dConv(conv)
        y = conv.forward(x)
        g = rng.standard_normal(y.shape)
        dx = conv.backward(g)
        grads = [q.grad.copy() for q in conv.params]
        conv.zero_grad()
        assert np.allclose(ref.forward(x), y)
        assert np.allclose(ref.backward(g), dx)
        for q, want in zip(conv.params, grads):
            assert np.allclose(q.grad, want), q.name
    cnn = BookCNN(dtype=np.float64)
    conv = Conv2D(16, 3, use_bias=False)
    conv.build((28, 28, 1), rng, np.float64)
    conv.params[0].value[...] = cnn.kernels.reshape(3, 3, 1, 16)
    x = rng.random((2, 28, 28, 1))
    _, out, _ = cnn.conv_forward(x[..., 0])
    assert np.allclose(out.reshape(2, 26, 26, 16), conv.forward(x))


# ---------------------------------------------------------------- timing

def measure(contenders: list[Contender], reps: int, seconds: float) -> None:
    """Warm up, size each repetition to ~``seconds``, then time interleaved repetitions."""
    for c in contenders:
        c.step()  # first call allocates
        c.step_seconds = c.time_steps(1)
        if c.step_seconds < seconds / 4:
            c.step_seconds = c.time_steps(3) / 3
        c.steps = max(1, round(seconds / c.step_seconds))
    for _ in range(reps):
        for c in contenders:
            c.rates.append(c.batch_size * c.steps / c.time_steps(c.steps))


def median(c: Contender | None) -> float | None:
    return statistics.median(c.rates) if c and c.rates else None


def spread(c: Contender | None) -> str:
    """Half the min..max range over the median, in percent: a noise indicator."""
    if not c or len(c.rates) < 2:
        return ""
    return f"±{50 * (max(c.rates) - min(c.rates)) / statistics.median(c.rates):.0f}%"


def fmt(v, unit=""):
    if v is None:
        return "-"
    return f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}"


def main(args) -> int:
    t_start = time.perf_counter()
    use_torch = torch is not None and not args.no_torch
    print(f"numpy {np.__version__}, threads {args.threads}, "
          f"torch {torch.__version__ if use_torch else '(not used)'}, "
          f"reps {args.reps} x ~{args.seconds}s, interleaved, median")
    if not args.no_naive:
        check_references()
    data = load_dataset("mnist")
    rows = []
    for net in args.nets:
        for bs in args.batch_sizes:
            batches = make_batches(data, bs)
            cs = {"ours": Contender("ours", bs, ours(net, batches))}
            if use_torch:
                cs["torch"] = Contender("torch", bs, pytorch(net, batches))
            if not args.no_naive and net == "lenet":
                cs["naive"] = Contender("convolve2d", bs, convolve2d_model(net, batches))
            if not args.no_naive and net == "grokking-cnn":
                cs["naive"] = Contender("book-loops", bs, book(net, batches))
            measure(list(cs.values()), args.reps, args.seconds)
            row = {"net": net, "batch": bs, **{f"{k}_ips": median(c) for k, c in cs.items()},
                   "naive_name": cs["naive"].name if "naive" in cs else None,
                   "spread": {k: spread(c) for k, c in cs.items()},
                   "rates": {k: c.rates for k, c in cs.items()}}
            o = row["ours_ips"]
            row["ours_vs_torch"] = o / row["torch_ips"] if row.get("torch_ips") else None
            row["ours_vs_naive"] = o / row["naive_ips"] if row.get("naive_ips") else None
            rows.append(row)
            print(f"  {net:>12} batch {bs:>3}: " + ", ".join(
                f"{c.name} {fmt(median(c))} img/s {spread(c)}" for c in cs.values()), flush=True)

    print()
    head = (f"{'network':<13}{'batch':>6}{'ours img/s':>12}{'torch img/s':>13}{'ours/torch':>12}"
            f"{'naive':>13}{'naive img/s':>13}{'ours/naive':>12}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['net']:<13}{r['batch']:>6}{fmt(r['ours_ips']):>12}{fmt(r.get('torch_ips')):>13}"
              f"{fmt(r['ours_vs_torch'], 'x'):>12}{r['naive_name'] or '-':>13}"
              f"{fmt(r.get('naive_ips')):>13}{fmt(r['ours_vs_naive'], 'x'):>12}")
    print(f"\ntargets: ours/torch >= 1.2x lenet, >= 2x mlp and grokking-cnn; "
          f"ours/convolve2d >= 50x; ours/book-loops >= 4x   ({time.perf_counter() - t_start:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": args.threads, "numpy": np.__version__,
                       "torch": torch.__version__ if use_torch else None, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
