"""Sweep throughput: the same small sweep through the local runner (1 and 2 trials at once)
and through Dask (a ``LocalCluster`` of 2 worker processes), interleaved, in one run.

    python -m benchmarks.bench_sweeps                 # 3 rounds of 8 mlp trials, ~5 minutes
    python -m benchmarks.bench_sweeps --rounds 1 --trials 4 --epochs 1   # quick look

Every trial trains the ``mlp`` preset for ``--epochs`` (3) on ``--train-limit`` (30,000) MNIST
images, a few seconds, with one training thread (``threads=1``) everywhere, so the contenders
differ only in how trials are started and how their events come back. Each round runs the
contenders one after the other (local x1, local x2, dask x2) and the table shows each one's
median over the rounds. The Dask cluster is started once, before the first round, and kept
(as a server keeps it); its start-up time is printed apart. Throughput is trials per hour of
sweep wall time. The load average is printed before and after: the machine is shared.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def spec(trials: int, train_limit: int, parallel: int, epochs: int = 1) -> dict:
    from server.sweep.spec import validate_sweep
    lrs = [round(0.01 + 0.01 * i, 3) for i in range(trials)]
    return validate_sweep({
        "name": f"bench-{parallel}", "method": "grid", "max_parallel": parallel,
        "base": {"preset": "mlp", "overrides": {"epochs": epochs, "train_limit": train_limit,
                                                "test_limit": 2000}},
        "parameters": {"train.lr": {"values": lrs}}})


def one(kind: str, args, client=None) -> tuple[float, list]:
    from server.sweep.core import Sweep
    from server.sweep.dask_runner import DaskRunner
    from server.sweep.runner import LocalRunner
    parallel = 1 if kind == "local x1" else 2
    sweep = Sweep(spec(args.trials, args.train_limit, parallel, args.epochs))
    if kind.startswith("dask"):
        runner = DaskRunner(sweep, max_parallel=2, threads=1, client=client)
    else:
        runner = LocalRunner(sweep, max_parallel=parallel, threads=1)
    t0 = time.perf_counter()
    summary = runner.run()
    wall = time.perf_counter() - t0
    bad = [t for t in summary["trials"] if t["status"] != "completed"]
    if bad:
        raise SystemExit(f"{kind}: trial {bad[0]['number']} {bad[0]['status']}: "
                         f"{bad[0].get('reason')}")
    return wall, [t["train_seconds"] for t in summary["trials"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--train-limit", type=int, default=30000)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    from server.sweep.dask_runner import Connection
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{os.cpu_count()} cores; {args.trials} mlp trials of {args.epochs} epochs on "
          f"{args.train_limit} images, {args.rounds} rounds", flush=True)
    t0 = time.perf_counter()
    conn = Connection("local", n_workers=2)
    print(f"dask LocalCluster (2 worker processes) started in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    kinds = ["local x1", "local x2", "dask x2"]
    walls: dict[str, list] = {k: [] for k in kinds}
    train: dict[str, list] = {k: [] for k in kinds}
    try:
        for r in range(args.rounds):
            for k in kinds:
                wall, secs = one(k, args, conn.client)
                walls[k].append(wall)
                train[k].extend(secs)
                print(f"  round {r + 1} {k:<9} {wall:6.1f} s wall, "
                      f"{3600 * args.trials / wall:6.0f} trials/h; load "
                      f"{os.getloadavg()[0]:.2f}", flush=True)
    finally:
        conn.close()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    med = {k: statistics.median(v) for k, v in walls.items()}
    rate = {k: 3600 * args.trials / med[k] for k in kinds}
    print(f"{'contender':<10} {'wall s':>7} {'trials/h':>9} {'trial train s':>14} "
          f"{'vs local x1':>12} {'vs local x2':>12}")
    for k in kinds:
        print(f"{k:<10} {med[k]:7.1f} {rate[k]:9.0f} {statistics.median(train[k]):14.2f} "
              f"{rate[k] / rate['local x1']:12.2f} {rate[k] / rate['local x2']:12.2f}")
    print(f"\nscaling local x2 / x1: {rate['local x2'] / rate['local x1']:.2f}; "
          f"dask x2 / local x2: {rate['dask x2'] / rate['local x2']:.2f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
