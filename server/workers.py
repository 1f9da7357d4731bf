"""One worker process per run (start method ``spawn``), and the child's main function.

The parent (the server) talks to a child over two one-way pipes:

* commands, parent -> child: JSON ``{"cmd": "stop" | "pause" | "resume" | "shutdown"}`` or
  ``{"cmd": "set", "changes": {"lr": ...}}``; a thread in the child forwards them into
  ``engine.Control``. EOF (the server died) counts as ``shutdown``.
* messages, child -> parent: JSON lists of ``{"k": "event", "e": event.to_json_dict(),
  "ts": unix time of emit}``, ``{"k": "hb"}`` (heartbeat), ``{"k": "checkpoint", "step"}``,
  ``{"k": "error", "msg"}``, ``{"k": "warning", "msg"}`` (a live change the engine refused;
  the server logs it) and ``{"k": "exit", "reason", "step"}``. A sender thread in the child
  writes them, so the training loop never blocks on the pipe. EOF means the child is gone.

This module imports nothing heavy at the top: a spawned child imports it before the
engine, after the parent has set ``OPENBLAS_NUM_THREADS=1`` in the environment it inherits.
"""
from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger("backprop_lab.workers")

#: the environment every worker gets: one BLAS thread each, so N workers use N cores. A
#: conv net's run still computes its batch's shards in parallel threads when
#: ``BACKPROP_THREADS`` (inherited; the command line sets 2) allows it (engine/runtime.py).
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---------------------------------------------------------------------------------- child side


class _Shutdown(Exception):
    """Raised from ``emit`` to leave the training loop at a step boundary."""


def _save_checkpoint(trainer, path: Path) -> bool:
    """Atomically write the trainer's checkpoint, unless a weight is no longer finite
    (then the last finite checkpoint stays, as promised for diverged runs)."""
    if not trainer.model.all_finite():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    trainer.save_checkpoint(tmp)
    _replace_keeping_previous(tmp, path)
    return True


def _replace_keeping_previous(tmp: Path, path: Path) -> None:
    """``tmp`` becomes ``path``; the file it replaces stays as ``<name>.prev.npz``: the server
    may not have heard of the new one yet (a worker killed right after writing it), and a
    run continues from the checkpoint the server acknowledged (``weights_step``)."""
    if path.exists():
        link = path.with_name(path.stem + ".prev.tmp")
        try:
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, path.with_name(path.stem + ".prev.npz"))
        except OSError:
            pass
    os.replace(tmp, path)


