"""The training loop. It reports only through events and obeys a ``Control``.

    trainer = Trainer(config, emit=print)
    summary = trainer.run()

``emit`` is called synchronously with each event object; ``Control`` takes
commands from another thread (stop, pause, resume, new hyperparameters) and the
loop applies them between steps, so every change lands at a known step.
"""
from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import events as ev
from . import runtime
from .datasets import Dataset, DatasetError, dataset_info, load_dataset
from .layers import Conv2D
from .model import Model
from .optim import make_optimizer
from .schedules import Schedule
from .spec import steps_per_epoch, total_steps, validate_config

MUTABLE_HPARAMS = ("lr", "momentum", "weight_decay")


@dataclass
class LoopState:
    """What the loop carries from step to step besides weights and optimizer state; saved in
    checkpoints so that a continued run takes exactly the steps the uninterrupted one would.
    ``perm``/``pos``: this epoch's shuffled order and the next batch's start; ``smooth`` and
    ``best_smooth``: the loss EMA the loss-driven schedule reads."""
    perm: np.ndarray | None = None
    perm_state: dict | None = None      # the data RNG's state just before ``perm`` was drawn
    pos: int = 0
    smooth: float | None = None
    best_smooth: float | None = None
    first_loss: float | None = None
    train_seconds: float = 0.0
    images_seen: int = 0
    ips: float = 0.0


class Control:
    """Thread-safe commands for a running trainer."""

    def __init__(self):
        self._q: queue.SimpleQueue = queue.SimpleQueue()

    def stop(self) -> None:
        self._q.put(("stop", None))

    def pause(self) -> None:
        self._q.put(("pause", None))

    def resume(self) -> None:
        self._q.put(("resume", None))

    def set_tempo(self, steps_per_second: float | None) -> None:
        """At most this many steps per second from now on (None: as fast as it goes)."""
        if steps_per_second is not None and not steps_per_second > 0:
            raise ValueError(f"steps_per_second must be positive or None, got {steps_per_second}")
        self._q.put(("tempo", steps_per_second))

    def step(self, steps: int = 1) -> None:
        """While paused: take ``steps`` steps, then stay paused (ignored while running)."""
        if int(steps) < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self._q.put(("step", int(steps)))

    def set_hparams(self, **changes: float) -> None:
        """Change ``lr``, ``momentum`` and/or ``weight_decay`` from the next step on."""
        bad = set(changes) - set(MUTABLE_HPARAMS)
        if bad:
            raise ValueError(f"only {', '.join(MUTABLE_HPARAMS)} can change while running, "
                             f"got {', '.join(sorted(bad))}")
        self._q.put(("set", dict(changes)))

    def get(self, block: bool, timeout: float | None = None):
        try:
            return self._q.get(block=block, timeout=timeout)
        except queue.Empty:
            return None


