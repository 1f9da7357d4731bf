"""Run a sweep's trials on a Dask cluster (dask.distributed): ``DaskRunner``, a drop-in for
``runner.LocalRunner``.

Each trial is one Dask task, ``run_trial``, that trains the trial's config with the engine on
a Dask worker, as ``server.workers.worker_main`` does in a local worker process:

* events: the task sends the engine's events back while it trains, batched (at most every
  ``BATCH_SECONDS`` or ``BATCH_EVENTS`` events) through ``Worker.log_event`` on a topic of the
  runner's own; the runner's ``Client.subscribe_topic`` handler queues them and the runner's
  thread (the only one that touches the ``Sweep``) hands them on. Each batch carries its
  sequence number and the task returns how many it sent, so the runner settles a trial only
  after every batch arrived (the task's result and the topic travel by different paths).
* stop: ``Client.cancel`` does not stop running code, so each trial has a ``distributed.Event``
  (``<topic>-stop-<n>``); a thread in the task polls it every ``STOP_POLL_SECONDS`` and
  calls the engine's ``Control.stop()``, which the trainer polls between steps (a pruned or
  stopped trial ends at its next step after that, as in a local worker).
* a dead Dask worker: the trial ends ``failed`` with the reason (which worker, at which
  step); it is **not** retried. The task is submitted with ``retries=0``; a ``local`` cluster's
  scheduler gets ``allowed-failures`` 0, so the future errs with ``KilledWorker`` at once. A
  scheduler of someone else's may re-run a task whose worker died (``allowed-failures``
  defaults to 3): the first attempt sets the trial's claim Event (``<topic>-claim-<n>``), and a
  later attempt finds it set and returns at once without training.

Only this module knows Dask; ``distributed`` is imported lazily, so the rest of the server
and the engine do not need it to import.
"""
from __future__ import annotations

import os
import queue
import re
import threading
import time
import uuid
from typing import TYPE_CHECKING, Callable

from ..workers import WORKER_ENV

if TYPE_CHECKING:
    from .core import Sweep

BATCH_SECONDS = 0.1
BATCH_EVENTS = 50
SNAPSHOT_SECONDS = 2.0     # a trial's weight snapshots: at most one per this many seconds
STOP_POLL_SECONDS = 0.25
PROGRESS_RATE = 0.0        # max progress events/s a trial sends; 0: every one (see ProgressCap)
CONNECT_TIMEOUT = 5.0
SETTLE_SECONDS = 10.0      # how long a finished task's last event batches may lag its result

_ADDRESS = re.compile(r"^(?:tcp://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")


class DaskError(Exception):
    """The Dask cluster cannot be used (bad address, unreachable scheduler)."""


def check_address(address: str) -> str:
    """``local``, ``tcp://HOST:PORT`` or ``HOST:PORT`` (tcp assumed); returns the normalised
    address, or raises ``ValueError`` saying what is wrong. No network access."""
    a = (address or "").strip()
    if a == "local":
        return a
    m = _ADDRESS.match(a)
    if not m:
        raise ValueError(f"a Dask address is 'local' or tcp://HOST:PORT, got {address!r}")
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise ValueError(f"the port of a Dask address is 1 to 65535, got {port}")
    return f"tcp://{m.group(1)}:{port}"


