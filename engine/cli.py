"""``backprop-lab train`` and ``backprop-lab presets``: the engine from a terminal."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from . import events as ev
from . import runtime
from .datasets import DatasetError
from .presets import PRESETS, apply_overrides, get_preset
from .spec import SpecError
from .model import Model
from .trainer import Trainer
from .bsde import BSDE_PRESETS, BsdeSolver


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a preset or a config file headless")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=list(PRESETS) + list(BSDE_PRESETS),
                     help="a preset name (see `presets`)")
    src.add_argument("--config", metavar="FILE.json", help="a run config: {model, train, dataset}")
    src.add_argument("--resume", metavar="FILE.npz",
                     help="continue exactly where a --checkpoint left off (its config, weights, "
                          "optimizer state, data order and random streams)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--iterations", type=int)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--test-limit", type=int, help="evaluate on the first N test images")
    p.add_argument("--dataset", help="mnist, fashion-mnist, digits8, or a <name>.npz registered "
                                     "with BACKPROP_DATASETS=<folder>")
    p.add_argument("--data-path", help="a folder holding the dataset's four IDX files "
                                       "(or its <name>.npz)")
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads per training step (default $BACKPROP_THREADS, else 2); "
                        "the results do not depend on it")
    p.add_argument("--checkpoint", metavar="FILE.npz",
                   help="save the final weights and training state here (also on Ctrl-C, "
                        "which stops after the current step); --resume continues from it")
    p.add_argument("--json", action="store_true",
                   help="print every event as one JSON line, then a summary line")
    p.set_defaults(func=cmd_train)


def add_presets_parser(sub) -> None:
    p = sub.add_parser("presets", help="list the presets")
    p.set_defaults(func=cmd_presets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backprop-lab",
                                     description="Watch a from-scratch NumPy network learn.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_presets_parser(sub)
    return parser


def cmd_presets(args) -> int:
    width = max(len(n) for n in [*PRESETS, *BSDE_PRESETS])
    for name, p in PRESETS.items():
        print(f"{name:<{width}}  {p['title']}: target {p['target']:.1%} test accuracy")
    for name, p in BSDE_PRESETS.items():
        t = p["target"]
        print(f"{name:<{width}}  {p['title']}: target u0 {t['u0']} within {t['band']:.1%}, "
              f"validation loss below {t['valid_loss_below']:g}")
    return 0


def _bar(step: int, total: int, elapsed: float, loss: float, ips: float) -> str:
    frac = step / max(total, 1)
    eta = elapsed / frac - elapsed if frac > 0 else 0.0
    filled = int(frac * 30)
    return (f"\r[{'#' * filled}{'.' * (30 - filled)}] {step}/{total} "
            f"loss {loss:.4f}  {ips:,.0f} img/s  ETA {eta:5.0f}s ")


def cmd_bsde(args, config: dict) -> int:
    """A Deep BSDE config ("task": "bsde"): progress on stderr, then a summary with u0."""
    if args.iterations is not None:
        config = {**config, "train": {**config.get("train", {}), "iterations": args.iterations}}
    if args.seed is not None:
        config = {**config, "train": {**config.get("train", {}), "seed": args.seed}}
    from .trainer import Control
    control = Control()
    try:
        solver = BsdeSolver(config, control=control)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = solver.config["train"]["iterations"]
    last = [0.0]

    def emit(event) -> None:
        e = event.to_json_dict()
        if args.json:
            sys.stdout.write(json.dumps(e, allow_nan=False) + "\n")
        elif e["type"] == "progress" and (time.perf_counter() - last[0] > 0.2 or e["step"] == total):
            last[0] = time.perf_counter()
            frac = e["step"] / total
            sys.stderr.write(f"\r[{'#' * int(frac * 30)}{'.' * (30 - int(frac * 30))}] {e['step']}/{total} "
                             f"loss {e['loss']:.4g}  u0 {e['u0']:.6f} ")
        elif e["type"] == "bsde_eval" and e["step"]:
            sys.stderr.write("\n")
            rel = "" if e["relative_error"] is None else f"  relative error {e['relative_error']:.2%}"
            print(f"step {e['step']}: u0 {e['u0']:.6f}  valid loss {e['valid_loss']:.4g} "
                  f"(z = 0: {e['z0_loss']:.4g}){rel}", file=sys.stderr)
    solver.emit = emit
    previous = signal.signal(signal.SIGINT, lambda *_: control.stop())
    try:
        done = solver.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    summary = {"summary": True, **{k: done[k] for k in ("status", "step", "u0", "reference",
                                                        "relative_error", "valid_loss", "z0_loss")},
               "train_seconds": round(done["train_seconds"], 3)}
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        ref = "" if done["reference"] is None else (f" (reference {done['reference']}, relative "
                                                    f"error {done['relative_error']:.2%})")
        print(f"{done['status']}: u0 {done['u0']:.6f}{ref}, valid loss {done['valid_loss']:.4g} (z = 0: {done['z0_loss']:.4g}), "
              f"{done['train_seconds']:.1f} s of training", file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    if args.preset in BSDE_PRESETS:
        return cmd_bsde(args, get_preset(args.preset))
    resume_meta = None
    if args.resume:
        try:
            spec, _ = Model.read_checkpoint(args.resume)
            resume_meta = spec["meta"]
            config = resume_meta["config"]
            resume_meta["resume"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"error: --resume {args.resume}: not a checkpoint with training state "
                  f"({type(e).__name__}: {e})", file=sys.stderr)
            return 2
        if any(v is not None for v in (args.lr, args.batch_size, args.seed, args.train_limit,
                                       args.test_limit, args.dataset, args.data_path, args.dtype)):
            print("error: --resume continues the run as it was; only --epochs or --iterations "
                  "may be given (to train longer)", file=sys.stderr)
            return 2
    elif args.preset:
        config = get_preset(args.preset)
    else:
        try:
            with open(args.config, encoding="utf-8") as fh:
                config = json.load(fh)
        except (OSError, ValueError) as e:
            print(f"error: cannot read --config {args.config}: {e}", file=sys.stderr)
            return 2
        if isinstance(config, dict) and config.get("task") == "bsde":
            return cmd_bsde(args, config)
    options = {
        "epochs": args.epochs, "iterations": args.iterations, "lr": args.lr,
        "batch_size": args.batch_size, "seed": args.seed, "train_limit": args.train_limit,
        "test_limit": args.test_limit, "dataset": args.dataset, "path": args.data_path,
        "dtype": args.dtype}
    config = apply_overrides(config, {k: v for k, v in options.items() if v is not None})
    out = sys.stdout
    state = {"t0": time.perf_counter(), "last": 0.0, "total": 0}

    def emit(event: ev.Event) -> None:
        if args.json:
            out.write(json.dumps(event.to_json_dict(), allow_nan=False) + "\n")
            return
        if isinstance(event, ev.RunStarted):
            state["total"] = event.total_steps
            s = event.summary
            print(f"{config.get('name', 'run')}: {s['params']:,} parameters, "
                  f"{event.total_steps:,} steps, {event.train_size:,} training images", file=sys.stderr)
        elif isinstance(event, ev.Progress):
            now = time.perf_counter()
            if now - state["last"] > 0.2 or event.step == state["total"]:
                state["last"] = now
                sys.stderr.write(_bar(event.step, state["total"], event.elapsed, event.loss,
                                      event.images_per_sec))
                sys.stderr.flush()
        elif isinstance(event, ev.Eval):
            sys.stderr.write("\n")
            tr = "" if event.train_accuracy is None else f"train acc {event.train_accuracy:.2%}  "
            print(f"epoch {event.epoch} step {event.step}: {tr}test loss {event.test_loss:.4f}  "
                  f"test acc {event.test_accuracy:.2%}", file=sys.stderr)
        elif isinstance(event, ev.Diverged):
            sys.stderr.write("\n")
            print(f"diverged: {event.reason}: {event.where}. Try: {event.suggestion}", file=sys.stderr)
        elif isinstance(event, ev.HparamsChanged):
            print(f"\nstep {event.step}: {event.changes}", file=sys.stderr)

    if args.threads is not None and args.threads < 1:
        print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    threads = args.threads or runtime.default_threads()
    runtime.set_blas_threads(threads)   # shards of a conv net use one BLAS thread each
    runtime.keep_freed_memory()
    try:
        trainer = Trainer(config, emit=emit, threads=threads)
    except (SpecError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.resume:
        try:
            trainer.load_checkpoint(args.resume)
        except (OSError, ValueError, KeyError) as e:
            print(f"error: --resume {args.resume}: {e}", file=sys.stderr)
            return 2
    control = trainer.control
    try:   # Ctrl-C stops between steps, so the checkpoint holds a consistent state
        previous = signal.signal(signal.SIGINT, lambda *_: control.stop())
    except ValueError:   # not the main thread (called from a notebook's worker thread)
        previous = None
    try:
        done = trainer.run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if args.checkpoint:
        trainer.save_checkpoint(args.checkpoint)
    summary = {"summary": True, "status": done["status"], "steps": done["step"],
               "test_accuracy": done["test_accuracy"], "test_loss": done["test_loss"],
               "train_seconds": round(done["train_seconds"], 3),
               "images_per_second": round(done["images_per_second"], 1),
               "wall_seconds": round(done["wall_seconds"], 3)}
    if args.json:
        out.write(json.dumps(ev.jsonable(summary), allow_nan=False) + "\n")
    else:
        acc = done["test_accuracy"]
        print(f"{done['status']}: test accuracy {acc:.2%}" if acc is not None else done["status"],
              f"after {done['step']:,} steps; {done['train_seconds']:.1f} s of training at "
              f"{done['images_per_second']:,.0f} images/s", file=sys.stderr)
    return 0 if done["status"] in ("completed", "stopped") else 3


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    os.environ.setdefault(runtime.THREADS_ENV, "2")
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    return args.func(args)
