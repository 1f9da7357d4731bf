"""Training throughput of the engine, side by side with PyTorch and the seeds' naive code.

    python -m benchmarks.bench_engine            # full run, about 4 minutes on an idle machine
    python -m benchmarks.bench_engine --quick    # a short run, about a minute

One training step is forward + backward + SGD update on one batch of real MNIST images
(float32, prepared once beforehand, the same images for everyone). Contenders per network:

- ``ours``: ``engine.model.Model`` built from the preset's layer list, ``engine.optim.SGD``
  with momentum 0.9; ``zero_grad`` / ``loss_and_grad`` / ``step`` (the core of the
  trainer's step, without its gradient norm, accuracy and progress event).
- ``torch`` (when ``import torch`` works): the same layers as ``nn.Sequential`` in NCHW,
  ``torch.optim.SGD`` with momentum 0.9, ``cross_entropy``; eager mode, no ``torch.compile``.
- ``convolve2d`` (``lenet``): our model with both conv layers replaced by a per-sample,
  per-channel ``scipy.signal`` conv layer (``benchmarks/naive.py``).
- ``book-loops`` (``grokking-cnn``): the Grokking Deep Learning ch. 10 step with its
  per-window ``get_image_section`` loop (``benchmarks/naive.py``), plain SGD as in the book.

A second table times the conv layers alone (forward + backward of the network's Conv2D
layers on their real inputs): ours against the convolve2d layer and the book's loop.

Each contender runs in its own worker process (so one cannot change another's memory
allocator state or thread pools), and the parent interleaves the timed repetitions
(A, B, C, A, B, C, ...) and reports the median, because the machine is shared and noisy;
the load average is printed before and after. Thread counts are fixed (``--threads``,
default 2) before NumPy or PyTorch is imported. Every worker first tells glibc to keep
freed memory (``--default-malloc`` to leave it alone; see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

NETS = ("lenet", "mlp", "grokking-cnn")
NAIVE = {"lenet": "convolve2d", "grokking-cnn": "book-loops"}
#: further naive contenders of the whole step: the book's code in its own dtype (float64)
NAIVE_EXTRA = {"grokking-cnn": ["book-loops-f64"]}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: fewer, shorter repetitions")
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--reps", type=int, help="interleaved repetitions per contender "
                                              "(default 11, quick 3)")
    ap.add_argument("--seconds", type=float, help="target seconds per repetition "
                                                   "(default 0.45, quick 0.3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive references")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's allocator as it starts (see 'Page faults' in the README)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    args.reps = args.reps or (3 if args.quick else 11)
    args.seconds = args.seconds or (0.3 if args.quick else 0.45)
    return args


def set_threads(n: int) -> None:
    """Pin BLAS/OpenMP thread pools; must run before numpy or torch is imported."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


# ---------------------------------------------------------------- contenders (in workers)

def cycle(items):
    i = 0
    while True:
        yield items[i % len(items)]
        i += 1


def build_step(kind: str, net: str, batch_size: int):
    """A function that trains one step of ``kind`` on the next batch."""
    import numpy as np

    from engine.datasets import load_dataset
    from engine.layers import Conv2D
    from engine.optim import SGD

    from .common import engine_model, make_batches
    from .naive import BookCNN, Convolve2dConv

    batches = make_batches(load_dataset("mnist"), batch_size)
    if kind.endswith("-conv"):
        return conv_only_step(kind[:-len("-conv")], net, batches)
    if kind in ("ours", "convolve2d"):
        # ours uses the threads as the CLI does: a conv net's two shards in parallel
        model = engine_model(net, threads=int(os.environ["OMP_NUM_THREADS"]) if kind == "ours" else 1)
        if kind == "convolve2d":  # same model, conv layers swapped for the naive one
            model.layers = [Convolve2dConv(la) if isinstance(la, Conv2D) else la
                            for la in model.layers]
        opt = SGD(model.params, lr=0.01, momentum=0.9)
        it = cycle(batches)

        def step():
            x, y = next(it)
            model.zero_grad()
            model.loss_and_grad(x, y)
            opt.step()
        return step
    if kind in ("book-loops", "book-loops-f64"):
        dt = np.float64 if kind.endswith("f64") else np.float32
        cnn = BookCNN(dtype=dt)
        data = cycle([(x.reshape(len(x), 28, 28).astype(dt), np.eye(10, dtype=dt)[y])
                      for x, y in batches])
        return lambda: cnn.train_step(*next(data))
    if kind == "torch":
        import torch

        from .torch_nets import torch_net
        from engine.presets import get_preset
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        torch.manual_seed(0)
        module = torch_net(get_preset(net)["model"])
        module.train()
        topt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
        tdata = cycle([(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                        torch.from_numpy(y)) for x, y in batches])

        def tstep():
            x, y = next(tdata)
            topt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(module(x), y)
            loss.backward()
            topt.step()
        return tstep
    raise ValueError(kind)


