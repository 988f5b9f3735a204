"""Max-pooling kernels over channels-last (NHWC) arrays, with the fused ReLU of inference.

The winner's flat window index ``kh * KW + kw`` is kept for backward; ties go to the first
position, and a NaN wins (as NumPy's argmax and PyTorch's max-pool do).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from scratchcnn.fast.kernels.common import _max_2x2, _wins


@njit(cache=True, nogil=True)
def max_pool(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, out, argmax):
    """Window maxima of ``x (N, H, W, C)`` into ``out (N, OH, OW, C)``, with the winner's flat
    window index ``kh * KW + kw`` in ``argmax``; padding never wins and ties go to the first."""
    n, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for image_row in range(n * out_h):
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


@njit(cache=True, nogil=True)
def max_pool_2x2(x, out, argmax):
    """The seed model's pool (2x2 windows, stride 2, no padding), unrolled.

    Shape: ``x (N, H, W, C)`` -> ``out (N, H // 2, W // 2, C)`` and ``argmax`` alike.
    """
    n, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for image_row in range(n * out_h):
        b = image_row // out_h
        oh = image_row % out_h
        for ow in range(out_w):
            for ch in range(c):
                best, where = _max_2x2(x, b, oh, ow, ch)
                out[b, oh, ow, ch] = best
                argmax[b, oh, ow, ch] = where


@njit(cache=True, nogil=True)
def max_pool_2x2_backward(grad_out, argmax, out):
    """Backward of :func:`max_pool_2x2`: each input is written once, no zero-fill pass.

    Shape: ``grad_out (N, OH, OW, C)``, ``argmax`` alike -> ``out (N, H, W, C)``; rows and
    columns past ``2 * OH`` / ``2 * OW`` (odd sizes) are zeroed.
    """
    n, h, w, c = out.shape
    out_h, out_w = grad_out.shape[1], grad_out.shape[2]
    for image_row in range(n * out_h):
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
    for b in range(n):
        if 2 * out_h < h:
            out[b, 2 * out_h :, :, :] = 0


@njit(cache=True, nogil=True)
def max_pool_backward(grad_out, argmax, kernel_w, stride_h, stride_w, pad_top, pad_left, out):
    """Route ``grad_out (N, OH, OW, C)`` to each window's winner in ``out (N, H, W, C)``."""
    n, h, w, c = out.shape
    out_h, out_w = grad_out.shape[1], grad_out.shape[2]
    for b in range(n):
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


@njit(cache=True, nogil=True)
def max_pool_2x2_bias_relu(x, bias, out):
    """``max(0, bias + max of each 2x2 window)``, stride 2, for inference (no argmax).

    Equals max-pool(ReLU(x + bias)): a per-channel bias and ReLU are both monotone, so they
    commute with the window maximum and run on the 4x smaller pooled output.

    Shape: ``x (N, H, W, C)``, ``bias (C,)`` -> ``out (N, H // 2, W // 2, C)``.
    """
    n, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for image_row in range(n * out_h):
        b = image_row // out_h
        oh = image_row % out_h
        for ow in range(out_w):
            for ch in range(c):
                best = _max_2x2(x, b, oh, ow, ch)[0] + bias[ch]
                out[b, oh, ow, ch] = 0 if best <= 0 else best  # NaN stays NaN
