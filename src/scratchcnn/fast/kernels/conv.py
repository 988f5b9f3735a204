"""im2col, col2im and the bias add of the im2col convolution, over channels-last (NHWC) arrays.

Geometry arguments are ``(kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h,
dil_w)``; output sizes come from the shapes of the arrays passed in. Output pixel ``(oh, ow)``
reads input row ``ih = oh * stride_h - pad_top + kh * dilation_h`` (likewise for columns); an
im2col row's columns are ordered ``(kh, kw, c)``.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def im2col(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, out):
    """Fill ``out (N, OH, OW, KH*KW*C)`` from ``x (N, H, W, C)``; padding reads as zero."""
    n, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for image_row in range(n * out_h):
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


@njit(cache=True, nogil=True)
def col2im(cols, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, out):
    """Sum ``cols (N, OH, OW, KH*KW*C)`` back onto ``out (N, H, W, C)`` (overwritten)."""
    n, h, w, c = out.shape
    out_h, out_w = cols.shape[1], cols.shape[2]
    for b in range(n):
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


@njit(cache=True, nogil=True)
def add_bias(rows, bias):
    """``rows += bias`` for each row, in place (NumPy's broadcast add loops over short rows).

    Shape: ``rows (M, C)`` C-contiguous, ``bias (C,)``.
    """
    for r in range(rows.shape[0]):
        for ch in range(rows.shape[1]):
            rows[r, ch] += bias[ch]
