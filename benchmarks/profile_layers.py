"""Where a training step's time goes: per-layer forward and backward times.

    python -m benchmarks.profile_layers                       # lenet, batch 64
    python -m benchmarks.profile_layers --net grokking-cnn --batch-size 128

Runs the model's forward / loss / backward / SGD-momentum step layer by layer on real MNIST
batches (float32, 2 threads) and reports the median time of each piece over ``--steps``
steps, with the dtype of every layer's output and input gradient (none may be float64).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--net", default="lenet", choices=("lenet", "mlp", "grokking-cnn"))
ap.add_argument("--batch-size", type=int, default=64)
ap.add_argument("--steps", type=int, default=300)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--cpu-time", action="store_true",
                help="time with process CPU time instead of wall time (steadier on a busy machine)")
ap.add_argument("--keep-freed-memory", action="store_true",
                help="tune glibc malloc first (see benchmarks/common.py), to leave page faults out")
ARGS = ap.parse_args() if __name__ == "__main__" else ap.parse_args([])
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)  # before numpy loads its BLAS

import numpy as np  # noqa: E402

from engine.datasets import load_dataset  # noqa: E402
from engine.optim import SGD  # noqa: E402

from .common import engine_model, keep_freed_memory, make_batches  # noqa: E402

CLOCK = time.perf_counter


def main(args) -> int:
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter
    if args.keep_freed_memory and not keep_freed_memory():
        print("(glibc mallopt not available; page faults included)")
    model = engine_model(args.net)
    opt = SGD(model.params, lr=0.01, momentum=0.9)
    batches = make_batches(load_dataset("mnist"), args.batch_size)
    layers = model.layers
    warmup = 10
    fwd = np.zeros((args.steps, len(layers)))
    bwd = np.zeros((args.steps, len(layers)))
    misc = np.zeros((args.steps, 3))  # zero_grad, loss, optimizer step
    dtypes = [["-", "-"] for _ in layers]
    for s in range(-warmup, args.steps):
        x, y = batches[s % len(batches)]
        r = max(s, 0)  # warm-up rows are overwritten by step 0
        t = [CLOCK()]
        model.zero_grad()
        t.append(CLOCK())
        misc[r, 0] = t[-1] - t[-2]
        for i, layer in enumerate(layers):
            x = layer.forward(x, True)
            t.append(CLOCK())
            fwd[r, i] = t[-1] - t[-2]
            dtypes[i][0] = str(x.dtype)
        _, g = model.loss_fn(x, y)
        t.append(CLOCK())
        misc[r, 1] = t[-1] - t[-2]
        for i in range(len(layers) - 1, -1, -1):
            g = layers[i].backward(g)
            t.append(CLOCK())
            bwd[r, i] = t[-1] - t[-2]
            if g is None:
                break
            dtypes[i][1] = str(g.dtype)
        opt.step()
        t.append(CLOCK())
        misc[r, 2] = t[-1] - t[-2]

    med_f, med_b, med_m = (np.median(a, axis=0) * 1e3 for a in (fwd, bwd, misc))
    total = med_f.sum() + med_b.sum() + med_m.sum()
    print(f"{args.net}, batch {args.batch_size}, {args.threads} threads, median of {args.steps} "
          f"steps: {total:.2f} ms/step = {args.batch_size / total * 1e3:,.0f} img/s "
          f"(sum of per-piece medians)")
    print(f"{'#':>2} {'layer':<44}{'fwd ms':>8}{'bwd ms':>8}{'share':>7}  out/dx dtype")
    for i, layer in enumerate(layers):
        share = 100 * (med_f[i] + med_b[i]) / total
        print(f"{i:>2} {repr(layer)[:44]:<44}{med_f[i]:>8.3f}{med_b[i]:>8.3f}{share:>6.1f}%  "
              f"{dtypes[i][0]}/{dtypes[i][1]}")
    for name, t in zip(("zero_grad", "loss", "optimizer step"), med_m):
        print(f"{'':>2} {name:<44}{t:>8.3f}{'':>8}{100 * t / total:>6.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