class Connection:
    """A ``distributed.Client`` on ``address``, or on an in-process ``LocalCluster`` (worker
    processes, one thread each) for ``local``. A context manager; ``close()`` ends both.

    Raises ``DaskError`` within about ``timeout`` seconds when the scheduler cannot be reached.
    """

    def __init__(self, address: str, n_workers: int = 1, timeout: float = CONNECT_TIMEOUT):
        try:
            self.address = check_address(address)
        except ValueError as e:
            raise DaskError(str(e)) from None
        import dask
        from distributed import Client, LocalCluster
        self.cluster = None
        if self.address == "local":
            saved = {k: os.environ.get(k) for k in WORKER_ENV}
            os.environ.update(WORKER_ENV)     # the nanny sets these too; kept explicit
            try:
                # a worker that dies fails its trial: the scheduler must not re-run it
                with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                    self.cluster = LocalCluster(n_workers=max(1, n_workers),
                                                threads_per_worker=1, processes=True,
                                                dashboard_address=None)
            except Exception as e:  # noqa: BLE001 - e.g. no processes can be started
                raise DaskError(f"could not start a local Dask cluster: "
                                f"{type(e).__name__}: {e}") from None
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(self.address, timeout=timeout)
            except (OSError, TimeoutError) as e:
                raise DaskError(f"cannot reach the Dask scheduler at {self.address} within "
                                f"{timeout:g} s: {e}") from None
            except Exception as e:  # noqa: BLE001 - something else answers there (an HTTP
                # server's reply read as a frame length fails to allocate, etc.)
                raise DaskError(f"no Dask scheduler at {self.address}: something else "
                                f"answered ({type(e).__name__})") from None

    def close(self) -> None:
        try:
            self.client.close(timeout=5)
        finally:
            if self.cluster is not None:
                self.cluster.close(timeout=10)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Check that a Dask scheduler answers at ``address`` (``local`` is not started);
    raises ``DaskError``."""
    if check_address(address) != "local":
        Connection(address, timeout=timeout).close()


# ---------------------------------------------------------------------------------- task side


class ProgressCap:
    """At most ``rate`` progress events a second out of one trial's events (0: no cap).

    ``offer(event)`` returns the events to send now, in order. Every event that is not a
    ``progress`` passes; a progress event within ``1 / rate`` s of the last one sent is held
    (the newest replaces the older), and the held one goes out just before the next event of
    another type, so an evaluation, a pause and ``run_finished`` are never dropped and the
    curve still reaches each of their steps exactly. Events need a ``type`` attribute.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self.clock = clock
        self.last = -float("inf")
        self.held = None

    def offer(self, event) -> list:
        if not self.interval:
            return [event]
        if event.type == "progress":
            now = self.clock()
            if now - self.last < self.interval:
                self.held = event
                return []
            self.last, self.held = now, None
            return [event]
        out = [self.held, event] if self.held is not None else [event]
        self.held = None
        return out


def send_batches(outbox: queue.SimpleQueue, send: Callable[[int, list], None], sent: list,
                 batch_seconds: float = BATCH_SECONDS, batch_events: int = BATCH_EVENTS) -> None:
    """Drain ``outbox`` until a ``None`` arrives, calling ``send(seq, msgs)`` with batches of
    at most ``batch_events`` messages gathered for at most ``batch_seconds``; ``sent[0]``
    counts the batches (the receiver settles a task after that many)."""
    while True:
        batch = [outbox.get()]
        deadline = time.monotonic() + batch_seconds
        while batch[-1] is not None and len(batch) < batch_events:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(outbox.get(timeout=left))
            except queue.Empty:
                break
        last = batch[-1] is None
        msgs = [b for b in batch if b is not None]
        if msgs:
            send(sent[0], msgs)
            sent[0] += 1
        if last:
            return


def run_trial(topic: str, number: int, config: dict, threads: int | None = None,
              batch_seconds: float = BATCH_SECONDS, batch_events: int = BATCH_EVENTS,
              snapshot_seconds: float = SNAPSHOT_SECONDS,
              progress_rate: float = PROGRESS_RATE) -> dict:
    """Train one trial on a Dask worker (the task). Events go out on ``topic`` as
    ``{"n", "seq", "msgs": [{"k": "event", "e", "ts"} | {"k": "start", "worker", "pid"} |
    {"k": "error", "msg"}]}``; every engine event, except that ``snapshot`` events (35-70 KB
    each for mlp and lenet, every 0.5 s by default) go out at most once per
    ``snapshot_seconds`` (and the newest one held back just before ``run_finished``), and
    ``progress`` events at most ``progress_rate`` a second when it is above 0 (``ProgressCap``).
    Returns ``{"batches": N}`` (plus ``"rerun": True`` when a previous attempt of this trial
    already started, see the module docstring)."""
    from distributed import Event, get_worker
    worker = get_worker()
    claim = Event(f"{topic}-claim-{number}")
    if claim.is_set():
        return {"batches": 0, "rerun": True, "worker": worker.address}
    claim.set()
    stop_event = Event(f"{topic}-stop-{number}")
    if stop_event.is_set():     # stopped while it waited for a worker: do not start
        return {"batches": 0}
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    done = threading.Event()
    sent = [0]

    def sender() -> None:
        send_batches(outbox, lambda seq, msgs: worker.log_event(
            topic, {"n": number, "seq": seq, "msgs": msgs}), sent, batch_seconds, batch_events)

    send_thread = threading.Thread(target=sender, name=f"trial-{number} sender", daemon=True)
    send_thread.start()
    outbox.put({"k": "start", "worker": worker.address, "pid": os.getpid()})

    from engine import Control, make_trainer
    from engine.runtime import keep_freed_memory
    keep_freed_memory()
    control = Control()

    def watch_stop() -> None:
        # polled (not Event.wait): no request is left waiting on the scheduler when the
        # trial ends, and the trial never waits for one to time out
        while not done.wait(STOP_POLL_SECONDS):
            try:
                if stop_event.is_set():
                    control.stop()
                    return
            except Exception:  # noqa: BLE001 - scheduler briefly unreachable: keep training
                pass

    watcher = None
    try:
        trainer = make_trainer(config, control=control, threads=threads)
    except Exception as e:  # noqa: BLE001 - reported as the trial's reason
        outbox.put({"k": "error", "msg": f"could not start training: {e}"})
    else:
        watcher = threading.Thread(target=watch_stop, name=f"trial-{number} stop", daemon=True)
        watcher.start()
        last_snap, held = [-float("inf")], [None]
        cap = ProgressCap(progress_rate)

        def emit(event) -> None:
            for e in cap.offer(event):
                emit_one(e)

        def emit_one(event) -> None:
            if event.type == "snapshot":
                if time.monotonic() - last_snap[0] < snapshot_seconds:
                    held[0] = event      # the newest skipped one goes out before the end
                    return
                last_snap[0], held[0] = time.monotonic(), None
            elif event.type == "run_finished" and held[0] is not None:
                emit_now(held[0])
            emit_now(event)

        def emit_now(event) -> None:
            outbox.put({"k": "event", "e": event.to_json_dict(), "ts": time.time()})
        trainer.emit = emit
        try:
            trainer.run()
        except Exception as e:  # noqa: BLE001
            outbox.put({"k": "error", "msg": f"training failed at step {trainer.step}: "
                                             f"{type(e).__name__}: {e}"})
    done.set()
    outbox.put(None)
    send_thread.join()
    if watcher is not None:
        watcher.join(5)
    return {"batches": sent[0]}


