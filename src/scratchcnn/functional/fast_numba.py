"""Numba kernels behind :mod:`scratchcnn.functional.fast`: loops over channels-last (NHWC) arrays.

Importing this module imports Numba, so only :mod:`scratchcnn.functional.fast` imports it, and
only on first use. Every kernel is ``cache=True`` (compiled code is reused across processes) and
``nogil=True``; its outer loop is a ``prange`` over images or image rows, so it can be compiled
with ``parallel=True``.

Index conventions (shared with the NumPy versions in ``fast``): an image is ``x[n, ih, iw, c]``;
output pixel ``(oh, ow)`` reads input row ``ih = oh * stride_h - pad_top + kh * dilation_h``
(likewise for columns); an im2col row is ``(n * OH + oh) * OW + ow`` and its columns are ordered
``(kh, kw, c)``. Geometry arguments are ``(kernel_h, kernel_w, stride_h, stride_w, pad_top,
pad_left, dil_h, dil_w)``; output sizes come from the shapes of the arrays passed in.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# The loops here are memory-bound and short; NumPy's BLAS already runs its threads on every core
# for the matrix products. A second thread pool fighting it for the same (often shared) cores
# cost more than it gained in measurements on the 2-core machine, so the kernels run serially by
# default; ``prange`` marks the loops that are safe to run in parallel.
PARALLEL = False


@njit(cache=True, inline="always")
def _wins(value, best):
    # A strictly larger value wins (ties go to the first); so does the first NaN, as in argmax.
    return value > best or (value != value and best == best)


@njit(cache=True, inline="always")
def _max_2x2(x, b, oh, ow, ch):
    """The winner of window ``(oh, ow)`` of a 2x2/stride-2 pool and its position in ``0..3``."""
    best = x[b, 2 * oh, 2 * ow, ch]
    where = 0
    value = x[b, 2 * oh, 2 * ow + 1, ch]
    if _wins(value, best):
        best = value
        where = 1
    value = x[b, 2 * oh + 1, 2 * ow, ch]
    if _wins(value, best):
        best = value
        where = 2
    value = x[b, 2 * oh + 1, 2 * ow + 1, ch]
    if _wins(value, best):
        best = value
        where = 3
    return best, where


@njit(parallel=PARALLEL, cache=True, nogil=True)
def im2col(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, out):
    """Fill ``out (N, OH, OW, KH*KW*C)`` from ``x (N, H, W, C)``; padding reads as zero."""
    n, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for image_row in prange(n * out_h):
        b = image_row // out_h
        oh = image_row % out_h
        for ow in range(out_w):
            for i in range(kernel_h):
                ih = oh * stride_h - pad_top + i * dil_h
                for j in range(kernel_w):
                    iw = ow * stride_w - pad_left + j * dil_w
                    base = (i * kernel_w + j) * c
                    if 0 <= ih < h and 0 <= iw < w:
                        for ch in range(c):
                            out[b, oh, ow, base + ch] = x[b, ih, iw, ch]
                    else:
                        for ch in range(c):
                            out[b, oh, ow, base + ch] = 0


@njit(parallel=PARALLEL, cache=True, nogil=True)
def col2im(cols, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, out):
    """Sum ``cols (N, OH, OW, KH*KW*C)`` back onto ``out (N, H, W, C)`` (overwritten)."""
    n, h, w, c = out.shape
    out_h, out_w = cols.shape[1], cols.shape[2]
    for b in prange(n):
        out[b] = 0
        for oh in range(out_h):
            for i in range(kernel_h):
                ih = oh * stride_h - pad_top + i * dil_h
                if ih < 0 or ih >= h:
                    continue
                for ow in range(out_w):
                    for j in range(kernel_w):
                        iw = ow * stride_w - pad_left + j * dil_w
                        if iw < 0 or iw >= w:
                            continue
                        base = (i * kernel_w + j) * c
                        for ch in range(c):
                            out[b, ih, iw, ch] += cols[b, oh, ow, base + ch]


@njit(parallel=PARALLEL, cache=True, nogil=True)
def max_pool(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, out, argmax):
    """Window maxima of ``x (N, H, W, C)`` into ``out (N, OH, OW, C)``, with the winner's flat
    window index ``kh * KW + kw`` in ``argmax``; padding never wins and ties go to the first."""
    n, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for image_row in prange(n * out_h):
        b = image_row // out_h
        oh = image_row % out_h
        for ow in range(out_w):
            for ch in range(c):
                out[b, oh, ow, ch] = -np.inf
                argmax[b, oh, ow, ch] = 0
            for i in range(kernel_h):
                ih = oh * stride_h - pad_top + i
                if ih < 0 or ih >= h:
                    continue
                for j in range(kernel_w):
                    iw = ow * stride_w - pad_left + j
                    if iw < 0 or iw >= w:
                        continue
                    for ch in range(c):
                        value = x[b, ih, iw, ch]
                        if _wins(value, out[b, oh, ow, ch]):
                            out[b, oh, ow, ch] = value
                            argmax[b, oh, ow, ch] = i * kernel_w + j


@njit(parallel=PARALLEL, cache=True, nogil=True)
def max_pool_2x2(x, out, argmax):
    """The seed model's pool (2x2 windows, stride 2, no padding), unrolled.

    Shape: ``x (N, H, W, C)`` -> ``out (N, H // 2, W // 2, C)`` and ``argmax`` alike.
    """
    n, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for image_row in prange(n * out_h):
        b = image_row // out_h
        oh = image_row % out_h
        for ow in range(out_w):
            for ch in range(c):
                best, where = _max_2x2(x, b, oh, ow, ch)
                out[b, oh, ow, ch] = best
                argmax[b, oh, ow, ch] = where


@njit(parallel=PARALLEL, cache=True, nogil=True)
def max_pool_2x2_backward(grad_out, argmax, out):
    """Backward of :func:`max_pool_2x2`: each input is written once, no zero-fill pass.

    Shape: ``grad_out (N, OH, OW, C)``, ``argmax`` alike -> ``out (N, H, W, C)``; rows and
    columns past ``2 * OH`` / ``2 * OW`` (odd sizes) are zeroed.
    """
    n, h, w, c = out.shape
    out_h, out_w = grad_out.shape[1], grad_out.shape[2]
    for image_row in prange(n * out_h):
        b = image_row // out_h
        oh = image_row % out_h
        for ow in range(out_w):
            # The window's two rows as (2, C) views: the channel loop then indexes one axis
            # with unit stride and compiles to vector code (~4x faster than 4-D indexing).
            top = out[b, 2 * oh, 2 * ow : 2 * ow + 2]
            bottom = out[b, 2 * oh + 1, 2 * ow : 2 * ow + 2]
            grads = grad_out[b, oh, ow]
            wheres = argmax[b, oh, ow]
            for ch in range(c):
                grad = grads[ch]
                where = wheres[ch]
                top[0, ch] = grad if where == 0 else 0
                top[1, ch] = grad if where == 1 else 0
                bottom[0, ch] = grad if where == 2 else 0
                bottom[1, ch] = grad if where == 3 else 0
        if 2 * out_w < w:
            for i in range(2 * oh, 2 * oh + 2):
                out[b, i, 2 * out_w :, :] = 0
    for b in prange(n):
        if 2 * out_h < h:
            out[b, 2 * out_h :, :, :] = 0


@njit(parallel=PARALLEL, cache=True, nogil=True)
def max_pool_backward(grad_out, argmax, kernel_w, stride_h, stride_w, pad_top, pad_left, out):
    """Route ``grad_out (N, OH, OW, C)`` to each window's winner in ``out (N, H, W, C)``."""
    n, h, w, c = out.shape
    out_h, out_w = grad_out.shape[1], grad_out.shape[2]
    for b in prange(n):
        out[b] = 0
        for oh in range(out_h):
            for ow in range(out_w):
                for ch in range(c):
                    flat = argmax[b, oh, ow, ch]
                    ih = oh * stride_h - pad_top + flat // kernel_w
                    iw = ow * stride_w - pad_left + flat % kernel_w
                    # A window of nothing but -inf "wins" at its first slot, which may be padding.
                    if 0 <= ih < h and 0 <= iw < w:
                        out[b, ih, iw, ch] += grad_out[b, oh, ow, ch]


@njit(parallel=PARALLEL, cache=True, nogil=True)
def relu(x, out, positive):
    """``out = max(x, 0)`` and the mask ``x > 0``, in one pass over flat arrays."""
    for k in prange(x.shape[0]):
        value = x[k]
        above = value > 0
        positive[k] = above
        out[k] = value if above else 0


@njit(parallel=PARALLEL, cache=True, nogil=True)
def relu_backward(grad_out, positive, out):
    """``out = grad_out where positive else 0`` over flat arrays."""
    for k in prange(grad_out.shape[0]):
        out[k] = grad_out[k] if positive[k] else 0


@njit(parallel=PARALLEL, cache=True, nogil=True)
def max_pool_2x2_bias_relu(x, bias, out):
    """``max(0, bias + max of each 2x2 window)``, stride 2, for inference (no argmax).

    Equals max-pool(ReLU(x + bias)): a per-channel bias and ReLU are both monotone, so they
    commute with the window maximum and run on the 4x smaller pooled output.

    Shape: ``x (N, H, W, C)``, ``bias (C,)`` -> ``out (N, H // 2, W // 2, C)``.
    """
    n, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for image_row in prange(n * out_h):
        b = image_row // out_h
        oh = image_row % out_h
        for ow in range(out_w):
            for ch in range(c):
                best = _max_2x2(x, b, oh, ow, ch)[0] + bias[ch]
                out[b, oh, ow, ch] = best if best > 0 else 0


@njit(parallel=PARALLEL, cache=True, nogil=True)
def add_bias(rows, bias):
    """``rows += bias`` for each row, in place (NumPy's broadcast add loops over short rows).

    Shape: ``rows (M, C)`` C-contiguous, ``bias (C,)``.
    """
    for r in prange(rows.shape[0]):
        for ch in range(rows.shape[1]):
            rows[r, ch] += bias[ch]
