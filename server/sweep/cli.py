"""``backprop-lab sweep`` and ``backprop-lab sweeps``: sweeps from a terminal, on this machine
or on a Dask cluster (``--dask``)."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

from .presets import SWEEP_PRESETS, get_sweep_preset, trial_reference


def add_sweep_parsers(sub) -> None:
    p = sub.add_parser("sweep", help="run a sweep (many runs of one design) here or on Dask",
                       description="Run a sweep: a base design, a search space, a method "
                                   "(grid, random, tpe), a budget and an objective. Trials run "
                                   "in worker processes on this machine, or on a Dask "
                                   "cluster with --dask.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=list(SWEEP_PRESETS), help="a sweep preset (see `sweeps`)")
    src.add_argument("--config", metavar="SWEEP.json", help="a sweep spec (see README, Sweeps)")
    p.add_argument("--max-parallel", type=int, metavar="N",
                   help="trials run at once (default: the spec's max_parallel, else 1)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override a base config field for every trial, e.g. "
                        "dataset.train_limit=2000 (VALUE is JSON, else text); repeatable")
    p.add_argument("--threads", type=int, metavar="N",
                   help="training threads per trial (default: cores / max-parallel)")
    p.add_argument("--dask", metavar="ADDR|local",
                   help="run the trials on a Dask cluster: the scheduler's tcp://HOST:PORT, or "
                        "'local' for an in-process LocalCluster of --max-parallel worker "
                        "processes (see README, Growing: Dask)")
    p.add_argument("--progress-rate", type=float, metavar="N",
                   help="with --dask: each trial sends at most N progress events a second "
                        "(evaluations and its end always; default $BACKPROP_DASK_PROGRESS_RATE, "
                        "else 0: every one)")
    p.add_argument("--json", action="store_true",
                   help="print one event per line, then a summary line")
    p.set_defaults(func=cmd_sweep)
    q = sub.add_parser("sweeps", help="list the sweep presets")
    q.set_defaults(func=cmd_sweeps)


def cmd_sweeps(args) -> int:
    width = max(len(n) for n in SWEEP_PRESETS)
    for name, p in SWEEP_PRESETS.items():
        print(f"{name:<{width}}  {p['title']}")
    return 0


def _errors(errors: list[dict]) -> None:
    for e in errors:
        loc = ".".join(str(x) for x in e["loc"]) or "(spec)"
        print(f"error: {loc}: {e['msg']}", file=sys.stderr)


def _apply_sets(spec: dict, sets: list[str]) -> dict:
    """``--set PATH=VALUE`` into the base of the sweep (or of each sweep of a series)."""
    from engine.spec import SpecError

    from .spec import set_path
    parts = spec["series"] if isinstance(spec, dict) and isinstance(spec.get("series"), list) \
        else [spec]
    errors = []
    for item in sets:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            errors.append({"loc": ["--set"], "msg": f"--set needs PATH=VALUE, got {item!r}"})
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        for part in parts:
            base = part.get("base") if isinstance(part, dict) else None
            if not isinstance(base, dict):
                continue
            if "preset" in base:
                over = base.setdefault("overrides", {})
                if isinstance(over, dict):
                    over[path] = value
            else:
                try:
                    part["base"] = set_path(base, path, value)
                except KeyError as e:
                    errors.append({"loc": ["--set", path], "msg": e.args[0]})
    if errors:
        raise SpecError(errors)
    return spec


def _fmt(v, spec=".4f") -> str:
    return "-" if v is None else format(v, spec)


def _params(params: dict) -> str:
    def show(v):
        if isinstance(v, dict):
            return v.get("type", json.dumps(v))
        return format(v, ".4g") if isinstance(v, float) else str(v)
    return " ".join(f"{k}={show(v)}" for k, v in params.items())


def _line(row: dict, metric: str) -> str:
    note = ""
    if row["status"] == "pruned" and row.get("pruned_reason"):
        note = "  (" + row["pruned_reason"]["message"] + ")"
    elif row.get("reason") and row["status"] != "completed":
        note = "  (" + row["reason"] + ")"
    secs = "-" if row["train_seconds"] is None else f"{row['train_seconds']:.2f}s"
    acc = "" if metric == "test_accuracy" else f"test acc {_fmt(row['test_accuracy'])}  "
    return (f"  #{row['number']:<3} {row['status']:<9} {metric} {_fmt(row['objective'])}  "
            f"{acc}loss {_fmt(row['final_loss'])}  {secs:>7}  {_params(row['params'])}{note}")


def _table(summary: dict) -> list[str]:
    """The ranked table; trials with a ``reference`` (a preset's published numbers) get the
    reference's accuracy, loss and seconds beside ours."""
    sw = summary["sweep"]
    metric = sw["objective"]["metric"]
    report = any(t.get("reference") for t in summary["trials"])
    acc = metric != "test_accuracy"
    rows = [("rank", "trial", "status", metric) + (("test acc",) if acc else ())
            + (("report acc",) if report else ()) + ("loss",)
            + (("report loss",) if report else ()) + ("train s",)
            + (("report s",) if report else ()) + ("parameters",)]
    sign = -1 if sw["objective"]["direction"] == "maximize" else 1
    order = {"completed": 0, "pruned": 1, "stopped": 2, "diverged": 3, "failed": 4}

    def key(t):
        v = t["objective"]
        return (order.get(t["status"], 5), v is None, sign * v if v is not None else 0, t["number"])
    for i, t in enumerate(sorted(summary["trials"], key=key), 1):
        ref = t.get("reference") or {}
        row = (str(i), f"#{t['number']}", t["status"], _fmt(t["objective"])) \
            + ((_fmt(t["test_accuracy"]),) if acc else ()) \
            + ((_fmt(ref.get("test_accuracy"), ".3f"),) if report else ()) \
            + (_fmt(t["final_loss"]),) + ((_fmt(ref.get("loss"), ".3f"),) if report else ()) \
            + (_fmt(t["train_seconds"], ".2f"),) \
            + ((_fmt(ref.get("seconds"), ".1f"),) if report else ()) + (_params(t["params"]),)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _add_references(summary: dict, preset: str | None) -> dict:
    """Each trial of a preset with published numbers gets them as ``reference``."""
    for t in summary["trials"]:
        ref = trial_reference(preset, summary["sweep"]["name"], t["params"])
        if ref is not None:
            t["reference"] = ref
    return summary


def cmd_sweep(args) -> int:
    from engine.spec import SpecError

    from .spec import validate_series
    if args.preset:
        raw = get_sweep_preset(args.preset)
    else:
        try:
            with open(args.config, encoding="utf-8") as fh:
                raw = json.load(fh)
        except (OSError, ValueError) as e:
            print(f"error: cannot read --config {args.config}: {e}", file=sys.stderr)
            return 2
    if args.max_parallel is not None and args.max_parallel < 1:
        print(f"error: --max-parallel must be at least 1, got {args.max_parallel}", file=sys.stderr)
        return 2
    if args.progress_rate is None:       # the server's setting, from the environment
        env = os.environ.get("BACKPROP_DASK_PROGRESS_RATE", "").strip()
        try:
            args.progress_rate = float(env) if env else 0.0
        except ValueError:
            args.progress_rate = env
    if not isinstance(args.progress_rate, float) or not args.progress_rate >= 0:
        print(f"error: --progress-rate (or BACKPROP_DASK_PROGRESS_RATE) must be a number of 0 "
              f"or more, got {args.progress_rate!r}", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    dask_address = None
    if args.dask is not None:
        from .dask_runner import check_address
        try:
            dask_address = check_address(args.dask)
        except ValueError as e:
            print(f"error: --dask: {e}", file=sys.stderr)
            return 2
    try:
        spec = validate_series(_apply_sets(raw, args.set))
    except SpecError as e:
        _errors(e.errors)
        return 2
    conn = None
    if dask_address is not None:
        from .dask_runner import Connection, DaskError
        try:
            conn = Connection(dask_address, n_workers=max(
                args.max_parallel or part["max_parallel"] for part in spec["series"]))
        except DaskError as e:
            print(f"error: --dask: {e}", file=sys.stderr)
            return 2
    try:
        return _run_series(args, spec, conn)
    finally:
        if conn is not None:
            conn.close()


def _run_series(args, spec: dict, conn) -> int:
    from engine.events import jsonable

    from .core import Sweep
    from .runner import LocalRunner
    out = sys.stdout

    def emit(event: dict) -> None:
        if args.json:
            out.write(json.dumps(jsonable(event), allow_nan=False) + "\n")
            out.flush()
            return
        kind = event["type"]
        if kind == "sweep_started":
            s = event["sweep"]
            es = s["early_stopping"]
            print(f"sweep {s['name']}: {s['method']}, {s['max_trials']} trials, "
                  f"{parallel(s)} at a time; objective {s['objective']['metric']} "
                  f"({s['objective']['direction']})"
                  + (f"; early stopping: {es['type']}" if es else ""), flush=True)
        elif kind == "trial_finished":
            metric = current["metric"]
            print(_line(event, metric), flush=True)

    def parallel(s: dict) -> int:
        return args.max_parallel or s["max_parallel"]

    cores = os.cpu_count() or 1
    summaries = []
    t0 = time.perf_counter()
    interrupted = False
    current: dict = {}
    for part in spec["series"]:
        n = part["max_parallel"] = parallel(part)
        threads = args.threads or max(1, cores // n)
        current["metric"] = part["objective"]["metric"]
        sweep = Sweep(part, emit=emit)
        if conn is None:
            runner = LocalRunner(sweep, max_parallel=n, threads=threads)
        else:
            from .dask_runner import DaskRunner
            # on a remote cluster a trial's threads are its worker's business unless given
            runner = DaskRunner(sweep, max_parallel=n, client=conn.client,
                                threads=threads if conn.cluster is not None else args.threads,
                                progress_rate=args.progress_rate)

        def interrupt(signum, frame, runner=runner) -> None:
            if runner.stopping:
                runner.kill()
            else:
                print("stopping the sweep (Ctrl-C again to kill its trials)", file=sys.stderr)
                runner.stop()
        previous = signal.signal(signal.SIGINT, interrupt)
        try:
            summary = runner.run()
        finally:
            signal.signal(signal.SIGINT, previous)
        summaries.append(_add_references(summary, args.preset))
        if not args.json:
            print("\n".join(_table(summary)) + "\n", flush=True)
            best = summary["best"]
            if best:
                print(f"best: #{best['number']} {_params(best['params'])}: "
                      f"{current['metric']} {best['objective']:.4f}; "
                      f"{summary['wall_seconds']:.1f} s wall\n", flush=True)
        if summary["sweep"]["status"] == "stopped":
            interrupted = True
            break
    wall = round(time.perf_counter() - t0, 3)
    if args.json:
        final = summaries[0] if len(spec["series"]) == 1 else \
            {"series": spec["name"], "sweeps": summaries, "wall_seconds": wall}
        out.write(json.dumps(jsonable(final), allow_nan=False) + "\n")
    elif len(spec["series"]) > 1:
        print(f"{spec['name']}: {len(summaries)} sweeps, "
              f"{sum(len(s['trials']) for s in summaries)} trials in {wall:.1f} s wall")
    return 130 if interrupted else 0
