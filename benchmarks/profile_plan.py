"""Where a training step's time goes, per step of the model's execution plan.

    python -m benchmarks.profile_plan                       # lenet, batch 64, one thread
    python -m benchmarks.profile_plan --net grokking-cnn --batch-size 128

Times each entry of ``Model.plan`` (layers in the order they run, an activation/max-pool
pair as one entry) forward and backward, the loss and the SGD step, over ``--steps`` real
training steps on one thread with the batch as one shard, and prints the medians (the first
50 steps are warm-up). ``profile_layers.py`` times the layers one by one instead.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="lenet")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args(argv)

    from engine.datasets import load_dataset
    from engine.optim import SGD
    from engine.runtime import keep_freed_memory

    from .common import engine_model, make_batches

    keep_freed_memory()
    batches = make_batches(load_dataset("mnist"), args.batch_size)
    model = engine_model(args.net)
    model.shardable = False
    opt = SGD(model.params, lr=0.01, momentum=0.9)
    plan, times = model.plan, {}

    def tick(key, t0):
        times.setdefault(key, []).append(time.perf_counter() - t0)

    for it in range(args.steps + 50):
        x, y = batches[it % len(batches)]
        model.zero_grad()
        h = x
        for i, step in enumerate(plan):
            t0 = time.perf_counter()
            h = step.forward(h, True)
            tick(f"forward  {i} {type(step).__name__.lstrip('_')}", t0)
        t0 = time.perf_counter()
        _, g = model.loss_fn(h, y)
        tick("loss", t0)
        for i in reversed(range(len(plan))):
            t0 = time.perf_counter()
            g = plan[i].backward(g)
            tick(f"backward {i} {type(plan[i]).__name__.lstrip('_')}", t0)
            if g is None:
                break
        t0 = time.perf_counter()
        opt.step()
        tick("sgd step", t0)
    total = 0.0
    print(f"{args.net}, batch {args.batch_size}, one thread, median of {args.steps} steps "
          f"(load average {os.getloadavg()[0]:.2f})")
    for key, v in times.items():
        med = statistics.median(v[50:]) * 1e3
        total += med
        print(f"  {key:<28} {med:7.3f} ms")
    print(f"  {'sum':<28} {total:7.3f} ms = {args.batch_size / total * 1e3:,.0f} img/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
