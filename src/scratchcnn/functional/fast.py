"""The "fast" backend: the math of ``conv`` and ``pool``, laid out for speed.

The API is unchanged (NCHW arrays in, NCHW arrays out), but inside, images are channels-last
(NHWC): an im2col row is then ``KH * KW`` contiguous runs of ``C`` channels, the output of the
matrix product ``cols @ weight_rows.T`` is already ``(N, OH, OW, OC)``, and no transpose copy is
needed. The arrays returned have NCHW *shape* with NHWC *memory* (``out.transpose(0, 3, 1, 2)``
of a contiguous NHWC buffer), exactly like PyTorch's ``channels_last`` format: every NumPy
operation sees the same logical values, and the next fast layer reads them without copying.

The loops (im2col, col2im, pooling, ReLU) run as Numba kernels (:mod:`.fast_numba`) when Numba is
installed, and as NumPy slab operations otherwise; set ``USE_NUMBA = False`` to force the NumPy
path (tests do this). The matrix products always go to NumPy's BLAS. With Numba, 3x3 stride-1
convolutions run on Winograd F(2x2, 3x3) instead of im2col (:mod:`.winograd`).

Output sizes follow ``functional.conv``: ``out = floor((in + p0 + p1 - d(k - 1) - 1) / s) + 1``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from scratchcnn.functional import winograd
from scratchcnn.functional.conv import Pad2d, conv_output_size, kernel_offset_slices

# Use the Numba kernels when Numba can be imported. Tests set this to False to cover the
# NumPy-only path that runs wherever Numba is missing.
USE_NUMBA = True

# Threads NumPy's BLAS may use inside the fast backend: in the convolution's matrix products, and
# (through ``backend.compute_scope``) in a whole Sequential model's forward and backward, Linear
# layers included. These products are tall and thin (``(N*OH*OW, KH*KW*C) @ (KH*KW*C, OC)``; the
# weight gradient reduces all ``N*OH*OW`` rows into a small matrix). OpenBLAS splits them across
# threads that spin-wait for each other, and on the shared 2-core machine (other processes
# running) a training step measured 3-8x slower with 2 BLAS threads than with 1. ``None`` leaves
# BLAS alone. Needs threadpoolctl (without it, this setting does nothing).
BLAS_THREADS: int | None = 1

_blas_controller = None

# Inputs with fewer channels than this keep their im2col matrix from forward to backward: their
# rows are built from C-element copies (3 for RGB), slow per byte, and the matrix is small.
KEEP_COLS_BELOW_CHANNELS = 8

# Threads that run the convolution's batch chunks (the caller plus WORKERS - 1 pool threads; also
# the pooling kernels' and Linear's halves). Each chunk is independent work (im2col, a one-thread
# BLAS product, col2im) taken from a shared counter, so a thread that the OS pauses delays only its
# own chunk instead of stalling a spin-waiting partner. 1 runs everything in the caller.
# (Under heavy load from other processes, 2 workers measured within 10% of 1 worker; on an idle
# machine 2 run the seed model's conv2 forward + backward 1.6x faster than 1.)
WORKERS = os.cpu_count() or 1

_executor: ThreadPoolExecutor | None = None
_executor_key = (0, 0)  # (WORKERS, process id) the executor was made for

# Bytes of im2col rows built at once: the convolution runs a few images at a time so that the
# rows stay in the core's L2 cache between being written and being multiplied.
CHUNK_BYTES = 1 << 21

_kernels: ModuleType | None = None
_kernels_tried = False


def numba_kernels() -> ModuleType | None:
    """The compiled kernel module, or ``None`` when Numba is missing or ``USE_NUMBA`` is false.

    Numba is imported on first use only, so ``import scratchcnn`` stays quick.
    """
    global _kernels, _kernels_tried
    if not USE_NUMBA:
        return None
    if not _kernels_tried:
        _kernels_tried = True
        try:
            from scratchcnn.functional import fast_numba
        except ImportError:
            fast_numba = None
        _kernels = fast_numba
    return _kernels


# Keep freed large blocks in the process's heap (glibc only). A training step allocates and frees
# batch-sized arrays (8 MB activations and gradients, 7 MB of RGB im2col rows). By default glibc
# serves blocks this large with mmap and returns them to the OS on free, so every step page-faults
# them in again: ~2200 page faults per seed-model step, which measured 41 ms -> 26 ms per step
# when removed (idle 2-core VM). With a 32 MB mmap threshold (above any of these arrays) and no
# trimming, the next step reuses the blocks. Peak memory is unchanged (the process keeps what it
# peaked at). ``False`` leaves malloc alone.
KEEP_FREED_MEMORY = True

_allocator_tuned = False


def _tune_allocator() -> None:
    """Apply ``KEEP_FREED_MEMORY`` once per process (a no-op off glibc)."""
    global _allocator_tuned
    if _allocator_tuned or not KEEP_FREED_MEMORY:
        return
    _allocator_tuned = True
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 1 << 30)


_blas_limit_depth = 0  # > 0 while inside blas_limit(): nested scopes are free


@contextlib.contextmanager
def blas_limit() -> Iterator[None]:
    """A scope in which NumPy's BLAS uses ``BLAS_THREADS`` threads.

    Does nothing without threadpoolctl or when ``BLAS_THREADS`` is ``None``; nested scopes cost
    nothing (the outermost one sets and restores the limit).
    """
    global _blas_controller, _blas_limit_depth
    _tune_allocator()
    if BLAS_THREADS is None or _blas_limit_depth > 0:
        yield
        return
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            yield
            return
        _blas_controller = ThreadpoolController().select(user_api="blas")
    _blas_limit_depth += 1
    try:
        with _blas_controller.limit(limits=BLAS_THREADS):
            yield
    finally:
        _blas_limit_depth -= 1


def _map_chunks(work, chunks: list) -> list:
    """``[work(chunk) for chunk in chunks]``, spread over ``WORKERS`` threads, in order.

    The calling thread is one of the workers: it and ``WORKERS - 1`` pool threads take the next
    chunk from a shared counter until none is left, so no core sits idle waiting for a hand-off
    (a thread wake-up costs tens of microseconds; a training step makes a dozen of these calls).
    """
    global _executor, _executor_key
    if WORKERS <= 1 or len(chunks) <= 1:
        return [work(chunk) for chunk in chunks]
    # A forked child (e.g. a data-loader process) inherits the executor but not its threads.
    key = (WORKERS, os.getpid())
    if _executor is None or _executor_key != key:
        _executor = ThreadPoolExecutor(WORKERS - 1, thread_name_prefix="scratchcnn")
        _executor_key = key
    results = [None] * len(chunks)
    next_chunk = itertools.count()  # next() on it is atomic under the GIL

    def drain() -> None:
        for index in iter(next_chunk.__next__, None):
            if index >= len(chunks):
                return
            results[index] = work(chunks[index])

    helpers = [_executor.submit(drain) for _ in range(min(WORKERS, len(chunks)) - 1)]
    try:
        drain()
    finally:
        for helper in helpers:
            helper.result()  # waits; re-raises a helper's exception
    return results


# Pooling kernels are split over the workers only above this many bytes of input: below it, handing
# the halves to the threads costs more than it saves.
SPLIT_MIN_BYTES = 1 << 18


def _split_batch(work, n: int, nbytes: int) -> None:
    """Run ``work(images)`` on ``WORKERS`` even slices of a batch of ``n`` images, in parallel.

    For the memory-bound Numba kernels (pooling) that run between the convolutions: each
    worker's kernel reads and writes only its own images, and releases the GIL.
    """
    parts = min(n, max(1, WORKERS)) if nbytes >= SPLIT_MIN_BYTES else 1
    _map_chunks(work, _even_slices(n, parts))


def _even_slices(n: int, parts: int) -> list[slice]:
    """``range(n)`` cut into ``parts`` consecutive slices whose lengths differ by at most one."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