def conv_only_step(kind: str, net: str, batches):
    """Forward + backward of the network's conv layers alone, on their real inputs.

    The inputs of each conv layer come from one forward pass of our model per batch; the
    output gradients are fixed random arrays. ``kind``: ``ours``, ``convolve2d`` or
    ``book-loops`` (grokking-cnn: the book's window loop, then ``cols.T @ delta``).
    """
    import numpy as np

    from engine.layers import Conv2D

    from .common import engine_model
    from .naive import BookCNN, Convolve2dConv

    model = engine_model(net)
    convs = [la for la in model.layers if isinstance(la, Conv2D)]
    rng = np.random.default_rng(0)
    work = []  # per batch: [(input, output grad)] per conv layer
    for x, _ in batches:
        per, h = [], x
        for la in model.layers:
            if isinstance(la, Conv2D):
                y = la.forward(h, False)
                per.append((h, rng.standard_normal(y.shape, dtype=np.float32)))
            if la is convs[-1]:
                break
            h = la.forward(h, False)
        work.append(per)
    it = cycle(work)
    if kind == "book-loops":
        cnn = BookCNN()

        def book_step():
            (x, g), = next(it)
            flat, out, _ = cnn.conv_forward(x[..., 0])
            flat.T.dot(g.reshape(out.shape))     # the book's k_update
        return book_step
    layers = convs if kind == "ours" else [Convolve2dConv(c) for c in convs]

    def step():
        for layer, (x, g) in zip(layers, next(it)):
            layer.forward(x, True)
            layer.backward(g)
    return step


def worker(conn, kind: str, net: str, batch_size: int, tune_malloc: bool) -> None:
    """Build one contender, then answer ``k`` (run k steps) with the seconds taken."""
    if tune_malloc:
        from .common import keep_freed_memory
        keep_freed_memory()
    try:
        step = build_step(kind, net, batch_size)
        conn.send(("ready", None))
    except Exception as exc:  # e.g. torch not importable
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        k = conn.recv()
        if k is None:
            return
        t0 = time.perf_counter()
        for _ in range(k):
            step()
        conn.send(("ok", time.perf_counter() - t0))


class Contender:
    """A worker process holding one contender; ``run(k)`` trains k steps there."""

    def __init__(self, ctx, kind: str, net: str, batch_size: int, tune_malloc: bool):
        self.kind, self.batch_size = kind, batch_size
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, kind, net, batch_size, tune_malloc),
                                daemon=True)
        self.proc.start()
        self.steps, self.rates, self.error = 1, [], None

    def wait_ready(self) -> bool:
        status, msg = self.conn.recv()
        self.error = msg if status == "error" else None
        return self.error is None

    def run(self, k: int) -> float:
        self.conn.send(k)
        return self.conn.recv()[1]

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=10)


# ---------------------------------------------------------------- self-checks

def check_references() -> None:
    """The naive references must compute what our layers compute (else the race is unfair)."""
    import numpy as np

    from engine.layers import Conv2D

    from .naive import BookCNN, Convolve2dConv

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
        c.run(2)                          # first steps allocate and fill caches
        t = c.run(1)
        if t < seconds / 4:
            t = c.run(5) / 5
        c.steps = max(1, round(seconds / t))
    for _ in range(reps):
        for c in contenders:
            c.rates.append(c.batch_size * c.steps / c.run(c.steps))


def median(c: Contender | None) -> float | None:
    return statistics.median(c.rates) if c and c.rates else None


def spread(c: Contender | None) -> str:
    """Half the min..max range over the median, in percent: how noisy the machine was."""
    if not c or len(c.rates) < 2:
        return ""
    return f"±{50 * (max(c.rates) - min(c.rates)) / statistics.median(c.rates):.0f}%"


def fmt(v, unit=""):
    if v is None:
        return "-"
    return f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}"


def run_config(ctx, args, net: str, bs: int, kinds: list[str]) -> dict[str, Contender]:
    """Start one worker per contender kind, time them interleaved, return the ready ones."""
    cs = [Contender(ctx, k, net, bs, not args.default_malloc) for k in kinds]
    try:
        ready = [c for c in cs if c.wait_ready()]
        measure(ready, args.reps, args.seconds)
    finally:
        for c in cs:
            c.close()
    for c in cs:
        if c.error and c.kind != "torch":
            raise RuntimeError(f"{c.kind} failed: {c.error}")
    print(f"  {net:>12} batch {bs:>3}: " + ", ".join(
        f"{c.kind} {fmt(median(c))} img/s {spread(c)}" if not c.error else f"{c.kind} failed"
        for c in cs), flush=True)
    return {c.kind: c for c in cs}