class Trainer:
    """Runs one validated config to completion, stop or divergence.

    ``dataset`` may be passed in (tests use small ones; its image shape and class count must
    be those of the config's dataset record); otherwise it is loaded from the config's
    ``dataset`` section. ``threads`` (default ``$BACKPROP_THREADS``,
    else 1) is how many threads a step may use; results do not depend on it.
    """

    def __init__(self, config: dict, emit: Callable[[ev.Event], None] | None = None,
                 control: Control | None = None, dataset: Dataset | None = None,
                 threads: int | None = None):
        self.config, self.summary = validate_config(config)
        self.emit = emit or (lambda e: None)
        self.control = control or Control()
        tr, dcfg = self.config["train"], self.config["dataset"]
        self.data = dataset or load_dataset(dcfg["name"], path=dcfg["path"],
                                            train_limit=dcfg["train_limit"],
                                            test_limit=dcfg["test_limit"])
        info = dataset_info(dcfg["name"])
        if (self.data.input_shape, self.data.num_classes) != (info.input_shape, info.num_classes):
            raise DatasetError(f"the dataset passed in has images {self.data.input_shape} in "
                               f"{self.data.num_classes} classes, but {info.name} (the config's) "
                               f"has {info.input_shape} in {info.num_classes}")
        self.threads = runtime.default_threads() if threads is None else max(1, int(threads))
        self.model = Model.from_config(self.config, threads=self.threads)
        self.dtype = self.model.dtype
        self.optimizer = make_optimizer(tr, self.model.params)
        self.base_lr = tr["lr"]
        n = len(self.data.x_train)
        self.steps_per_epoch = steps_per_epoch(tr, n)
        self.total_steps = total_steps(tr, n)
        self.schedule = Schedule(tr["schedule"], self.total_steps, self.steps_per_epoch)
        self.rng = np.random.default_rng([tr["seed"], 1])
        self.step = 0
        self.epoch = 0
        self.status = "created"
        self.loop = LoopState()
        self.tempo: float | None = None           # max steps per second (None: full speed)
        self.last_step_at: float | None = None    # when the last step ended (for the tempo)
        self.stepping = 0                         # steps left of a Step taken while paused
        self.continued_from: int | None = None   # the step a loaded checkpoint resumes at
        self.forked_from: int | None = None      # the step a fork starts from

    # ------------------------------------------------------------ control

    def _apply(self, cmd) -> str | None:
        kind, arg = cmd
        if kind == "stop":
            return "stop"
        if kind == "tempo":
            self.tempo = arg
            self.emit(ev.TempoChanged(step=self.step, steps_per_second=arg))
        if kind == "set":
            prev = {}
            for k, v in arg.items():
                if k == "lr":
                    prev[k], self.base_lr = self.base_lr, float(v)
                elif k == "momentum":
                    prev[k], self.optimizer.momentum = self.optimizer.momentum, float(v)
                elif k == "weight_decay":
                    prev[k], self.optimizer.weight_decay = self.optimizer.weight_decay, float(v)
            self.emit(ev.HparamsChanged(step=self.step, changes=dict(arg), previous=prev))
        return kind

    def _poll(self) -> bool:
        """Apply pending commands; block while paused, and between steps as long as the
        tempo asks. Returns False to stop."""
        # A Step while paused: take its steps, then pause again at once. (Queueing the pause
        # behind the commands would let a Step sent meanwhile be read while "running", where
        # it means nothing, and be lost.)
        pause_now = False
        if self.stepping:
            self.stepping -= 1
            pause_now = self.stepping == 0
        while True:
            if pause_now:
                pause_now = False
                cmd, kind = ("pause", "after-step"), "pause"
            else:
                wait = 0.0
                if self.tempo and self.last_step_at is not None:
                    wait = self.last_step_at + 1.0 / self.tempo - time.perf_counter()
                cmd = self.control.get(block=wait > 0, timeout=wait if wait > 0 else None)
                if cmd is None:
                    if wait > 0:
                        continue         # woke on time: check the clock again
                    return True
                kind = self._apply(cmd)
            if kind == "stop":
                return False
            if kind == "resume" and self.stepping:   # Resume during a Step: keep going
                self.stepping = 0
                self.emit(ev.Resumed(step=self.step))
            if kind == "pause":
                if cmd[1] != "after-step":
                    self.emit(ev.Paused(step=self.step))
                while True:
                    cmd = self.control.get(block=True, timeout=0.5)
                    if cmd is None:
                        continue
                    kind = self._apply(cmd)
                    if kind == "stop":
                        return False
                    if kind == "step":
                        self.stepping = cmd[1]
                        self.last_step_at = None     # no tempo wait before a Step
                        return True
                    if kind == "resume":
                        self.emit(ev.Resumed(step=self.step))
                        break

    # ------------------------------------------------------------ reporting

    def evaluate(self) -> ev.Eval:
        t0 = time.perf_counter()
        d, m = self.data, self.model
        k = self.config["train"]["eval_train_size"]
        tr = m.evaluate(d.x_train[:k], d.y_train[:k], scale=1 / 255) if k else None
        te = m.evaluate(d.x_test, d.y_test, scale=1 / 255)
        c = d.num_classes
        conf = np.bincount(d.y_test * c + te["predictions"], minlength=c * c).reshape(c, c)
        wrong = np.flatnonzero(te["predictions"] != d.y_test)[:32]
        return ev.Eval(step=self.step, epoch=self.epoch,
                       train_loss=tr["loss"] if tr else None,
                       train_accuracy=tr["accuracy"] if tr else None,
                       test_loss=te["loss"], test_accuracy=te["accuracy"],
                       confusion=conf.tolist(),
                       misclassified=[{"index": int(i), "label": int(d.y_test[i]),
                                       "predicted": int(te["predictions"][i])} for i in wrong],
                       eval_seconds=time.perf_counter() - t0)

    def snapshot(self) -> ev.Snapshot | None:
        found = self.model.first_weighted()
        if found is None:
            return None
        i, layer = found
        kern = layer.params[0].value
        if isinstance(layer, Conv2D):
            kernels = kern.transpose(3, 0, 1, 2)[:64]                  # (F, kh, kw, C)
        else:
            units = kern.shape[1]
            in_shape = self.model.input_shape
            kernels = kern.T[:64]
            if kern.shape[0] == int(np.prod(in_shape)):
                kernels = kernels.reshape((min(units, 64),) + tuple(in_shape))
        probes = [p for p in self.config["train"]["probe_indices"] if p < len(self.data.x_test)]
        fmaps = None
        if probes:
            x = self.data.batch(self.data.x_test, np.array(probes), self.dtype)
            fmaps = self.model.feature_maps(x)
            fmaps = fmaps[..., :32] if fmaps.ndim == 4 else fmaps[:, :64]
        return ev.Snapshot(step=self.step, epoch=self.epoch, layer=i, kernels=kernels.copy(),
                           feature_maps=fmaps, probe_indices=probes,
                           probe_labels=[int(self.data.y_test[p]) for p in probes],
                           norms=self.model.norms())

    #: a finite loss this many times the first step's loss (and above EXPLODED_MIN) has diverged
    EXPLODED_FACTOR = 1000.0
    EXPLODED_MIN = 1000.0

    def _divergence(self, loss: float, out: np.ndarray, gnorm: float,
                    first_loss: float | None) -> ev.Diverged | None:
        """A non-finite loss or gradient, or a loss that exploded while staying finite
        (float32 can hold 1e38: a lr of 1e6 often blows up without ever reaching inf)."""
        limit = None
        if first_loss is not None and np.isfinite(first_loss):
            limit = max(self.EXPLODED_FACTOR * first_loss, self.EXPLODED_MIN)
        finite = np.isfinite(loss) and np.isfinite(gnorm)
        if finite and (limit is None or loss <= limit):
            return None
        lr = self.optimizer.lr
        k = self.step + 1  # the step being attempted; its update is not applied
        if finite:
            worst = max(self.model.params, key=lambda p: float(np.vdot(p.grad, p.grad)))
            reason = (f"loss exploded to {loss:.3g} at step {k} "
                      f"(more than {self.EXPLODED_FACTOR:g}x the first step's {first_loss:.3g})")
            where = f"the loss; the largest gradient is in {worst.name}"
        elif not np.isfinite(out).all():
            where = "the model's output overflowed"
            bad = [layer for layer in self.model.layers for p in layer.params
                   if not np.isfinite(p.value).all()]
            if bad:
                where += f" (weights of layer {bad[0].index + 1} ({bad[0].type}) are no longer finite)"
            reason = f"loss became {loss} at step {k}"
        elif not np.isfinite(loss):
            where, reason = "the loss", f"loss became {loss} at step {k}"
        else:
            bad = next(p.name for p in self.model.params if not np.isfinite(p.grad).all())
            where, reason = f"the gradient of {bad}", f"a gradient became non-finite at step {k}"
        suggestion = (f"lower the learning rate (it is {lr:g}; try {lr / 10:g})"
                      + ("" if self.optimizer.clip_norm else ", or set clip_norm to clip gradients"))
        return ev.Diverged(step=k, epoch=(k - 1) // self.steps_per_epoch + 1, reason=reason, where=where,
                           suggestion=suggestion, lr=lr)

    # ------------------------------------------------------------ loop

    def run(self) -> dict:
        """Train; returns the ``run_finished`` event as a dict."""
        # Overflow is expected when a run diverges; it is detected and reported as an event.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._run()

    def _run(self) -> dict:
        tr = self.config["train"]
        d, model, opt = self.data, self.model, self.optimizer
        n, bs = len(d.x_train), tr["batch_size"]
        eval_every = tr["eval_every"] or self.steps_per_epoch
        snap_every = tr["snapshot_interval"]
        self.status = "running"
        wall0 = time.perf_counter()
        if self.continued_from is None:
            self.emit(ev.RunStarted(config=self.config, summary=self.summary,
                                    total_steps=self.total_steps,
                                    steps_per_epoch=self.steps_per_epoch,
                                    train_size=n, test_size=len(d.x_test),
                                    class_names=list(d.class_names),
                                    start_step=self.forked_from or 0))
        else:
            self.emit(ev.Continued(step=self.step, epoch=self.epoch, total_steps=self.total_steps))
        snap = self.snapshot()
        if snap:
            self.emit(snap)
        last_snap = time.perf_counter()
        L = self.loop
        last_eval: ev.Eval | None = None
        status = "completed"
        if self.continued_from is not None and self.step % eval_every == 0 and self.step:
            # a checkpoint written at an eval step may precede that step's eval event
            last_eval = self.evaluate()
            self.emit(last_eval)
        while self.step < self.total_steps:
            if not self._poll():
                status = "stopped"
                break
            t0 = time.perf_counter()
            if tr["sampling"] == "replacement":
                idx = self.rng.integers(0, n, bs)
            else:
                if (L.perm is None or L.pos >= len(L.perm)
                        or (tr["drop_last"] and L.pos + bs > len(L.perm))):
                    L.perm_state = self.rng.bit_generator.state
                    L.perm, L.pos = self.rng.permutation(n), 0
                idx = L.perm[L.pos:L.pos + bs]
                L.pos += bs
            xb = d.batch(d.x_train, idx, self.dtype)
            yb = d.y_train[idx]
            opt.lr = self.schedule(self.step, self.base_lr, L.best_smooth)
            model.zero_grad()
            loss, out = model.loss_and_grad(xb, yb)
            gnorm = float(np.sqrt(sum(float(np.vdot(p.grad, p.grad)) for p in model.params)))
            bad = self._divergence(loss, out, gnorm, L.first_loss)
            L.first_loss = loss if L.first_loss is None else L.first_loss
            if bad:
                self.emit(bad)
                status = "diverged"
                break
            opt.step(gnorm)
            self.last_step_at = time.perf_counter()
            dt = self.last_step_at - t0
            L.train_seconds += dt
            L.images_seen += len(idx)
            self.step += 1
            self.epoch = (self.step - 1) // self.steps_per_epoch + 1  # 1-based, as people count
            L.ips = len(idx) / dt if L.ips == 0 else 0.9 * L.ips + 0.1 * len(idx) / dt
            L.smooth = loss if L.smooth is None else 0.98 * L.smooth + 0.02 * loss
            L.best_smooth = L.smooth if L.best_smooth is None else min(L.best_smooth, L.smooth)
            acc = float(np.mean(out.argmax(axis=1) == yb))
            self.emit(ev.Progress(step=self.step, epoch=self.epoch, loss=loss, accuracy=acc,
                                  lr=opt.lr, images_per_sec=L.ips, step_ms=dt * 1000,
                                  elapsed=time.perf_counter() - wall0))
            if self.step % eval_every == 0 or self.step == self.total_steps:
                last_eval = self.evaluate()
                self.emit(last_eval)
            if snap_every and time.perf_counter() - last_snap >= snap_every:
                self.emit(self.snapshot())
                last_snap = time.perf_counter()
        if status != "diverged":
            if last_eval is None or last_eval.step != self.step:
                last_eval = self.evaluate()
                self.emit(last_eval)
            snap = self.snapshot()
            if snap:
                self.emit(snap)
        self.status = status
        done = ev.RunFinished(status=status, step=self.step, epoch=self.epoch,
                              test_loss=last_eval.test_loss if last_eval else None,
                              test_accuracy=last_eval.test_accuracy if last_eval else None,
                              train_seconds=L.train_seconds,
                              images_per_second=(L.images_seen / L.train_seconds
                                                 if L.train_seconds else 0.0),
                              images_seen=L.images_seen, wall_seconds=time.perf_counter() - wall0)
        self.emit(done)
        return done.to_dict()

    # ------------------------------------------------------------ checkpoints

    def save_checkpoint(self, path) -> None:
        """Weights, optimizer state and the loop's position, as ``.npz`` (no pickle).

        Everything a continued run needs to take exactly the steps this one would have taken:
        the hyperparameters in effect (live changes included), the optimizer's moments and
        step count, the data order and position, the loss EMA, and every random stream."""
        L = self.loop
        extra = self.optimizer.state_arrays()
        resume = {"base_lr": self.base_lr, "momentum": self.optimizer.momentum,
                  "weight_decay": self.optimizer.weight_decay, "opt_t": self.optimizer.t,
                  "perm_state": L.perm_state, "pos": L.pos, "smooth": L.smooth, "best_smooth": L.best_smooth,
                  "first_loss": L.first_loss, "train_seconds": L.train_seconds,
                  "images_seen": L.images_seen, "ips": L.ips,
                  "train_size": len(self.data.x_train), "rng": self.rng.bit_generator.state, "model_rngs": self.model.rng_states()}
        self.model.save(path, extra=extra, meta={"step": self.step, "epoch": self.epoch,
                                                 "config": self.config, "resume": resume})

    def load_checkpoint(self, path, fork: bool = False) -> None:
        """Load weights and optimizer state; when the checkpoint has the loop's position
        (``resume`` in its meta), also that, so that ``run()`` continues exactly.

        ``fork``: start a new run from this checkpoint with this trainer's own config (changed
        hyperparameters, schedule, length or data subset; the same architecture). The config's
        hyperparameters replace the checkpoint's; the optimizer state is kept when the optimizer
        is the same kind, the data order and random streams when the seed and training set are
        the same, so a fork with nothing changed takes exactly the parent's next steps.
        ``run()`` then emits ``run_started`` with ``start_step``."""
        spec, arrays = Model.read_checkpoint(path)
        meta = spec.get("meta", {})
        parent = (meta.get("config") or {}).get("train", {})
        same_opt = not fork or parent.get("optimizer") == self.config["train"]["optimizer"]
        self.model.load_state_arrays(arrays)
        if same_opt:
            self.optimizer.load_state_arrays({k: v for k, v in arrays.items()
                                              if k.startswith("opt.")})
        self.step, self.epoch = int(meta.get("step", 0)), int(meta.get("epoch", 0))
        r = meta.get("resume")
        if fork:
            self.forked_from = self.step
        if not r:
            return
        if not fork:
            self.base_lr = float(r["base_lr"])
            self.optimizer.momentum = float(r["momentum"])
            self.optimizer.weight_decay = float(r["weight_decay"])
        if same_opt:
            self.optimizer.t = int(r["opt_t"])
        n = len(self.data.x_train)
        same_data = (r.get("train_size", n) == n
                     and (not fork or parent.get("seed") == self.config["train"]["seed"]))
        perm = None
        if same_data and r.get("perm_state") is not None:   # redraw the epoch's order
            g = np.random.default_rng()
            g.bit_generator.state = r["perm_state"]
            perm = g.permutation(n)
        self.loop = LoopState(perm=perm, perm_state=r.get("perm_state") if perm is not None else None,
                              pos=int(r["pos"]) if perm is not None else 0,
                              smooth=r["smooth"], best_smooth=r["best_smooth"],
                              first_loss=r["first_loss"],
                              train_seconds=0.0 if fork else float(r["train_seconds"]),
                              images_seen=0 if fork else int(r["images_seen"]), ips=float(r["ips"]))
        if same_data:
            self.rng.bit_generator.state = r["rng"]
            self.model.set_rng_states(r["model_rngs"])
        if not fork:
            self.continued_from = self.step


def train(config: dict, emit: Callable[[ev.Event], None] | None = None, **kw) -> dict:
    """Validate, build and train in one call (for notebooks and scripts)."""
    return Trainer(config, emit=emit, **kw).run()