_thread_scratch = threading.local()


def _scratch(slot: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A reused, uninitialised C-contiguous buffer of this thread (one per ``slot``).

    im2col rows and column gradients are built chunk by chunk and dropped at once; reusing one
    cache-sized buffer per worker thread saves an allocation (and its page faults) per chunk.
    The contents are only valid until the same thread asks for the same slot again.
    """
    buffers = getattr(_thread_scratch, "buffers", None)
    if buffers is None:
        buffers = _thread_scratch.buffers = {}
    size = math.prod(shape) * np.dtype(dtype).itemsize
    buffer = buffers.get(slot)
    if buffer is None or buffer.size < size:
        buffer = buffers[slot] = np.empty(size, dtype=np.uint8)
    return buffer[:size].view(dtype).reshape(shape)


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """A channels-last view of an NCHW array (no copy).

    Shape: ``(N, C, H, W) -> (N, H, W, C)``.
    """
    return x.transpose(0, 2, 3, 1)


def to_nchw(x: np.ndarray) -> np.ndarray:
    """An NCHW view of a channels-last array (no copy).

    Shape: ``(N, H, W, C) -> (N, C, H, W)``.
    """
    return x.transpose(0, 3, 1, 2)


def _out_hw(hw: tuple[int, int], kernel_size, stride, padding: Pad2d, dilation) -> tuple[int, int]:
    return (
        conv_output_size(hw[0], kernel_size[0], stride[0], padding[0], dilation[0]),
        conv_output_size(hw[1], kernel_size[1], stride[1], padding[1], dilation[1]),
    )


def _pad_nhwc(x: np.ndarray, padding: Pad2d, value: float) -> np.ndarray:
    (top, bottom), (left, right) = padding
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _windows_nhwc(x_padded, kernel_size, stride, dilation, out_hw) -> np.ndarray:
    """Read-only view ``(N, Hp, Wp, C) -> (N, OH, OW, KH, KW, C)``."""
    n, _, _, c = x_padded.shape
    s_n, s_h, s_w, s_c = x_padded.strides
    return as_strided(
        x_padded,
        shape=(n, *out_hw, *kernel_size, c),
        strides=(s_n, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1], s_c),
        writeable=False,
    )


def im2col_nhwc(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Unroll every receptive field of a channels-last batch into a contiguous row.

    Shape: ``x (N, H, W, C)`` (any strides) -> ``(N, OH, OW, KH * KW * C)``, columns ordered
    ``(kh, kw, c)``, matching ``weight.transpose(0, 2, 3, 1).reshape(OC, -1)``; written into
    ``out`` (C-contiguous) when given.
    """
    n, h, w, c = x.shape
    out_hw = _out_hw((h, w), kernel_size, stride, padding, dilation)
    kernels = numba_kernels()
    if c < KEEP_COLS_BELOW_CHANNELS and dilation[1] == 1:
        return _im2col_runs(x, kernel_size, stride, padding, dilation[0], out_hw, out)
    if kernels is None:
        windows = _windows_nhwc(_pad_nhwc(x, padding, 0.0), kernel_size, stride, dilation, out_hw)
        cols = windows.reshape(n, *out_hw, -1)  # (N, OH, OW, KH*KW*C), a copy
        if out is None:
            return cols
        out[...] = cols
        return out
    if out is None:
        out = np.empty((n, *out_hw, kernel_size[0] * kernel_size[1] * c), dtype=x.dtype)
    kernels.im2col(x, *kernel_size, *stride, padding[0][0], padding[1][0], *dilation, out)
    return out


def _im2col_runs(x, kernel_size, stride, padding: Pad2d, dil_h: int, out_hw, out) -> np.ndarray:
    """:func:`im2col_nhwc` for few channels and undilated columns, copied in whole kernel rows.

    In a zero-padded, C-contiguous copy of ``x`` the ``KW * C`` values under one kernel row are
    contiguous, so the rows come from one strided view ``(N, OH, OW, KH, KW*C)`` copied with runs
    of ``KW * C`` values (27 values in 3 runs of 9 for a 3x3 RGB kernel), not ``KH * KW`` runs of
    ``C`` (3-value copies, which made the per-element loop slow).
    """
    n, h, w, c = x.shape
    (top, bottom), (left, right) = padding
    padded = _scratch(2, (n, h + top + bottom, w + left + right, c), x.dtype)
    if top or bottom or left or right:
        padded.fill(0)
    padded[:, top : top + h, left : left + w] = x
    s_n, s_h, s_w, s_c = padded.strides
    run = kernel_size[1] * c
    windows = as_strided(
        padded,
        shape=(n, *out_hw, kernel_size[0], run),
        strides=(s_n, s_h * stride[0], s_w * stride[1], s_h * dil_h, s_c),
        writeable=False,
    )  # (N, OH, OW, KH, KW*C)
    if out is None:
        out = np.empty((n, *out_hw, kernel_size[0] * run), dtype=x.dtype)
    np.copyto(out.reshape(n, *out_hw, kernel_size[0], run), windows)
    return out


def col2im_nhwc(
    cols: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Fold column gradients back onto a channels-last image, summing overlaps (im2col's adjoint).

    Shape: ``cols (N, OH, OW, KH * KW * C)``, ``input_shape (N, H, W, C)`` -> ``(N, H, W, C)``,
    written into ``out`` (C-contiguous) when given.
    """
    n, h, w, c = input_shape
    kernels = numba_kernels()
    if kernels is not None:
        out = np.empty(input_shape, dtype=cols.dtype) if out is None else out
        kernels.col2im(
            np.ascontiguousarray(cols),
            *kernel_size,
            *stride,
            padding[0][0],
            padding[1][0],
            *dilation,
            out,
        )
        return out
    (top, bottom), (left, right) = padding
    out_h, out_w = cols.shape[1:3]
    slabs = cols.reshape(n, out_h, out_w, kernel_size[0], kernel_size[1], c)
    grad_padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=cols.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            rows, columns = kernel_offset_slices((i, j), stride, dilation, (out_h, out_w))
            grad_padded[:, rows, columns] += slabs[:, :, :, i, j]
    if out is None:
        return grad_padded[:, top : top + h, left : left + w]
    out[...] = grad_padded[:, top : top + h, left : left + w]
    return out


def _weight_rows(weight: np.ndarray) -> np.ndarray:
    """Shape: ``(OC, C, KH, KW) -> (OC, KH * KW * C)``, the column order of ``im2col_nhwc``."""
    return weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)


def _chunks(n: int, x_shape_nhwc, out_hw, kernel_size, itemsize: int) -> list[slice]:
    """The batch cut into chunks whose im2col rows fit in ``CHUNK_BYTES``, for the workers.

    The chunks are as even as possible and, when there are enough images, their number is a
    multiple of ``WORKERS``, so that no worker is left alone with a last, lopsided chunk.
    """
    per_image = out_hw[0] * out_hw[1] * kernel_size[0] * kernel_size[1] * x_shape_nhwc[3]
    most = max(1, CHUNK_BYTES // (per_image * itemsize))
    count = -(-n // most)  # ceil
    workers = max(1, WORKERS)
    if n >= workers:
        count = min(n, -(-count // workers) * workers)
    return _even_slices(n, count)


class ConvSaved(NamedTuple):
    """What the fast convolution keeps for backward.

    ``x_nhwc`` is the input as a channels-last view ``(N, H, W, C)``. ``cols`` is its im2col
    matrix ``(N, OH, OW, KH*KW*C)`` when the input has fewer than ``KEEP_COLS_BELOW_CHANNELS``
    channels, else ``None`` and backward rebuilds it chunk by chunk.
    """

    x_nhwc: np.ndarray
    cols: np.ndarray | None


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
    for_backward: bool = True,
) -> tuple[np.ndarray, ConvSaved | None]:
    """2-D cross-correlation, computed channels-last a few images at a time.

    Same contract as ``conv.conv2d_forward``, except for what is kept for backward: the input
    itself, and its im2col matrix only for inputs with few channels (see :class:`ConvSaved`).
    With many channels, rebuilding the matrix in backward (long contiguous copies) is cheaper
    than writing and re-reading a matrix ``KH*KW`` times the input's size; with few (an RGB
    image: 3-element copies) it is not. With ``for_backward=False`` (inference) nothing is kept,
    the im2col rows live only in a reused per-thread buffer, and ``None`` comes back instead.

    Shape: ``x (N, C, H, W)``, ``weight (OC, C, KH, KW)``, ``bias (OC,)`` ->
    ``out (N, OC, OH, OW)`` (channels-last memory), and a :class:`ConvSaved` for backward.
    """
    x_nhwc = to_nhwc(x)
    if winograd.applies(x_nhwc.shape, weight.shape, stride, dilation):
        out = winograd.conv2d_forward(x_nhwc, weight, bias, padding)
        return to_nchw(out), (ConvSaved(x_nhwc, None) if for_backward else None)
    n, h, w, _ = x_nhwc.shape
    kernel_size = weight.shape[2:]
    out_channels = weight.shape[0]
    out_h, out_w = _out_hw((h, w), kernel_size, stride, padding, dilation)
    weight_cols = _weight_rows(weight).T  # (KH*KW*C, OC)
    out = np.empty((n, out_h, out_w, out_channels), dtype=np.result_type(x, weight))
    chunks = _chunks(n, x_nhwc.shape, (out_h, out_w), kernel_size, x.itemsize)
    width = kernel_size[0] * kernel_size[1] * x_nhwc.shape[3]
    kernels = numba_kernels()  # loaded here, not racing in the worker threads
    kept = None
    if for_backward and x_nhwc.shape[3] < KEEP_COLS_BELOW_CHANNELS:
        kept = np.empty((n, out_h, out_w, width), dtype=x.dtype)

    def forward_chunk(images: slice) -> None:
        # Small enough to stay in cache between im2col writing it and the product reading it.
        x_chunk = x_nhwc[images]
        if kept is not None:
            buffer = kept[images]
        else:
            buffer = _scratch(0, (x_chunk.shape[0], out_h, out_w, width), x.dtype)
        cols = im2col_nhwc(x_chunk, kernel_size, stride, padding, dilation, out=buffer)
        rows = out[images].reshape(-1, out_channels)  # (b*OH*OW, OC) view
        np.matmul(cols.reshape(rows.shape[0], -1), weight_cols, out=rows)
        if bias is not None and kernels is not None:
            kernels.add_bias(rows, bias.astype(rows.dtype, copy=False))
        elif bias is not None:
            rows += bias

    with blas_limit():
        _map_chunks(forward_chunk, chunks)
    return to_nchw(out), (ConvSaved(x_nhwc, kept) if for_backward else None)


def conv2d_backward(
    grad_out: np.ndarray,
    saved: ConvSaved,
    input_shape: tuple[int, int, int, int],
    weight: np.ndarray,
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
    need_input_grad: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of the fast convolution, a few images at a time.

    Same contract as ``conv.conv2d_backward``, but takes what ``conv2d_forward`` kept.

    Shape: ``grad_out (N, OC, OH, OW)``, ``saved.x_nhwc (N, H, W, C)`` ->
    ``grad_x (N, C, H, W)`` (channels-last memory; ``None`` unless ``need_input_grad``),
    ``grad_w (OC, C, KH, KW)``, ``grad_b (OC,)``.
    """
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    kernel_size = (kernel_h, kernel_w)
    x_nhwc = saved.x_nhwc
    n, h, w, c = x_nhwc.shape
    grad_nhwc = np.ascontiguousarray(to_nhwc(grad_out))  # free if already channels-last memory
    if winograd.applies(x_nhwc.shape, weight.shape, stride, dilation):
        grad_x, grad_w, grad_b = winograd.conv2d_backward(
            x_nhwc, grad_nhwc, weight, padding, need_input_grad
        )
        return (None if grad_x is None else to_nchw(grad_x)), grad_w, grad_b
    out_h, out_w = grad_nhwc.shape[1:3]
    weight_rows = _weight_rows(weight)  # (OC, KH*KW*C)
    grad_x = np.empty((n, h, w, c), dtype=grad_out.dtype) if need_input_grad else None
    chunks = _chunks(n, x_nhwc.shape, (out_h, out_w), kernel_size, x_nhwc.itemsize)
    largest = max(images.stop - images.start for images in chunks)
    ones = np.ones(largest * out_h * out_w, dtype=grad_nhwc.dtype)

    def backward_chunk(images: slice) -> tuple[np.ndarray, np.ndarray]:
        """Fill this chunk's input gradient; return its shares of the weight and bias gradients."""
        start, stop = images.start, images.stop
        width = weight_rows.shape[1]
        if saved.cols is not None:
            cols = saved.cols[start:stop]
        else:
            buffer = _scratch(0, (stop - start, out_h, out_w, width), x_nhwc.dtype)
            cols = im2col_nhwc(x_nhwc[start:stop], kernel_size, stride, padding, dilation, buffer)
        cols_2d = cols.reshape(-1, width)  # (b*OH*OW, KH*KW*C)
        grad_rows = grad_nhwc[start:stop].reshape(-1, out_channels)  # (b*OH*OW, OC)
        if grad_x is not None:
            grad_cols = _scratch(1, cols.shape, grad_rows.dtype)
            np.matmul(grad_rows, weight_rows, out=grad_cols.reshape(cols_2d.shape))
            out = grad_x[start:stop]
            col2im_nhwc(grad_cols, out.shape, kernel_size, stride, padding, dilation, out=out)
        # The bias gradient as a BLAS product with ones: grad_rows.sum(axis=0) reduces a tall,
        # narrow array one short row at a time and measured ~10x slower.
        grad_b = ones[: grad_rows.shape[0]] @ grad_rows
        # (cols^T g)^T, not g^T cols: the same (OC, KH*KW*C) product, which OpenBLAS makes up
        # to 1.4x faster this way round for thin rows (conv1's 27 columns; never slower).
        return (cols_2d.T @ grad_rows).T, grad_b  # (OC, KH*KW*C), (OC,)

    numba_kernels()  # load once here, not racing in the worker threads
    with blas_limit():
        partial_grads = _map_chunks(backward_chunk, chunks)
    grad_w_rows = np.sum([weight_part for weight_part, _ in partial_grads], axis=0)
    grad_b = np.sum([bias_part for _, bias_part in partial_grads], axis=0)
    grad_w = grad_w_rows.reshape(out_channels, kernel_h, kernel_w, in_channels)
    return (
        None if grad_x is None else to_nchw(grad_x),
        grad_w.transpose(0, 3, 1, 2),  # (OC, C, KH, KW)
        grad_b,
    )


def max_pool2d_forward(
    x: np.ndarray, kernel_size: tuple[int, int], stride: tuple[int, int], padding: Pad2d
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum of each window, computed channels-last; padding never wins.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)`` (channels-last memory); also returns the flat
    argmax ``kh * KW + kw`` inside each window as ``(N, OH, OW, C)`` int32 (channels-last, unlike
    the reference backend). Ties go to the first position in the window.
    """
    x_nhwc = to_nhwc(x)
    n, h, w, c = x_nhwc.shape
    out_hw = _out_hw((h, w), kernel_size, stride, padding, (1, 1))
    kernels = numba_kernels()
    if kernels is None:
        padded = _pad_nhwc(x_nhwc, padding, -np.inf)
        windows = _windows_nhwc(padded, kernel_size, stride, (1, 1), out_hw)
        flat = windows.reshape(n, *out_hw, -1, c)  # (N, OH, OW, KH*KW, C)
        argmax = flat.argmax(axis=3).astype(np.int32)
        out = np.take_along_axis(flat, argmax[:, :, :, None, :], axis=3)[:, :, :, 0]
        return to_nchw(out), argmax
    out = np.empty((n, *out_hw, c), dtype=x.dtype)
    argmax = np.empty((n, *out_hw, c), dtype=np.int32)
    no_padding = padding == ((0, 0), (0, 0))
    if kernel_size == (2, 2) and stride == (2, 2) and no_padding:

        def pool_images(images: slice) -> None:
            kernels.max_pool_2x2(x_nhwc[images], out[images], argmax[images])
    else:
        geometry = (*kernel_size, *stride, padding[0][0], padding[1][0])

        def pool_images(images: slice) -> None:
            kernels.max_pool(x_nhwc[images], *geometry, out[images], argmax[images])

    _split_batch(pool_images, n, x.nbytes)
    return to_nchw(out), argmax


def relu_max_pool2d_forward(
    x: np.ndarray, kernel_size: tuple[int, int], stride: tuple[int, int], padding: Pad2d
) -> np.ndarray:
    """``max_pool(relu(x))`` for inference, in one pass and without argmax.

    ReLU is monotone, so it commutes with a maximum: ``max_pool(relu(x)) == relu(max_pool(x))``.
    The seed model's 2x2 / stride-2 pool reads each input once and writes each output once; the
    full-size ReLU output is never written.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)`` (channels-last memory).
    """
    kernels = numba_kernels()
    no_padding = padding == ((0, 0), (0, 0))
    if kernels is None or not (kernel_size == (2, 2) and stride == (2, 2) and no_padding):
        pooled, _ = max_pool2d_forward(x, kernel_size, stride, padding)
        return relu_forward(pooled)[0]
    x_nhwc = to_nhwc(x)
    n, h, w, c = x_nhwc.shape
    out = np.empty((n, h // 2, w // 2, c), dtype=x.dtype)
    zeros = np.zeros(c, dtype=x.dtype)

    def pool_images(images: slice) -> None:
        kernels.max_pool_2x2_bias_relu(x_nhwc[images], zeros, out[images])

    _split_batch(pool_images, n, x.nbytes)
    return to_nchw(out)


def conv2d_relu_max_pool2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
    pool_kernel_size: tuple[int, int],
    pool_stride: tuple[int, int],
    pool_padding: Pad2d,
) -> np.ndarray:
    """``max_pool(relu(conv2d(x)))`` for inference, pooled while each chunk is in cache.

    For the seed model's 2x2 / stride-2 pool, each chunk's convolution output goes to a reused
    per-thread buffer and is pooled at once, so the full-size output is never written to memory;
    the bias is added after pooling (a per-channel constant commutes with the maximum). A 3x3,
    stride-1 convolution runs on :mod:`.winograd`, whose 2x2 output tiles are the pool windows.
    Other pools, or no Numba, fall back to the three steps one after another.

    Shape: ``x (N, C, H, W)``, ``weight (OC, C, KH, KW)``, ``bias (OC,)`` ->
    ``(N, OC, OH // 2, OW // 2)`` (channels-last memory).
    """
    kernels = numba_kernels()
    fusable = pool_kernel_size == (2, 2) and pool_stride == (2, 2)
    if kernels is None or not fusable or pool_padding != ((0, 0), (0, 0)):
        out, _ = conv2d_forward(x, weight, bias, stride, padding, dilation, for_backward=False)
        return relu_max_pool2d_forward(out, pool_kernel_size, pool_stride, pool_padding)
    x_nhwc = to_nhwc(x)
    if winograd.applies(x_nhwc.shape, weight.shape, stride, dilation, pooled=True):
        return to_nchw(winograd.conv2d_relu_max_pool2d_forward(x_nhwc, weight, bias, padding))
    n, h, w, c = x_nhwc.shape
    kernel_size = weight.shape[2:]
    out_channels = weight.shape[0]
    out_h, out_w = _out_hw((h, w), kernel_size, stride, padding, dilation)
    dtype = np.result_type(x, weight)
    weight_cols = _weight_rows(weight).T  # (KH*KW*C, OC)
    width = weight_cols.shape[0]
    bias = np.zeros(out_channels, dtype=dtype) if bias is None else bias.astype(dtype, copy=False)
    pooled = np.empty((n, out_h // 2, out_w // 2, out_channels), dtype=dtype)
    chunks = _chunks(n, x_nhwc.shape, (out_h, out_w), kernel_size, x.itemsize)

    def forward_chunk(images: slice) -> None:
        x_chunk = x_nhwc[images]
        count = x_chunk.shape[0]
        cols = _scratch(0, (count, out_h, out_w, width), x.dtype)
        im2col_nhwc(x_chunk, kernel_size, stride, padding, dilation, out=cols)
        conv_out = _scratch(1, (count, out_h, out_w, out_channels), dtype)
        np.matmul(cols.reshape(-1, width), weight_cols, out=conv_out.reshape(-1, out_channels))
        kernels.max_pool_2x2_bias_relu(conv_out, bias, pooled[images])

    with blas_limit():
        _map_chunks(forward_chunk, chunks)
    return to_nchw(pooled)


def pools_on_winograd(
    x_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pool_kernel_size: tuple[int, int],
    pool_stride: tuple[int, int],
    pool_padding: Pad2d,
) -> bool:
    """Whether a conv, ReLU, max-pool run on an NCHW input of ``x_shape`` pools inside Winograd's
    tiles (a 3x3 stride-1 convolution, a 2x2 / stride-2 pool): what
    :func:`conv2d_relu_max_pool2d_chain` takes."""
    nhwc_shape = (x_shape[0], x_shape[2], x_shape[3], x_shape[1])
    return (
        pool_kernel_size == (2, 2)
        and pool_stride == (2, 2)
        and pool_padding == ((0, 0), (0, 0))
        and winograd.applies(nhwc_shape, weight_shape, stride, dilation, pooled=True)
    )


def conv2d_relu_max_pool2d_chain(x: np.ndarray, blocks: list) -> np.ndarray:
    """Conv + ReLU + max-pool blocks in a row, for inference, each chunk of images through all of
    them while it is in cache (:func:`.winograd.conv_relu_pool_chain`).

    ``blocks`` lists ``(weight, bias or None, padding)`` of blocks that each pass
    :func:`pools_on_winograd` on their input.

    Shape: ``x (N, C, H, W)`` -> the last block's pooled ``(N, OC, PH, PW)`` (channels-last
    memory).
    """
    return to_nchw(winograd.conv_relu_pool_chain(to_nhwc(x), blocks))


def max_pool2d_backward(
    grad_out: np.ndarray,
    argmax: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
) -> np.ndarray:
    """Route each output gradient to the input that won its window.

    Shape: ``grad_out (N, C, OH, OW)``, ``argmax (N, OH, OW, C)`` -> ``grad_x (N, C, H, W)``
    (channels-last memory).
    """
    n, c, h, w = input_shape
    grad_nhwc = to_nhwc(grad_out)
    kernels = numba_kernels()
    if kernels is not None:
        out = np.empty((n, h, w, c), dtype=grad_out.dtype)
        if kernel_size == (2, 2) and stride == (2, 2) and padding == ((0, 0), (0, 0)):

            def route_images(images: slice) -> None:
                kernels.max_pool_2x2_backward(grad_nhwc[images], argmax[images], out[images])
        else:
            geometry = (kernel_size[1], *stride, padding[0][0], padding[1][0])

            def route_images(images: slice) -> None:
                kernels.max_pool_backward(grad_nhwc[images], argmax[images], *geometry, out[images])

        _split_batch(route_images, n, out.nbytes)
        return to_nchw(out)
    (top, bottom), (left, right) = padding
    out_h, out_w = grad_nhwc.shape[1:3]
    grad_padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=grad_out.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            rows, columns = kernel_offset_slices((i, j), stride, (1, 1), (out_h, out_w))
            won = argmax == i * kernel_size[1] + j
            grad_padded[:, rows, columns] += np.where(won, grad_nhwc, 0)
    return to_nchw(grad_padded[:, top : top + h, left : left + w])


# Products smaller than this many multiply-adds run in the caller alone: below it, handing halves to
# the workers costs more than it saves.
SPLIT_MIN_PRODUCT = 1 << 22


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays, split across ``WORKERS`` threads of one-thread BLAS.

    A Linear layer's products are made while the convolution workers are idle. The longest of
    the three dimensions is split: the output's rows or columns (each worker writes its own
    block), or the shared inner dimension (each worker makes a partial product; they are
    summed). The seed model's ``(64, 4096) @ (4096, 128)`` splits its inner dimension, and its
    weight and input gradients (``4096`` output columns) their columns.

    Shape: ``a (M, K)``, ``b (K, N)`` -> ``(M, N)``.
    """
    (rows, inner), columns = a.shape, b.shape[1]
    parts = min(max(1, WORKERS), max(rows, inner, columns))
    if parts <= 1 or rows * inner * columns < SPLIT_MIN_PRODUCT:
        return a @ b
    with blas_limit():
        if inner >= max(rows, columns):
            partial = _map_chunks(lambda k: a[:, k] @ b[k], _even_slices(inner, parts))
            return np.sum(partial, axis=0, dtype=partial[0].dtype)
        out = np.empty((rows, columns), dtype=np.result_type(a, b))
        if rows >= columns:

            def rows_block(block: slice) -> None:
                np.matmul(a[block], b, out=out[block])

            _map_chunks(rows_block, _even_slices(rows, parts))
        else:

            def columns_block(block: slice) -> None:
                np.matmul(a, b[:, block], out=out[:, block])

            _map_chunks(columns_block, _even_slices(columns, parts))
        return out


def _flat_view(a: np.ndarray) -> np.ndarray | None:
    """``a``'s elements in memory order as a 1-D view, or ``None`` if that needs a copy."""
    flat = a.ravel(order="K")
    return flat if a.size == 0 or np.may_share_memory(flat, a) else None


def _element_strides(a: np.ndarray) -> tuple[int, ...]:
    return tuple(s // a.itemsize for s in a.strides)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``max(x, 0)`` and the mask ``x > 0``, both in ``x``'s memory layout.

    Shape: any -> same (twice).
    """
    kernels = numba_kernels()
    out = np.empty_like(x)
    positive = np.empty_like(x, dtype=bool)
    flat_x, flat_out, flat_mask = _flat_view(x), _flat_view(out), _flat_view(positive)
    if kernels is None or flat_x is None or flat_out is None or flat_mask is None:
        np.maximum(x, 0, out=out)
        np.greater(x, 0, out=positive)
        return out, positive
    kernels.relu(flat_x, flat_out, flat_mask)
    return out, positive


def relu_backward(grad_out: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """The gradient where the input was positive, zero elsewhere.

    Shape: any -> same.
    """
    kernels = numba_kernels()
    same_layout = _element_strides(grad_out) == _element_strides(positive)
    flat_grad, flat_mask = _flat_view(grad_out), _flat_view(positive)
    if kernels is None or not same_layout or flat_grad is None or flat_mask is None:
        # Computed in the mask's memory order: after Flatten the gradient arrives NCHW while the
        # mask is channels-last, and NumPy's own order for the mixed layouts measured ~7x slower.
        order = sorted(range(positive.ndim), key=lambda axis: -abs(positive.strides[axis]))
        out = np.multiply(grad_out.transpose(order), positive.transpose(order))
        return out.transpose(np.argsort(order))
    out = np.empty_like(grad_out)
    kernels.relu_backward(flat_grad, flat_mask, _flat_view(out))
    return out
