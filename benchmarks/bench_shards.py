"""What shards in two threads buy: one process, variants interleaved, ratios side by side.

    python -m benchmarks.bench_shards                     # lenet, grokking-cnn, mlp at 64 and 128
    python -m benchmarks.bench_shards --nets lenet --batch-sizes 128 --rounds 15

Variants of the same training step (``zero_grad``, ``loss_and_grad``, SGD momentum 0.9) on
the same real MNIST batches:

- ``whole``: the batch as one shard, BLAS with 2 threads (the engine before shards);
- ``shards-1t``: the engine's shards one after the other, BLAS with 1 thread;
- ``shards-2t``: the engine's shards in 2 threads, one BLAS thread each (what the CLI does).

Each variant runs ~0.3 s blocks in turn (A, B, C, A, B, C, ...) for ``--rounds`` rounds; the
median is printed, and each variant's ratio to ``whole``. One process, so all three share the
allocator and caches; the machine's noise hits them alike.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=["lenet", "grokking-cnn", "mlp"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=0.3)
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from engine.datasets import load_dataset
    from engine.optim import SGD
    from engine.runtime import keep_freed_memory

    from .common import engine_model, make_batches

    keep_freed_memory()
    data = load_dataset("mnist")
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds of ~{args.seconds} s "
          f"per variant, median img/s (ratio to whole)")
    for net in args.nets:
        for bs in args.batch_sizes:
            batches = make_batches(data, bs)

            def variant(threads: int, shard: bool, blas: int):
                model = engine_model(net, threads=threads)
                model.shardable = model.shardable and shard
                opt = SGD(model.params, lr=0.01, momentum=0.9)

                def step(x, y):
                    model.zero_grad()
                    model.loss_and_grad(x, y)
                    opt.step()
                return step, blas, len(model.shard_bounds(bs))

            variants = {"whole": variant(1, False, 2), "shards-1t": variant(1, True, 1),
                        "shards-2t": variant(2, True, 2)}
            rates = {k: [] for k in variants}
            for _ in range(args.rounds):
                for name, (step, blas, _) in variants.items():
                    with threadpool_limits(blas, user_api="blas"):
                        for i in range(2):
                            step(*batches[i])
                        t, n = time.perf_counter(), 0
                        while time.perf_counter() - t < args.seconds:
                            step(*batches[n % len(batches)])
                            n += 1
                        rates[name].append(bs * n / (time.perf_counter() - t))
            base = statistics.median(rates["whole"])
            shards = variants["shards-2t"][2]
            print(f"{net:>12} batch {bs:>3} ({shards} shard{'s' if shards > 1 else ''}): " + "  ".join(
                f"{k} {statistics.median(v):,.0f} ({statistics.median(v) / base:.2f}x)"
                for k, v in rates.items()), flush=True)
    print(f"load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
