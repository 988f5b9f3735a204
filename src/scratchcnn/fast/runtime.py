"""How the fast backend runs its work: kernels, worker threads, chunks, scratch buffers, BLAS.

- :func:`kernels` loads the Numba kernels on first use (or says there are none).
- :func:`map_chunks` runs independent chunks of a batch on ``workers`` threads: the calling
  thread and ``workers - 1`` pool threads take the next chunk from a shared counter until none is
  left, so no core waits for a hand-off and a thread the OS pauses delays only its own chunk.
- :func:`sum_over_chunks` adds up what the chunks contribute (weight gradients), one set of
  running sums per worker, in a fixed order.
- :func:`scratch` hands each thread reused buffers for data that lives only inside one chunk.
- :func:`blas_limit` keeps NumPy's BLAS to one thread while the workers run (their products are
  tall and thin; OpenBLAS's own threads would spin-wait against the workers).

Nothing here runs at import; the thread pool is created on first use.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import TypeVar

import numpy as np

from scratchcnn.fast.settings import Settings

T = TypeVar("T")
R = TypeVar("R")

_kernels: ModuleType | None = None
_kernels_tried = False
_kernels_lock = threading.Lock()


def kernels(settings: Settings) -> ModuleType | None:
    """The compiled kernel package :mod:`scratchcnn.fast.kernels`, or ``None`` when Numba is
    missing or ``settings.numba`` is false.

    Call it in the calling thread before handing work to the workers, so that two threads never
    race to import Numba.
    """
    global _kernels, _kernels_tried
    if not settings.numba:
        return None
    with _kernels_lock:
        if not _kernels_tried:
            _kernels_tried = True
            try:
                from scratchcnn.fast import kernels as compiled
            except ImportError:
                compiled = None
            _kernels = compiled
    return _kernels


_executor: ThreadPoolExecutor | None = None
_executor_key = (0, 0)  # (pool threads, process id) the executor was made for
_executor_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """The shared pool of ``threads`` threads (remade in a forked child, whose copy has none)."""
    global _executor, _executor_key
    key = (threads, os.getpid())
    with _executor_lock:
        if _executor is None or _executor_key != key:
            _executor = ThreadPoolExecutor(threads, thread_name_prefix="scratchcnn")
            _executor_key = key
        return _executor


def map_chunks(work: Callable[[T], R], chunks: list[T], workers: int) -> list[R]:
    """``[work(chunk) for chunk in chunks]``, spread over ``workers`` threads, results in order.

    An exception in any chunk is re-raised here after every thread has stopped.
    """
    if workers <= 1 or len(chunks) <= 1:
        return [work(chunk) for chunk in chunks]
    results: list = [None] * len(chunks)
    next_chunk = itertools.count()  # next() on it is atomic under the GIL

    def drain() -> None:
        for index in iter(next_chunk.__next__, None):
            if index >= len(chunks):
                return
            results[index] = work(chunks[index])

    pool = _pool(workers - 1)
    helpers = [pool.submit(drain) for _ in range(min(workers, len(chunks)) - 1)]
    try:
        drain()
    finally:
        for helper in helpers:
            helper.result()  # waits; re-raises a helper's exception
    return results


def sum_over_chunks(
    work: Callable[[T, tuple[np.ndarray, ...]], None],
    chunks: list[T],
    workers: int,
    zeros: Callable[[], tuple[np.ndarray, ...]],
) -> tuple[np.ndarray, ...]:
    """The sums of every chunk's contributions (weight gradients: sums over the whole batch).

    ``work(chunk, sums)`` adds its chunk's share into ``sums``. The chunks are cut into
    ``workers`` runs of consecutive chunks; each run is summed in order into its own running
    sums (made by ``zeros()``) by whichever thread takes it, and the runs' sums are added in
    order at the end. So there is one set of sums per worker, not one per chunk, and the result
    is the same floating-point number every time, whichever thread ran when (a trained model
    resumes exactly).
    """
    runs = even_slices(len(chunks), max(1, min(workers, len(chunks))))

    def run_sums(run: slice) -> tuple[np.ndarray, ...]:
        sums = zeros()
        for chunk in chunks[run]:
            work(chunk, sums)
        return sums

    parts = map_chunks(run_sums, runs, workers)
    for other in parts[1:]:
        for total, part in zip(parts[0], other, strict=True):
            total += part
    return parts[0]


def even_slices(n: int, parts: int) -> list[slice]:
    """``range(n)`` cut into ``parts`` consecutive slices whose lengths differ by at most one."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def batch_chunks(n: int, most: int, workers: int) -> list[slice]:
    """A batch of ``n`` images cut into chunks of at most ``most`` images, for the workers.

    The chunks are as even as possible and, when there are enough images, their number is a
    multiple of ``workers``, so that no worker is left alone with a last, lopsided chunk. An
    empty batch has no chunks.
    """
    if n == 0:
        return []
    count = -(-n // max(1, most))  # ceil
    workers = max(1, workers)
    if n >= workers:
        count = min(n, -(-count // workers) * workers)
    return even_slices(n, count)


def split_batch(work: Callable[[slice], None], n: int, nbytes: int, settings: Settings) -> None:
    """Run ``work(images)`` on even slices of a batch of ``n`` images (or of a flat array's ``n``
    elements), one per worker.

    For the memory-bound and element-wise kernels between the convolutions (pooling, ReLU,
    GELU): each worker's kernel reads and writes only its own part of memory. Below
    ``settings.split_min_bytes`` (``nbytes`` being the data's size) it runs in one piece.
    """
    parts = min(n, settings.workers) if nbytes >= settings.split_min_bytes else 1
    map_chunks(work, even_slices(n, max(1, parts)), settings.workers)


_thread_scratch = threading.local()


def scratch(slot: int, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A reused, uninitialised C-contiguous buffer of the calling thread (one per ``slot``).

    Data that lives only inside one chunk (im2col rows, transformed tiles) goes here instead of
    a fresh allocation (and its page faults) per chunk. The contents are valid only until the
    same thread asks for the same slot again.
    """
    buffers = getattr(_thread_scratch, "buffers", None)
    if buffers is None:
        buffers = _thread_scratch.buffers = {}
    size = math.prod(shape) * np.dtype(dtype).itemsize
    buffer = buffers.get(slot)
    if buffer is None or buffer.size < size:
        buffer = buffers[slot] = np.empty(size, dtype=np.uint8)
    return buffer[:size].view(dtype).reshape(shape)


_blas_lock = threading.Lock()
_blas_depth = 0  # open blas_limit scopes, in any thread
_blas_limiter = None  # threadpoolctl's limiter of the outermost scope
_blas_controller = None


@contextlib.contextmanager
def blas_limit(threads: int | None) -> Iterator[None]:
    """A scope in which NumPy's BLAS uses ``threads`` threads; the previous limit is restored when
    the last open scope closes.

    Scopes nest and may be opened from several threads: the first one sets the limit, the last
    one to close restores it (the limit is the process's, so there is one count for all threads).
    Does nothing for ``None`` or without threadpoolctl.
    """
    global _blas_depth, _blas_limiter, _blas_controller
    if threads is None:
        yield
        return
    with _blas_lock:
        if _blas_controller is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                _blas_controller = False
            else:
                _blas_controller = ThreadpoolController().select(user_api="blas")
        if _blas_controller is not False and _blas_depth == 0:
            _blas_limiter = _blas_controller.limit(limits=threads)
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def storage_dtype(dtype: np.dtype | type, settings: Settings) -> np.dtype:
    """The dtype in which a forward pass keeps a ``dtype`` array for backward: float16 for float32
    arrays when ``settings.storage`` is ``"float16"`` (mixed precision), else ``dtype`` itself."""
    if settings.storage == "float16" and np.dtype(dtype) == np.float32:
        return np.dtype(np.float16)
    return np.dtype(dtype)


def stored(a: np.ndarray, settings: Settings) -> np.ndarray:
    """``a`` as a forward pass keeps it for backward (see :func:`storage_dtype`): a copy in its
    own memory layout when that dtype differs, else ``a`` itself.

    Shape: any -> same.
    """
    dtype = storage_dtype(a.dtype, settings)
    return a if dtype == a.dtype else a.astype(dtype, order="K")


def restored(a: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """A kept array back in the compute dtype (a copy only if it was stored in float16).

    Shape: any -> same.
    """
    return a.astype(dtype, order="K") if a.dtype == np.float16 else a