def worker_main(run_id: str, config: dict, checkpoint: str, events_conn, commands_conn,
                heartbeat_seconds: float, checkpoint_seconds: float, grace_seconds: float,
                start: dict | None = None, history_budget: int = 0) -> None:
    """Train one run. Runs in the spawned child; returns when the run ends.

    ``start``: ``{"mode": "continue" | "fork", "from": path}`` to begin from a checkpoint
    (server/checkpoints.py). ``history_budget``: bytes of checkpoints kept through time (one
    per evaluation, thinned; 0 keeps none)."""
    for k, v in WORKER_ENV.items():      # already inherited; kept for `python -c` use
        os.environ.setdefault(k, v)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the server, which stops us
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    done = threading.Event()
    shutdown = threading.Event()

    def sender() -> None:
        while True:
            item = outbox.get()
            batch = [item]
            while len(batch) < 256:
                try:
                    batch.append(outbox.get_nowait())
                except queue.Empty:
                    break
            last = batch[-1] is None
            batch = [b for b in batch if b is not None]
            try:
                if batch:
                    events_conn.send_bytes(json.dumps(batch, allow_nan=False).encode())
            except (OSError, ValueError):
                shutdown.set()      # the server is gone
                return
            if last:
                return

    send_thread = threading.Thread(target=sender, name="sender", daemon=True)
    send_thread.start()

    from engine import Control, make_trainer   # after the environment is set
    from engine.runtime import keep_freed_memory
    keep_freed_memory()    # no page-fault churn on each step's fresh arrays
    control = Control()

    def commands() -> None:
        while True:
            try:
                cmd = json.loads(commands_conn.recv_bytes())
            except (EOFError, OSError, ValueError):
                cmd = {"cmd": "shutdown"}
            kind = cmd.get("cmd")
            if kind == "shutdown":
                shutdown.set()
                control.resume()      # wakes a paused loop so it reaches emit and leaves
                return
            if kind == "stop":
                control.stop()
            elif kind == "pause":
                control.pause()
            elif kind == "resume":
                control.resume()
            elif kind == "tempo":
                try:
                    control.set_tempo(cmd.get("steps_per_second"))
                except (TypeError, ValueError) as e:
                    outbox.put({"k": "warning", "msg": str(e)})
            elif kind == "step":
                try:
                    control.step(cmd.get("steps", 1))
                except (TypeError, ValueError) as e:
                    outbox.put({"k": "warning", "msg": str(e)})
            elif kind == "set":
                try:
                    control.set_hparams(**cmd.get("changes", {}))
                except (TypeError, ValueError) as e:
                    outbox.put({"k": "warning", "msg": str(e)})

    def heartbeat() -> None:
        deadline = None
        while not done.wait(heartbeat_seconds):
            outbox.put({"k": "hb"})
            if shutdown.is_set():
                deadline = deadline or time.monotonic() + grace_seconds + 2
                if time.monotonic() > deadline:   # stuck in a long step: do not linger
                    os._exit(3)

    threading.Thread(target=commands, name="commands", daemon=True).start()
    threading.Thread(target=heartbeat, name="heartbeat", daemon=True).start()
    path = Path(checkpoint)
    try:
        trainer = make_trainer(config, control=control)
        if start:
            trainer.load_checkpoint(start["from"], fork=start["mode"] == "fork")
    except Exception as e:  # noqa: BLE001 - reported to the server as the reason
        what = "continue" if start and start["mode"] == "continue" else "start training"
        outbox.put({"k": "error", "msg": f"could not {what}: {e}"})
        _finish(outbox, send_thread, done)
        return
    last_ckpt = time.monotonic()
    best = {"acc": None, "step": None}

    def keep_history(step: int, acc) -> None:
        """The state after ``step`` (an evaluation), kept through time and as the latest."""
        from .checkpoints import path_for, thin
        if acc is not None and (best["acc"] is None or acc > best["acc"]):
            best["acc"], best["step"] = acc, step
        kept = path_for(path.parent, step)
        try:
            if _save_checkpoint(trainer, kept):
                tmp = path.with_name(path.name + ".tmp")
                shutil.copyfile(kept, tmp)
                _replace_keeping_previous(tmp, path)
                outbox.put({"k": "checkpoint", "step": step})
            thin(path.parent, history_budget, best["step"])
        except OSError as e:          # disk full: keep training, say so
            outbox.put({"k": "warning", "msg": f"checkpoint at step {step} not kept: {e}"})

    def emit(event) -> None:
        nonlocal last_ckpt
        if shutdown.is_set():
            raise _Shutdown
        if event.type == "run_finished":   # final weights on disk before anyone hears "done"
            if _save_checkpoint(trainer, path):
                outbox.put({"k": "checkpoint", "step": trainer.step})
        outbox.put({"k": "event", "e": event.to_json_dict(), "ts": time.time()})
        if event.type == "eval" and history_budget > 0:
            last_ckpt = time.monotonic()
            keep_history(event.step, event.test_accuracy)
        elif event.type == "bsde_eval" and history_budget > 0 and event.step:
            last_ckpt = time.monotonic()       # best = the lowest validation loss
            keep_history(event.step, None if event.valid_loss is None else -event.valid_loss)
        if event.type == "progress" and time.monotonic() - last_ckpt >= checkpoint_seconds:
            last_ckpt = time.monotonic()
            if _save_checkpoint(trainer, path):
                outbox.put({"k": "checkpoint", "step": trainer.step})

    trainer.emit = emit
    try:
        trainer.run()
    except _Shutdown:
        if _save_checkpoint(trainer, path):
            outbox.put({"k": "checkpoint", "step": trainer.step})
        outbox.put({"k": "exit", "reason": "shutdown", "step": trainer.step})
    except Exception as e:  # noqa: BLE001
        outbox.put({"k": "error", "msg": f"training failed at step {trainer.step}: "
                                         f"{type(e).__name__}: {e}"})
    _finish(outbox, send_thread, done)


def _finish(outbox, send_thread, done) -> None:
    done.set()
    outbox.put(None)
    send_thread.join(timeout=10)


# ---------------------------------------------------------------------------------- parent side


@dataclass
class WorkerHandle:
    run_id: str
    process: multiprocessing.process.BaseProcess
    commands: object                      # parent's end of the command pipe
    events: object                        # parent's end of the message pipe
    started: float = field(default_factory=time.monotonic)
    last_heartbeat: float = field(default_factory=time.monotonic)
    kill_reason: str | None = None        # set when the server killed it
    shutting_down: bool = False
    eof: bool = False


def exit_reason(code: int | None) -> str:
    if code is None:
        return "worker did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker died (exit code {code}: killed by {name})"
    return f"worker died (exit code {code})"


