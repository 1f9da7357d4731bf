"""Learning-rate schedules: ``Schedule(cfg, total_steps, steps_per_epoch)`` is called as
``schedule(step, base_lr, smoothed_loss) -> lr`` before each step (``step`` counts from 0).

Config is plain data: ``{"type": "step", "gamma": 0.95}`` decays by 0.95 each
epoch (cs231n's ``lr_decay``); ``{"type": "loss", "table": [[0.5, 0.01], ...]}``
switches to the rate of the lowest threshold the loss has fallen below (the trainer
passes the lowest smoothed loss so far, so a threshold once passed stays passed).
"""
from __future__ import annotations

import math


class Schedule:
    def __init__(self, cfg: dict | None, total_steps: int, steps_per_epoch: int):
        self.cfg = dict(cfg or {"type": "constant"})
        self.kind = self.cfg.get("type", "constant")
        self.total = max(1, total_steps)
        self.spe = max(1, steps_per_epoch)

    def __call__(self, step: int, base_lr: float, smoothed_loss: float | None = None) -> float:
        c, k = self.cfg, self.kind
        if k == "constant":
            return base_lr
        if k == "step":  # x gamma every `every` epochs
            every = int(c.get("every_epochs", 1))
            return base_lr * float(c.get("gamma", 0.95)) ** ((step // self.spe) // every)
        if k == "exponential":  # smooth per-step decay reaching gamma per epoch
            return base_lr * float(c.get("gamma", 0.95)) ** (step / self.spe)
        if k == "cosine":
            lo = float(c.get("min_lr", 0.0))
            return lo + 0.5 * (base_lr - lo) * (1 + math.cos(math.pi * min(step, self.total) / self.total))
        if k == "loss":
            lr = base_lr
            if smoothed_loss is not None:
                # table rows: [loss threshold, lr]; the lowest threshold passed wins
                for threshold, rate in sorted(c.get("table", []), key=lambda r: -r[0]):
                    if smoothed_loss < threshold:
                        lr = float(rate)
            return lr
        raise ValueError(f"unknown schedule {k!r}")
