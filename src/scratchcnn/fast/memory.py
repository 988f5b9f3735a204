"""An explicit, opt-in allocator setting for long training runs (glibc only).

A training step allocates and frees batch-sized arrays (activations, gradients, im2col rows of
several MB). By default glibc serves blocks this large with ``mmap`` and returns them to the OS
on ``free``, so every step page-faults them in again: about 2,200 page faults per seed-model
step, which measured 41 ms -> 26 ms per step when removed (idle 2-core VM). With ``mmap`` off
(glibc's largest mmap threshold, 32 MB, is below the 63 MB activations of airbench's first
block at batch 256) and no trimming, the next step reuses the blocks. Peak memory is
unchanged: the process keeps what it peaked at.

This changes the whole process's allocator, so the library never does it on its own: the
trainer (:func:`scratchcnn.training.train`), the benchmark and the command line call
:func:`keep_freed_memory`; a program embedding scratchcnn decides for itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_applied = False
_lock = threading.Lock()

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Keep freed large blocks in the heap for reuse (glibc's ``mallopt``); once per process.

    Returns whether the setting is in effect (``False`` off glibc, where nothing changes).
    """
    global _applied
    with _lock:
        if _applied:
            return True
        try:
            mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
        except (OSError, AttributeError, TypeError):  # not glibc: nothing to tune
            return False
        mallopt(_M_MMAP_MAX, 0)  # every block from the heap, however large
        mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # and freed blocks kept there for the next step
        _applied = True
        return True