def load() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def main(args) -> int:
    t_start = time.perf_counter()
    ctx = mp.get_context("spawn")
    use_torch = not args.no_torch
    if not args.no_naive:
        check_references()
    import numpy as np
    print(f"numpy {np.__version__}, {args.threads} threads, {args.reps} interleaved repetitions "
          f"of ~{args.seconds} s per contender, median; one worker process per contender; "
          f"glibc malloc {'as it starts' if args.default_malloc else 'keeping freed memory'}; "
          f"load average {load()} on {os.cpu_count()} CPUs")
    print("training steps (forward + backward + SGD update):")
    rows, torch_error = [], None
    for net in args.nets:
        for bs in args.batch_sizes:
            kinds = ["ours"] + (["torch"] if use_torch else [])
            if not args.no_naive and net in NAIVE:
                kinds += [NAIVE[net]] + NAIVE_EXTRA.get(net, [])
            by = run_config(ctx, args, net, bs, kinds)
            if "torch" in by and by["torch"].error:
                torch_error, use_torch = by.pop("torch").error, False
            naive = by.get(NAIVE.get(net, ""))
            row = {"net": net, "batch": bs, "ours_ips": median(by["ours"]),
                   "torch_ips": median(by.get("torch")), "naive": naive.kind if naive else None,
                   "naive_ips": median(naive), "rates": {k: c.rates for k, c in by.items()}}
            o = row["ours_ips"]
            row["ours_vs_torch"] = o / row["torch_ips"] if row["torch_ips"] else None
            row["ours_vs_naive"] = o / row["naive_ips"] if row["naive_ips"] else None
            row["extra"] = [{"naive": k, "naive_ips": median(by[k]), "ours_vs_naive": o / median(by[k])}
                            for k in NAIVE_EXTRA.get(net, []) if k in by and by[k].rates]
            rows.append(row)
    if torch_error:
        print(f"  (PyTorch reference skipped: {torch_error})")

    conv_rows = []
    conv_nets = [] if args.no_naive else [n for n in args.nets if n in NAIVE]
    if conv_nets:
        print("conv layers alone (forward + backward of the network's Conv2D layers):")
        for net in conv_nets:
            for bs in args.batch_sizes:
                by = run_config(ctx, args, net, bs, ["ours-conv", NAIVE[net] + "-conv"])
                o, n = median(by["ours-conv"]), median(by[NAIVE[net] + "-conv"])
                conv_rows.append({"net": net, "batch": bs, "naive": NAIVE[net], "ours_ips": o,
                                  "naive_ips": n, "ours_vs_naive": o / n,
                                  "rates": {k: c.rates for k, c in by.items()}})

    print()
    head = (f"{'network':<13}{'batch':>6}{'ours img/s':>12}{'torch img/s':>13}{'ours/torch':>12}"
            f"{'naive':>12}{'naive img/s':>13}{'ours/naive':>12}")
    print("training step\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['net']:<13}{r['batch']:>6}{fmt(r['ours_ips']):>12}{fmt(r['torch_ips']):>13}"
              f"{fmt(r['ours_vs_torch'], 'x'):>12}{r['naive'] or '-':>12}"
              f"{fmt(r['naive_ips']):>13}{fmt(r['ours_vs_naive'], 'x'):>12}")
        for e in r["extra"]:
            print(f"{'':<13}{'':>6}{'':>12}{'':>13}{'':>12}{e['naive']:>16}"
                  f"{fmt(e['naive_ips']):>9}{fmt(e['ours_vs_naive'], 'x'):>12}")
    if conv_rows:
        sub = head[:31] + head[56:]
        print("\nconv layers alone\n" + sub + "\n" + "-" * len(sub))
        for r in conv_rows:
            print(f"{r['net']:<13}{r['batch']:>6}{fmt(r['ours_ips']):>12}{r['naive']:>12}"
                  f"{fmt(r['naive_ips']):>13}{fmt(r['ours_vs_naive'], 'x'):>12}")
    print(f"\ntargets: ours/torch >= 1.2x lenet, >= 2x mlp and grokking-cnn; ours/convolve2d >= 50x; "
          f"ours/book-loops >= 4x\n(book-loops: the book's step in float32 like ours; book-loops-f64: "
          f"as the book wrote it, float64)\nload average now {load()}; "
          f"{time.perf_counter() - t_start:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": args.threads, "reps": args.reps, "seconds": args.seconds,
                       "default_malloc": args.default_malloc, "steps": rows,
                       "conv_only": conv_rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    ARGS = parse_args()
    set_threads(ARGS.threads)  # inherited by the spawned workers
    sys.exit(main(ARGS))
