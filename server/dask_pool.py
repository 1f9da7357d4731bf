"""Runs on a Dask cluster (``serve --dask ADDR|local``): ``DaskPool`` has the interface of
``workers.WorkerPool`` (start, send, kill, stop_worker, handles, free_slots, open, close) and
reports through the same two callbacks, so the lifecycle (manager.py), the event log and the
page cannot tell a run on Dask from a local one, except by its ``where``.

* A run is one Dask task, ``run_remote``: it trains with the engine on a Dask worker and sends
  its messages back in batches through ``Worker.log_event`` on the pool's topic, in the
  format a local worker sends through its pipe (``{"k": "event", "e", "ts"}``, ``"error"``,
  ``"warning"``), plus ``{"k": "ckpt", "step", "eval", "data": npz bytes}``: a Dask worker may
  be another machine, so the pool writes the run's checkpoints into the server's data folder
  (the latest, and one per evaluation within the budget, as server/checkpoints.py says).
* Commands: stop through a ``distributed.Event`` the task polls (``Client.cancel`` does not
  stop running code); pause, resume, live changes, tempo and Step through a
  ``distributed.Queue`` the task polls, applied between steps as in a local worker.
* A Dask worker that dies fails its run with the reason; it is not retried (a local cluster's
  scheduler gets ``allowed-failures`` 0; a task re-run by someone else's scheduler finds its
  claim Event set and returns at once).

``distributed`` is imported only when a pool is opened.
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .checkpoints import path_for, thin

log = logging.getLogger("backprop_lab.dask")

BATCH_SECONDS = 0.1
BATCH_EVENTS = 50
SNAPSHOT_SECONDS = 2.0
POLL_SECONDS = 0.25
SETTLE_SECONDS = 10.0


# ---------------------------------------------------------------------------------- task side


def run_remote(topic: str, run_id: str, attempt: str, config: dict, start: dict | None = None,
               checkpoint_seconds: float = 10.0, snapshot_seconds: float = SNAPSHOT_SECONDS,
               progress_rate: float = 0.0) -> dict:
    """Train one run on a Dask worker. ``attempt``: this start's own name for its claim, stop
    and command objects (a continued run is a new attempt). ``start``: ``{"mode": "continue" |
    "fork", "data": npz bytes}``. ``progress_rate`` > 0: at most that many ``progress`` events a
    second go to the scheduler (``ProgressCap``: the newest held one goes out before any other
    event, so evaluations and the end are exact). Returns ``{"batches": N}`` (the pool settles
    the run after N batches)."""
    from distributed import Event, Queue, get_worker

    from .sweep.dask_runner import ProgressCap, send_batches
    worker = get_worker()
    cap = ProgressCap(progress_rate)
    claim = Event(f"{topic}-claim-{attempt}")
    if claim.is_set():
        return {"batches": 0, "rerun": True}
    claim.set()
    stop_event = Event(f"{topic}-stop-{attempt}")
    commands = Queue(f"{topic}-cmd-{attempt}")
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    done = threading.Event()
    sent = [0]

    def sender() -> None:
        send_batches(outbox, lambda seq, msgs: worker.log_event(
            topic, {"run": run_id, "attempt": attempt, "seq": seq, "msgs": msgs}), sent,
            BATCH_SECONDS, BATCH_EVENTS)

    send_thread = threading.Thread(target=sender, daemon=True)
    send_thread.start()
    outbox.put({"k": "start", "worker": worker.address, "pid": os.getpid()})

    from engine import Control, make_trainer
    control = Control()

    def poll() -> None:
        while not done.wait(POLL_SECONDS):
            try:
                if stop_event.is_set():
                    control.stop()
                    return
                while commands.qsize():
                    cmd = commands.get(timeout=1)
                    kind = cmd.get("cmd")
                    try:
                        if kind == "pause":
                            control.pause()
                        elif kind == "resume":
                            control.resume()
                        elif kind == "set":
                            control.set_hparams(**cmd.get("changes", {}))
                        elif kind == "tempo":
                            control.set_tempo(cmd.get("steps_per_second"))
                        elif kind == "step":
                            control.step(cmd.get("steps", 1))
                    except (TypeError, ValueError) as e:
                        outbox.put({"k": "warning", "msg": str(e)})
            except Exception:  # noqa: BLE001 - scheduler briefly unreachable: keep training
                pass

    tmpdir = tempfile.mkdtemp(prefix="backprop-lab-run-")
    ck = Path(tmpdir) / "checkpoint.npz"
    poller = None
    try:
        trainer = make_trainer(config, control=control)
        if start:
            ck.write_bytes(start["data"])
            trainer.load_checkpoint(ck, fork=start["mode"] == "fork")
    except Exception as e:  # noqa: BLE001 - reported as the run's reason
        what = "continue" if start and start["mode"] == "continue" else "start training"
        outbox.put({"k": "error", "msg": f"could not {what}: {e}"})
    else:
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        last_ck, last_snap, held = [time.monotonic()], [-float("inf")], [None]

        def checkpoint(is_eval: bool) -> None:
            if not trainer.model.all_finite():
                return
            trainer.save_checkpoint(ck)
            outbox.put({"k": "ckpt", "step": trainer.step, "eval": is_eval, "data": ck.read_bytes()})
            last_ck[0] = time.monotonic()

        def emit(event) -> None:
            for e in cap.offer(event):
                send(e)

        def send(event) -> None:
            if event.type == "snapshot":
                if time.monotonic() - last_snap[0] < snapshot_seconds:
                    held[0] = event
                    return
                last_snap[0], held[0] = time.monotonic(), None
            elif event.type == "run_finished":
                if held[0] is not None:
                    outbox.put({"k": "event", "e": held[0].to_json_dict(), "ts": time.time()})
                checkpoint(False)             # final weights before anyone hears "done"
            outbox.put({"k": "event", "e": event.to_json_dict(), "ts": time.time()})
            if event.type == "eval" or (event.type == "bsde_eval" and event.step):
                checkpoint(True)
            elif event.type == "progress" and time.monotonic() - last_ck[0] >= checkpoint_seconds:
                checkpoint(False)
        trainer.emit = emit
        try:
            trainer.run()
        except Exception as e:  # noqa: BLE001
            outbox.put({"k": "error", "msg": f"training failed at step {trainer.step}: "
                                             f"{type(e).__name__}: {e}"})
    done.set()
    outbox.put(None)
    send_thread.join()
    if poller is not None:
        poller.join(5)
    for p in Path(tmpdir).iterdir():
        p.unlink()
    os.rmdir(tmpdir)
    return {"batches": sent[0]}


# ---------------------------------------------------------------------------------- server side


class _Process:
    """What the health check reads of a local worker's process (a Dask run has no pid here)."""
    pid = None


