"""Process settings that make training fast: threads and the memory allocator.

Nothing here changes a result. ``threads`` decides whether the shards of a
batch (see :meth:`engine.model.Model.shard_bounds`) run one after the other or at the same
time; the numbers are the same either way.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading

#: environment variable that sets the default number of training threads
THREADS_ENV = "BACKPROP_THREADS"


def default_threads() -> int:
    """Threads a training step may use: ``$BACKPROP_THREADS``, else 1.

    The command line (``backprop-lab train`` and ``serve``) sets 2 by default; the
    server's workers inherit it.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    try:
        return max(1, int(raw)) if raw else 1
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be a whole number of threads, got {raw!r}") from None


_controller = None
_controller_lock = threading.Lock()


def _blas_controller():
    """threadpoolctl's view of the BLAS libraries NumPy loaded, or None without it."""
    global _controller
    with _controller_lock:
        if _controller is None:
            try:
                from threadpoolctl import ThreadpoolController
                _controller = ThreadpoolController().select(user_api="blas")
            except Exception:          # not installed, or no BLAS it recognises
                _controller = False
        return _controller or None


def can_limit_blas() -> bool:
    return _blas_controller() is not None


def set_blas_threads(n: int) -> bool:
    """Size BLAS's thread pool for the whole process (False without threadpoolctl)."""
    ctl = _blas_controller()
    if ctl is None:
        return False
    for lib in ctl.lib_controllers:
        lib.set_num_threads(int(n))
    return True


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS with one thread inside the block (when threadpoolctl is installed).

    Two shards computed in two Python threads must not each ask OpenBLAS for its whole
    thread pool: measured on 2 cores, a LeNet step then takes twice as long as with one
    BLAS thread per shard.
    """
    ctl = _blas_controller()
    if ctl is None:
        yield
        return
    with ctl.limit(limits=1):
        yield


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS.

    Every training step allocates fresh outputs and gradients of the same sizes. By
    default glibc hands large freed blocks back to the OS and the next step page-faults
    them in again: about 1,500 faults per LeNet step at batch 64, 13-33% of the step on
    the machines we measured (benchmarks/README.md). A fixed mmap threshold and a high
    trim threshold keep them. Process-wide; returns False where glibc is not available.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 256 << 20) and
                libc.mallopt(m_trim_threshold, 1 << 30))
