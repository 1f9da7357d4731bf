"""Run a sweep's trials on this machine: one spawned worker process per trial, at most
``max_parallel`` at once.

Each trial is an ordinary run: the child is the server's own ``server.workers.worker_main``
(same engine, same events, same stop command), so a trial behaves exactly as a run started
from the page. The parent waits on every child's message pipe at once
(``multiprocessing.connection.wait``), hands each engine event to the ``Sweep`` (where Optuna
decides about pruning) and sends ``{"cmd": "stop"}`` to a trial it must stop; the engine's
``Control.stop()`` ends it at the next step boundary. ``stop()`` may be called from any thread
(or a signal handler): no new trial starts, running ones are stopped.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable

from ..workers import WORKER_ENV, exit_reason, worker_main
from .core import Sweep

HEARTBEAT_SECONDS = 1.0
HEARTBEAT_TIMEOUT = 60.0     # a trial silent this long is killed and failed
GRACE_SECONDS = 10.0


class _Running:
    def __init__(self, number: int, proc, events, commands):
        self.number, self.proc, self.events, self.commands = number, proc, events, commands
        self.last = time.monotonic()
        self.error: str | None = None
        self.eof = False


class LocalRunner:
    """Drives one ``Sweep`` to the end with local worker processes.

    ``threads``: training threads per trial (``BACKPROP_THREADS`` of the children; results
    do not depend on it). ``on_run_event(number, event)`` gets every engine event of every
    trial (the server will store them as the trial's run).
    """

    def __init__(self, sweep: Sweep, max_parallel: int | None = None, threads: int | None = None,
                 on_run_event: Callable[[int, dict], None] | None = None):
        self.sweep = sweep
        self.max_parallel = max_parallel or sweep.spec["max_parallel"]
        self.threads = threads
        self.on_run_event = on_run_event
        self.ctx = multiprocessing.get_context("spawn")
        self.running: dict[int, _Running] = {}
        self._stop = threading.Event()
        self._kill = threading.Event()
        self._stopped = False

    def stop(self) -> None:
        """No new trial; running ones stop at their next step (safe from any thread or a
        signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def kill(self) -> None:
        """Stop, and kill the running trials' processes instead of waiting for them."""
        self._stop.set()
        self._kill.set()

    def run(self) -> dict:
        """Run every trial; returns the sweep's summary."""
        env = {**WORKER_ENV, **({"BACKPROP_THREADS": str(self.threads)} if self.threads else {})}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)              # inherited by every spawned child
        try:
            with tempfile.TemporaryDirectory(prefix="backprop-sweep-") as tmp:
                while True:
                    try:
                        self._loop(Path(tmp))
                        break
                    except KeyboardInterrupt:     # no SIGINT handler installed: stop, then kill
                        (self.kill if self._stop.is_set() else self.stop)()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return self.sweep.finish()

    def _loop(self, tmp: Path) -> None:
        while True:
            if self._stop.is_set() and not self._stopped:
                self._stopped = True
                for n in self.sweep.stop():
                    self._send(n, {"cmd": "stop"})
            if self._kill.is_set():
                for r in self.running.values():
                    if r.proc.is_alive():
                        r.proc.kill()
            while not self._stopped and len(self.running) < self.max_parallel:
                t = self.sweep.next_trial()
                if t is None:
                    break
                self._start(t.number, t.config, tmp)
            if not self.running:
                return
            conns = {r.events: r for r in self.running.values()}
            for conn in wait(list(conns), timeout=0.5):
                self._read(conns[conn])
            now = time.monotonic()
            for r in list(self.running.values()):
                if r.eof:
                    self._reap(r)
                elif now - r.last > HEARTBEAT_TIMEOUT and r.proc.is_alive():
                    r.error = f"worker stopped responding (no heartbeat for {now - r.last:.0f} s)"
                    r.proc.kill()

    def _start(self, number: int, config: dict, tmp: Path) -> None:
        ev_read, ev_write = self.ctx.Pipe(duplex=False)
        cmd_read, cmd_write = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=worker_main, name=f"backprop-lab sweep {self.sweep.name} #{number}",
            args=(f"trial-{number}", config, str(tmp / f"trial-{number}.npz"), ev_write,
                  cmd_read, HEARTBEAT_SECONDS, 1e9, GRACE_SECONDS))
        try:
            proc.start()
        finally:
            ev_write.close()       # only the child writes: its death gives us EOF
            cmd_read.close()
        self.running[number] = _Running(number, proc, ev_read, cmd_write)
        self.sweep.started(number)

    def _send(self, number: int, cmd: dict) -> None:
        r = self.running.get(number)
        if r is None:
            return
        try:
            r.commands.send_bytes(json.dumps(cmd).encode())
        except (OSError, ValueError):
            pass

    def _read(self, r: _Running) -> None:
        try:
            batch = json.loads(r.events.recv_bytes())
        except (EOFError, OSError):
            r.eof = True
            return
        except ValueError:
            return
        r.last = time.monotonic()
        for msg in batch:
            kind = msg.get("k")
            if kind == "event":
                e = msg["e"]
                if self.on_run_event:
                    self.on_run_event(r.number, e)
                if self.sweep.on_event(r.number, e) == "stop":
                    self._send(r.number, {"cmd": "stop"})
            elif kind == "error":
                r.error = msg.get("msg")

    def _reap(self, r: _Running) -> None:
        r.proc.join(GRACE_SECONDS)
        if r.proc.exitcode is None:
            r.proc.kill()
            r.proc.join(5)
        for conn in (r.events, r.commands):
            conn.close()
        if self.running.pop(r.number, None) is None:
            return
        code = r.proc.exitcode
        err = r.error or (exit_reason(code) if code else None)
        self.sweep.ended(r.number, err)
