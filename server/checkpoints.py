"""A run's checkpoints through time: files, listing and thinning (no math, no HTTP).

``runs/<id>/checkpoint.npz`` is the latest state (periodic, and at every evaluation);
``runs/<id>/checkpoints/step-00001234.npz`` is the state right after step 1234, kept at every
evaluation within a per-run disk budget (``BACKPROP_CHECKPOINT_BUDGET_MB``). Over budget, the
kept checkpoint whose neighbours are closest in steps is removed first, so what is left stays
spread over the run; the first, the best (highest test accuracy) and the newest are never
removed. A write that fails (disk full) removes nothing else and never fails the run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HISTORY = "checkpoints"
_NAME = re.compile(r"^step-(\d{8,})\.npz$")


@dataclass(frozen=True)
class Kept:
    step: int
    path: Path
    bytes: int


def history_dir(run_dir: Path) -> Path:
    return Path(run_dir) / HISTORY


def path_for(run_dir: Path, step: int) -> Path:
    return history_dir(run_dir) / f"step-{int(step):08d}.npz"


def listing(run_dir: Path) -> list[Kept]:
    """The kept checkpoints, oldest step first (temporary files are not listed)."""
    folder = history_dir(run_dir)
    out = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = _NAME.match(p.name)
            if m:
                try:
                    out.append(Kept(int(m.group(1)), p, p.stat().st_size))
                except OSError:       # removed meanwhile
                    continue
    return sorted(out, key=lambda k: k.step)


def thin(run_dir: Path, budget_bytes: int, best_step: int | None) -> list[int]:
    """Remove checkpoints until the kept ones fit ``budget_bytes``; returns the removed steps."""
    kept = listing(run_dir)
    total = sum(k.bytes for k in kept)
    removed = []
    while total > budget_bytes and len(kept) > 2:
        protected = {kept[0].step, kept[-1].step, best_step}
        candidates = [i for i in range(1, len(kept) - 1) if kept[i].step not in protected]
        if not candidates:
            break
        i = min(candidates, key=lambda i: (kept[i + 1].step - kept[i - 1].step, kept[i].step))
        try:
            kept[i].path.unlink()
        except FileNotFoundError:
            pass
        total -= kept[i].bytes
        removed.append(kept.pop(i).step)
    return removed


def nearest(run_dir: Path, step: int) -> int | None:
    """The kept step closest to ``step`` (the earlier one on a tie), or None."""
    kept = listing(run_dir)
    if not kept:
        return None
    return min(kept, key=lambda k: (abs(k.step - step), k.step)).step