# ---------------------------------------------------------------------------------- runner side


def _truncate_topic(topic: str):
    """A function for ``Client.run_on_scheduler`` that empties ``topic``'s log there. Made
    here as a closure, so it is pickled by value: the scheduler needs no copy of this project.
    """
    return lambda dask_scheduler: dask_scheduler._broker.truncate(topic)


class _Running:
    def __init__(self, number: int, future):
        self.number, self.future = number, future
        self.received: set[int] = set()    # batch sequence numbers seen
        self.pending: dict[int, list] = {}  # batches that arrived ahead of an earlier one
        self.next_seq = 0
        self.worker: str | None = None
        self.pid: int | None = None
        self.step = 0
        self.error: str | None = None
        self.result: dict | None = None     # the task's result, once it finished
        self.lost = False                   # its worker died, or the scheduler lost it
        self.settle_by: float | None = None


class DaskRunner:
    """Drives one ``Sweep`` to the end with trials as Dask tasks (same interface as
    ``LocalRunner``).

    ``client``: a connected ``distributed.Client`` (the caller keeps it open, e.g. for a
    series of sweeps); else ``address`` (``local`` or ``tcp://HOST:PORT``) is connected for
    this run and closed after it. ``threads``: training threads per trial (results do not
    depend on it; default: the Dask worker's ``BACKPROP_THREADS``, else 1).
    ``on_run_event(number, event)`` gets every engine event of every trial (with
    ``progress_rate`` > 0, at most that many ``progress`` events a second of each; the
    default ``PROGRESS_RATE`` sends every one).
    """

    def __init__(self, sweep: Sweep, max_parallel: int | None = None, threads: int | None = None,
                 on_run_event: Callable[[int, dict], None] | None = None, *,
                 client=None, address: str = "local", connect_timeout: float = CONNECT_TIMEOUT,
                 progress_rate: float | None = None):
        self.sweep = sweep
        self.progress_rate = PROGRESS_RATE if progress_rate is None else progress_rate
        self.max_parallel = max_parallel or sweep.spec["max_parallel"]
        self.threads = threads
        self.on_run_event = on_run_event
        self.client = client
        self.address = address
        self.connect_timeout = connect_timeout
        self.topic = f"backprop-lab-{uuid.uuid4().hex[:12]}"
        self.running: dict[int, _Running] = {}
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._kill = threading.Event()
        self._stopped = False

    def stop(self) -> None:
        """No new trial; running ones stop at their next step (safe from any thread or a
        signal handler: the Dask calls happen on the runner's thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def kill(self) -> None:
        """Stop, cancel the running trials' tasks and stop waiting for them (a task already
        training still sees its stop Event and ends at its next step)."""
        self._stop.set()
        self._kill.set()

    def run(self) -> dict:
        """Run every trial; returns the sweep's summary. Raises ``DaskError`` when ``address``
        cannot be reached."""
        if self.client is not None:
            self._run(self.client)
        else:
            with Connection(self.address, self.max_parallel, self.connect_timeout) as conn:
                self._run(conn.client)
        return self.sweep.finish()

    def _run(self, client) -> None:
        self.client = client
        client.subscribe_topic(self.topic, lambda event: self._inbox.put(("events", event[1])))
        try:
            while True:
                try:
                    self._loop()
                    break
                except KeyboardInterrupt:
                    (self.kill if self._stop.is_set() else self.stop)()
        finally:
            client.unsubscribe_topic(self.topic)
            try:     # the scheduler keeps a topic's last 1,000 messages: drop this sweep's
                client.run_on_scheduler(_truncate_topic(self.topic))
            except Exception:  # noqa: BLE001 - a scheduler that refuses pickled code keeps them
                pass

    def _loop(self) -> None:
        while True:
            if self._stop.is_set() and not self._stopped:
                self._stopped = True
                for n in self.sweep.stop():
                    self._signal(n)
            if self._kill.is_set() and self.running:
                for r in list(self.running.values()):
                    r.future.cancel()
                    self._settle(r, "killed: the sweep was stopped twice", clear=False)
            while not self._stopped and len(self.running) < self.max_parallel:
                t = self.sweep.next_trial()
                if t is None:
                    break
                self._start(t.number, t.config)
            if not self.running:
                return
            try:
                kind, item = self._inbox.get(timeout=0.2)
            except queue.Empty:
                kind = None
            if kind == "events":
                self._events(item)
            elif kind == "done":
                self._done(item)
            now = time.monotonic()
            for r in list(self.running.values()):
                if r.result is not None and (r.next_seq >= r.result.get("batches", 0)
                                             or now > r.settle_by):
                    self._settle(r, r.error)

    def _start(self, number: int, config: dict) -> None:
        fut = self.client.submit(run_trial, self.topic, number, config, self.threads,
                                 progress_rate=self.progress_rate,
                                 key=f"{self.topic}-trial-{number}", pure=False, retries=0)
        r = _Running(number, fut)
        self.running[number] = r
        fut.add_done_callback(lambda f, n=number: self._inbox.put(("done", n)))
        self.sweep.started(number)

    def _signal(self, number: int) -> None:
        """Set the trial's stop Event (the task's watcher stops the engine)."""
        from distributed import Event
        try:
            Event(f"{self.topic}-stop-{number}", client=self.client).set()
        except Exception:  # noqa: BLE001 - scheduler gone: the trial's future will say so
            pass

    def _events(self, msg: dict) -> None:
        r = self.running.get(msg.get("n"))
        if r is None or msg["seq"] in r.received:
            return
        r.received.add(msg["seq"])
        r.pending[msg["seq"]] = msg["msgs"]
        while r.next_seq in r.pending:     # hand batches on in the order they were sent
            for m in r.pending.pop(r.next_seq):
                self._message(r, m)
            r.next_seq += 1

    def _message(self, r: _Running, m: dict) -> None:
        kind = m.get("k")
        if kind == "event":
            e = m["e"]
            r.step = e.get("step", r.step)
            if self.on_run_event:
                self.on_run_event(r.number, e)
            if self.sweep.on_event(r.number, e) == "stop":
                self._signal(r.number)
        elif kind == "start":
            r.worker, r.pid = m.get("worker"), m.get("pid")
        elif kind == "error":
            r.error = m.get("msg")

    def _done(self, number: int) -> None:
        r = self.running.get(number)
        if r is None or r.result is not None:
            return
        fut = r.future
        where = r.worker or "its Dask worker"
        if fut.status == "finished":
            res = fut.result()
            if res.get("rerun"):
                r.error = (f"the Dask worker {where} running it died at step {r.step} "
                           f"(not retried)")
                r.lost, res = True, {"batches": 0}
            r.result = res
        else:
            if fut.status == "error":
                exc = fut.exception()
                if type(exc).__name__ == "KilledWorker":
                    r.error = f"the Dask worker {where} running it died at step {r.step} " \
                              f"(not retried)"
                else:
                    r.error = f"the Dask task failed: {type(exc).__name__}: {exc}"
            else:
                r.error = f"the Dask scheduler lost the trial ({fut.status})"
            r.lost, r.result = True, {"batches": r.next_seq}
        r.settle_by = time.monotonic() + SETTLE_SECONDS

    def _settle(self, r: _Running, error: str | None, clear: bool = True) -> None:
        if self.running.pop(r.number, None) is None:
            return
        # the scheduler keeps an Event until cleared. A killed trial's task may still be
        # training, and a lost one's too (its worker was only cut off): they must go on
        # seeing their stop Event, and a re-run its claim.
        if r.lost:
            self._signal(r.number)
        for name in ("stop", "claim") if clear and not r.lost else ():
            try:
                from distributed import Event
                Event(f"{self.topic}-{name}-{r.number}", client=self.client).clear()
            except Exception:  # noqa: BLE001
                pass
        try:
            r.future.release()
        except Exception:  # noqa: BLE001
            pass
        self.sweep.ended(r.number, error)