@dataclass
class DaskHandle:
    run_id: str
    attempt: str
    future: object
    checkpoint: Path
    history_budget: int
    process: _Process = field(default_factory=_Process)
    started: float = field(default_factory=time.monotonic)
    kill_reason: str | None = None
    shutting_down: bool = False
    worker: str | None = None
    step: int = 0
    next_seq: int = 0
    pending: dict = field(default_factory=dict)
    best: tuple = (None, None)            # (test accuracy, step) of the best kept checkpoint
    expected: int | None = None           # batches the task sent (from its result)
    error: str | None = None


class DaskPool:
    where = "dask"

    def __init__(self, address: str, n_local_workers: int, checkpoint_seconds: float,
                 grace_seconds: float, on_messages: Callable[[str, list], None],
                 on_exit: Callable[[DaskHandle, int | None], None], progress_rate: float = 0.0):
        self.progress_rate = progress_rate    # max progress events/s of each run (0: all)
        self.address = address
        self.n_local_workers = n_local_workers
        self.checkpoint_seconds = checkpoint_seconds
        self.grace_seconds = grace_seconds
        self.on_messages = on_messages
        self.on_exit = on_exit
        self.handles: dict[str, DaskHandle] = {}
        self.topic = f"backprop-lab-{uuid.uuid4().hex[:10]}"
        self.conn = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        from .sweep.dask_runner import Connection
        self.loop = asyncio.get_running_loop()
        self.conn = Connection(self.address, n_workers=self.n_local_workers)
        self.client = self.conn.client
        self.client.subscribe_topic(self.topic, self._from_topic)
        log.info("runs can go to Dask at %s", self.address)

    @property
    def free_slots(self) -> int:
        """Dask worker threads not busy with one of our runs (Dask queues the rest anyway)."""
        try:
            total = sum(self.client.nthreads().values())
        except Exception:  # noqa: BLE001 - the scheduler is briefly away: start nothing now
            return 0
        return total - len(self.handles)

    def start(self, run_id: str, config: dict, checkpoint: Path, start: dict | None = None,
              history_budget: int = 0) -> DaskHandle:
        remote_start = None
        if start:
            remote_start = {"mode": start["mode"], "data": Path(start["from"]).read_bytes()}
        attempt = f"{run_id}-{uuid.uuid4().hex[:8]}"
        future = self.client.submit(run_remote, self.topic, run_id, attempt, config, remote_start,
                                    self.checkpoint_seconds, SNAPSHOT_SECONDS, self.progress_rate,
                                    key=f"run-{attempt}",
                                    pure=False, retries=0)
        h = DaskHandle(run_id, attempt, future, Path(checkpoint), history_budget)
        self.handles[run_id] = h
        future.add_done_callback(lambda f, h=h: self._call(self._done, h))
        return h

    def _call(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:   # loop closed during shutdown
            pass

    # ------------------------------------------------------------ commands

    def send(self, run_id: str, cmd: dict) -> bool:
        h = self.handles.get(run_id)
        if h is None:
            return False
        from distributed import Event, Queue
        try:
            if cmd.get("cmd") in ("stop", "shutdown"):
                Event(f"{self.topic}-stop-{h.attempt}", client=self.client).set()
            else:
                Queue(f"{self.topic}-cmd-{h.attempt}", client=self.client).put(cmd)
            return True
        except Exception as e:  # noqa: BLE001
            log.warning("run %s: command %s not sent to Dask: %s", run_id, cmd.get("cmd"), e)
            return False

    def kill(self, run_id: str, reason: str) -> None:
        h = self.handles.get(run_id)
        if h is not None:
            h.kill_reason = h.kill_reason or reason
            self.send(run_id, {"cmd": "stop"})
            h.future.cancel()

    async def stop_worker(self, run_id: str) -> None:
        h = self.handles.get(run_id)
        if h is None:
            return
        h.shutting_down = True
        self.send(run_id, {"cmd": "stop"})
        deadline = time.monotonic() + self.grace_seconds + 2
        while run_id in self.handles and self.handles[run_id] is h and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for run_id in list(self.handles):
            await self.stop_worker(run_id)
        for h in list(self.handles.values()):
            self._finish(h, None)
        if self.conn is not None:
            await asyncio.to_thread(self.conn.close)

    # ------------------------------------------------------------ from the cluster

    def _from_topic(self, event) -> None:
        """Called on the client's thread: ``event`` is ``(time, msg)``."""
        msg = event[1] if isinstance(event, (tuple, list)) else event
        self._call(self._batch, msg)

    def _batch(self, msg: dict) -> None:
        h = self.handles.get(msg.get("run"))
        if h is None or msg.get("attempt", h.attempt) != h.attempt:
            return
        h.pending[msg["seq"]] = msg["msgs"]
        while h.next_seq in h.pending:          # in order, whatever path each batch took
            self._deliver(h, h.pending.pop(h.next_seq))
            h.next_seq += 1
        if h.expected is not None and h.next_seq >= h.expected:
            self._finish(h, 0)

    def _deliver(self, h: DaskHandle, msgs: list) -> None:
        out = []
        for m in msgs:
            k = m.get("k")
            if k == "start":
                h.worker = m.get("worker")
            elif k == "ckpt":
                out.extend(self._write_checkpoint(h, m))
            else:
                if k == "event" and m["e"].get("type") == "progress":
                    h.step = m["e"].get("step", h.step)
                if k == "event" and m["e"].get("type") == "eval":
                    acc = m["e"].get("test_accuracy")
                    if acc is not None and (h.best[0] is None or acc > h.best[0]):
                        h.best = (acc, m["e"]["step"])
                out.append(m)
        if out:
            self.on_messages(h.run_id, out)

    def _write_checkpoint(self, h: DaskHandle, m: dict) -> list:
        try:
            h.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            if m.get("eval") and h.history_budget > 0:
                kept = path_for(h.checkpoint.parent, m["step"])
                kept.parent.mkdir(parents=True, exist_ok=True)
                tmp = kept.with_name(kept.name + ".tmp")
                tmp.write_bytes(m["data"])
                os.replace(tmp, kept)
                thin(h.checkpoint.parent, h.history_budget, h.best[1])
            tmp = h.checkpoint.with_name(h.checkpoint.name + ".tmp")
            tmp.write_bytes(m["data"])
            from .workers import _replace_keeping_previous
            _replace_keeping_previous(tmp, h.checkpoint)
            return [{"k": "checkpoint", "step": m["step"]}]
        except OSError as e:
            return [{"k": "warning", "msg": f"checkpoint at step {m['step']} not kept: {e}"}]

    def _done(self, h: DaskHandle) -> None:
        f = h.future
        if f.status == "finished":
            try:
                h.expected = f.result().get("batches", 0)
            except Exception:  # noqa: BLE001
                h.expected = 0
            if h.next_seq >= h.expected:
                self._finish(h, 0)
            else:                   # the last batches travel by another path: wait a little
                self.loop.call_later(SETTLE_SECONDS, self._finish, h, 0)
            return
        why = "cancelled" if f.status == "cancelled" else None
        if why is None:
            try:
                exc = f.exception()
            except Exception as e:  # noqa: BLE001
                exc = e
            name = type(exc).__name__
            if name == "KilledWorker":
                why = f"its Dask worker {h.worker or '(unknown)'} died (not retried)"
            else:
                why = f"its Dask task failed ({name}: {exc})"
        h.kill_reason = h.kill_reason or why
        self._finish(h, None)

    def _finish(self, h: DaskHandle, code: int | None) -> None:
        if self.handles.get(h.run_id) is not h:
            return
        del self.handles[h.run_id]
        self.on_exit(h, code)