class WorkerPool:
    """Starts, commands, watches and stops worker processes. Lives on the event loop.

    ``on_messages(run_id, list)`` gets each batch from a child; ``on_exit(handle, exitcode)``
    is called once per child after it has exited (both on the loop's thread).
    """

    def __init__(self, max_workers: int, heartbeat_seconds: float, heartbeat_timeout: float,
                 checkpoint_seconds: float, grace_seconds: float,
                 on_messages: Callable[[str, list], None],
                 on_exit: Callable[[WorkerHandle, int | None], None]):
        self.max_workers = max_workers
        self.heartbeat_seconds = heartbeat_seconds
        self.heartbeat_timeout = heartbeat_timeout
        self.checkpoint_seconds = checkpoint_seconds
        self.grace_seconds = grace_seconds
        self.on_messages = on_messages
        self.on_exit = on_exit
        self.handles: dict[str, WorkerHandle] = {}
        self.ctx = multiprocessing.get_context("spawn")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._monitor: asyncio.Task | None = None
        self._exit_tasks: set[asyncio.Task] = set()

    def open(self) -> None:
        """Called from the app's lifespan: never at import."""
        self.loop = asyncio.get_running_loop()
        os.environ.update(WORKER_ENV)      # inherited by every spawned child
        self._monitor = self.loop.create_task(self._watch())

    @property
    def free_slots(self) -> int:
        return self.max_workers - len(self.handles)

    def start(self, run_id: str, config: dict, checkpoint: Path, start: dict | None = None,
              history_budget: int = 0) -> WorkerHandle:
        ev_read, ev_write = self.ctx.Pipe(duplex=False)
        cmd_read, cmd_write = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=worker_main, name=f"backprop-lab worker {run_id}", daemon=False,
            args=(run_id, config, str(checkpoint), ev_write, cmd_read, self.heartbeat_seconds,
                  self.checkpoint_seconds, self.grace_seconds),
            kwargs={"start": start, "history_budget": history_budget})
        try:
            proc.start()
        finally:
            ev_write.close()     # only the child writes: its death gives us EOF
            cmd_read.close()
        h = WorkerHandle(run_id, proc, cmd_write, ev_read)
        self.handles[run_id] = h
        threading.Thread(target=self._read, args=(h,), name=f"reader {run_id}",
                         daemon=True).start()
        log.info("run %s: worker pid %s started", run_id, proc.pid)
        return h

    def send(self, run_id: str, cmd: dict) -> bool:
        h = self.handles.get(run_id)
        if h is None:
            return False
        try:
            h.commands.send_bytes(json.dumps(cmd).encode())
            return True
        except (OSError, ValueError):
            return False

    def kill(self, run_id: str, reason: str) -> None:
        h = self.handles.get(run_id)
        if h is not None and h.process.is_alive():
            h.kill_reason = h.kill_reason or reason
            h.process.kill()

    # ------------------------------------------------------------ threads -> loop

    def _read(self, h: WorkerHandle) -> None:
        """Reader thread: blocking reads from one child, handed to the loop in batches."""
        while True:
            try:
                data = h.events.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                batch = json.loads(data)
            except ValueError:
                continue
            self._call(self._deliver, h, batch)
        self._call(self._eof, h)

    def _call(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:   # loop closed during shutdown
            pass

    def _deliver(self, h: WorkerHandle, batch: list) -> None:
        h.last_heartbeat = time.monotonic()
        msgs = [m for m in batch if m.get("k") != "hb"]
        if msgs and self.handles.get(h.run_id) is h:
            self.on_messages(h.run_id, msgs)

    def _eof(self, h: WorkerHandle) -> None:
        h.eof = True
        task = self.loop.create_task(self._reap(h))
        self._exit_tasks.add(task)
        task.add_done_callback(self._exit_tasks.discard)

    async def _reap(self, h: WorkerHandle) -> None:
        await asyncio.to_thread(h.process.join, max(self.grace_seconds, 1.0))
        if h.process.exitcode is None:      # closed its pipe but lingers: end it
            h.process.kill()
            await asyncio.to_thread(h.process.join, 5)
        for conn in (h.commands, h.events):
            try:
                conn.close()
            except OSError:  # pragma: no cover
                pass
        if self.handles.get(h.run_id) is h:
            del self.handles[h.run_id]
        log.info("run %s: worker pid %s exited with code %s", h.run_id, h.process.pid,
                 h.process.exitcode)
        self.on_exit(h, h.process.exitcode)

    async def _watch(self) -> None:
        """Kill a worker whose heartbeats stop (hung, or stopped with SIGSTOP)."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            now = time.monotonic()
            for h in list(self.handles.values()):
                if not h.eof and now - h.last_heartbeat > self.heartbeat_timeout:
                    self.kill(h.run_id, f"worker stopped responding (no heartbeat for "
                                        f"{now - h.last_heartbeat:.0f} s)")

    # ------------------------------------------------------------ shutdown

    async def stop_worker(self, run_id: str) -> None:
        """Ask one worker to leave at the next step boundary; kill it after the grace period."""
        h = self.handles.get(run_id)
        if h is None:
            return
        h.shutting_down = True
        self.send(run_id, {"cmd": "shutdown"})
        await asyncio.to_thread(h.process.join, self.grace_seconds)
        if h.process.is_alive():
            h.process.kill()
            await asyncio.to_thread(h.process.join, 5)

    async def close(self) -> None:
        """Stop every worker (no orphans) and wait for their exit callbacks."""
        if self._monitor:
            self._monitor.cancel()
        await asyncio.gather(*(self.stop_worker(r) for r in list(self.handles)))
        for _ in range(100):     # let the reader threads' EOFs reach the loop
            if not self.handles and not self._exit_tasks:
                break
            await asyncio.sleep(0.05)
        for h in list(self.handles.values()):   # pragma: no cover - belt and braces
            if h.process.is_alive():
                h.process.kill()
