"""Numba kernels of Winograd F(4x4, 3x3): the transforms around the 36 products (see
:mod:`scratchcnn.fast.winograd` for the algorithm and :mod:`.winograd` for F(2x2, 3x3)).

Tile ``t = (n * tiles_h + i) * tiles_w + j`` covers output rows ``4i..4i+3`` and columns
``4j..4j+3`` and reads the 6x6 input window at rows ``4i..4i+5``, columns ``4j..4j+5`` of a
zero-padded image; neighbouring windows overlap by two rows or columns. Transformed tiles are
stored by position, ``(36, T, C)``, plane ``p = 6 * row + column`` of the 6x6 transform, as for
F(2x2, 3x3). The matrices (Lavin & Gray, 2015; interpolation points 0, 1, -1, 2, -2 and
infinity) are

    B^T = [[4,  0, -5,  0, 1, 0],      G = [[ 1/4,     0,    0],     A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],           [-1/6,  -1/6, -1/6],            [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],           [-1/6,   1/6, -1/6],            [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],           [1/24,  1/12,  1/6],            [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],           [1/24, -1/12,  1/6],
           [0,  4,  0, -5, 0, 1]]           [   0,     0,    1]]

Unlike F(2x2, 3x3), whose coefficients are 0 and +-1, these scale by up to 8 and add more terms,
so float32 results carry a few times more rounding error (measured in ``tests/test_winograd.py``).
Each kernel applies a transform in two passes, rows then columns, through a small per-thread
buffer; every inner loop runs along a row of channels reading at most six rows and writing one,
so that LLVM vectorises it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from scratchcnn.fast.kernels.winograd import FASTMATH

# B^T's non-zero entries, four per row (rows 0 and 5 have three; their fourth has coefficient 0):
# row i of B^T d is sum_k _BT_COEFS[4 i + k] * d[_BT_ROWS[4 i + k]].
_BT_ROWS = (0, 2, 4, 0, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 3, 5, 0)
_BT_COEFS = (
    4.0, -5.0, 1.0, 0.0,
    -4.0, -4.0, 1.0, 1.0,
    4.0, -4.0, -1.0, 1.0,
    -2.0, -1.0, 2.0, 1.0,
    2.0, -1.0, -2.0, 1.0,
    4.0, -5.0, 1.0, 0.0,
)  # fmt: skip


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def winograd4_input(x, top, left, tiles_h, tiles_w, rows, out):
    """``out[p, t, c] = (B^T d B)[p]`` for the 6x6 window ``d`` of every tile, read from the
    unpadded images: the window's rows and columns outside ``x`` (the padding, and a hanging
    tile's overhang) count as zeros.

    Pass 1 applies ``B^T`` down the columns of a whole row of tiles at once (the windows share
    their overlapping columns): ``rows[i, px] = (B^T d)[i]`` at padded column ``px``. Each of
    ``B^T``'s rows reads four rows of the image, chosen once per row of tiles (a row of zeros for
    one in the padding), so the padding costs no padded copy of the images and no test per
    value. Pass 2 applies ``B`` along each tile's six columns of ``rows``.

    Shape: ``x (N, H, W, C)`` with ``top``, ``left`` padding rows and columns before it and
    ``H + top <= 4 * tiles_h + 2``, ``W + left <= 4 * tiles_w + 2``; ``rows (6, >= 4 * tiles_w +
    2, C)`` (scratch) -> ``out (36, T, C)``.
    """
    n, h, w, c = x.shape
    coefs = np.empty(24, dtype=out.dtype)  # in the data's dtype, so the arithmetic stays in it
    for k in range(24):
        coefs[k] = _BT_COEFS[k]
    zeros = np.zeros((w, c), dtype=x.dtype)  # an image row in the padding
    width = 4 * tiles_w + 2
    for b in range(n):
        for ty in range(tiles_h):
            t0 = (b * tiles_h + ty) * tiles_w
            y = 4 * ty - top  # the window's first row, in the image
            for i in range(6):  # pass 1: B^T down the columns
                k = 4 * i
                c0, c1, c2, c3 = coefs[k], coefs[k + 1], coefs[k + 2], coefs[k + 3]
                y0, y1 = y + _BT_ROWS[k], y + _BT_ROWS[k + 1]
                y2, y3 = y + _BT_ROWS[k + 2], y + _BT_ROWS[k + 3]
                r0 = x[b, y0] if 0 <= y0 < h else zeros
                r1 = x[b, y1] if 0 <= y1 < h else zeros
                r2 = x[b, y2] if 0 <= y2 < h else zeros
                r3 = x[b, y3] if 0 <= y3 < h else zeros
                for px in range(left):  # the padding's columns
                    rows[i, px, :] = 0
                for px in range(left + w, width):
                    rows[i, px, :] = 0
                for col in range(w):
                    d0, d1, d2, d3 = r0[col], r1[col], r2[col], r3[col]
                    o = rows[i, left + col]
                    for ch in range(c):
                        o[ch] = c0 * d0[ch] + c1 * d1[ch] + c2 * d2[ch] + c3 * d3[ch]
            for i in range(6):  # pass 2: B along each tile's columns
                for j in range(6):
                    plane = out[6 * i + j]
                    k = 4 * j
                    c0, c1, c2, c3 = coefs[k], coefs[k + 1], coefs[k + 2], coefs[k + 3]
                    x0, x1, x2, x3 = _BT_ROWS[k], _BT_ROWS[k + 1], _BT_ROWS[k + 2], _BT_ROWS[k + 3]
                    for tx in range(tiles_w):
                        px = 4 * tx
                        a0, a1 = rows[i, px + x0], rows[i, px + x1]
                        a2, a3 = rows[i, px + x2], rows[i, px + x3]
                        o = plane[t0 + tx]
                        for ch in range(c):
                            o[ch] = c0 * a0[ch] + c1 * a1[ch] + c2 * a2[ch] + c3 * a3[ch]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def winograd4_output(m, bias, tiles_h, tiles_w, rows, out):
    """``out = A^T m A + bias`` for every tile: the convolution's output, channels-last.

    Pass 1, per row of tiles: ``rows[6 i + j, tx] = (A^T m)[i, j]``, each of ``A^T``'s rows
    through the shared sums ``m1 +- m2`` and ``m3 +- m4``. The tiles of a row are consecutive in
    ``m``, so each loop runs over the whole row's ``tiles_w * OC`` values at once. Pass 2
    applies ``A`` along each of those rows, one output pixel per loop, and adds the bias; a
    hanging tile's rows and columns past the output are dropped. Both passes index flat rows by
    offset rather than taking views per tile: with 16-32 channels, making those views took
    longer than the arithmetic they served.

    Shape: ``m (36, T, OC)``, ``bias (OC,)``, ``rows (24, >= tiles_w, OC)`` (scratch), all
    C-contiguous -> ``out (N, OH, OW, OC)`` with ``OH <= 4 * tiles_h``, ``OW <= 4 * tiles_w``,
    each ``out[b, y]`` contiguous.
    """
    n, out_h, out_w, oc = out.shape
    scale = np.empty(3, dtype=out.dtype)  # 2, 4 and 8 in the data's dtype
    scale[0], scale[1], scale[2] = 2, 4, 8
    two, four, eight = scale[0], scale[1], scale[2]
    width = tiles_w * oc  # one row of tiles, all channels
    planes = m.reshape(36, -1)
    flat_rows = rows.reshape(24, -1)
    for b in range(n):
        for ty in range(tiles_h):
            start = (b * tiles_h + ty) * width
            for j in range(6):  # pass 1: A^T down each column j of the 6x6 products
                m0 = planes[j, start : start + width]
                m1 = planes[6 + j, start : start + width]
                m2 = planes[12 + j, start : start + width]
                m3 = planes[18 + j, start : start + width]
                m4 = planes[24 + j, start : start + width]
                m5 = planes[30 + j, start : start + width]
                r0, r1 = flat_rows[j], flat_rows[6 + j]
                r2, r3 = flat_rows[12 + j], flat_rows[18 + j]
                for k in range(width):
                    plus, minus = m1[k] + m2[k], m1[k] - m2[k]
                    plus2, minus2 = m3[k] + m4[k], m3[k] - m4[k]
                    r0[k] = m0[k] + plus + plus2
                    r1[k] = minus + two * minus2
                    r2[k] = plus + four * plus2
                    r3[k] = minus + eight * minus2 + m5[k]
            for i in range(4):  # pass 2: A along each row i
                y = 4 * ty + i
                if y >= out_h:
                    break
                a0, a1, a2 = flat_rows[6 * i], flat_rows[6 * i + 1], flat_rows[6 * i + 2]
                a3, a4, a5 = flat_rows[6 * i + 3], flat_rows[6 * i + 4], flat_rows[6 * i + 5]
                o = out[b, y].reshape(-1)  # (OW * OC,)
                for tx in range(tiles_w):
                    s = tx * oc  # this tile's channels in the rows
                    x = 4 * tx
                    d = x * oc  # its first output pixel
                    for ch in range(oc):
                        k = s + ch
                        o[d + ch] = a0[k] + a1[k] + a2[k] + a3[k] + a4[k] + bias[ch]
                    if x + 1 < out_w:
                        d += oc
                        for ch in range(oc):
                            k = s + ch
                            o[d + ch] = a1[k] - a2[k] + two * (a3[k] - a4[k]) + bias[ch]
                    if x + 2 < out_w:
                        d += oc
                        for ch in range(oc):
                            k = s + ch
                            o[d + ch] = a1[k] + a2[k] + four * (a3[k] + a4[k]) + bias[ch]
                    if x + 3 < out_w:
                        d += oc
                        for ch in range(oc):
                            k = s + ch
                            o[d + ch] = a1[k] - a2[k] + eight * (a3[k] - a4[k]) + a5[k] + bias[ch]


# G, the weight transform, row by row: (G g)[i] = sum_k _G[3 i + k] g[k].
_G = (
    1 / 4, 0.0, 0.0,
    -1 / 6, -1 / 6, -1 / 6,
    -1 / 6, 1 / 6, -1 / 6,
    1 / 24, 1 / 12, 1 / 6,
    1 / 24, -1 / 12, 1 / 6,
    0.0, 0.0, 1.0,
)  # fmt: skip


@njit(cache=True, nogil=True)
def winograd4_weight(weight, out):
    """``out[:, c, o] = G g G^T`` for each 3x3 filter ``g = weight[o, c]``, in float64 inside.

    Shape: ``weight (OC, C, 3, 3)`` -> ``out (36, C, OC)``.
    """
    out_channels, channels = weight.shape[0], weight.shape[1]
    rows = np.empty((6, 3))  # G g
    for c in range(channels):
        for o in range(out_channels):
            for i in range(6):
                for k in range(3):
                    rows[i, k] = (
                        _G[3 * i] * float(weight[o, c, 0, k])
                        + _G[3 * i + 1] * float(weight[o, c, 1, k])
                        + _G[3 * i + 2] * float(weight[o, c, 2, k])
                    )
            for i in range(6):
                for j in range(6):
                    out[6 * i + j, c, o] = (
                        rows[i, 0] * _G[3 * j]
                        + rows[i, 1] * _G[3 * j + 1]
                        + rows[i, 2] * _G[3 * j + 2]
                    )


# A^T, the output transform, row by row: (A^T m)[i] = sum_j _AT[6 i + j] m[j].
_AT = (
    1.0, 1.0, 1.0, 1.0, 1.0, 0.0,
    0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
    0.0, 1.0, 1.0, 4.0, 4.0, 0.0,
    0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
)  # fmt: skip


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def winograd4_output_grad(grad, tiles_h, tiles_w, rows, out, grad_bias):
    """``out[p, t, o] = (A g A^T)[p]`` for the 4x4 output gradient ``g`` of every tile: the
    gradient of the 36 products (the adjoint of :func:`winograd4_output`'s transform); and
    ``grad_bias[o] += sum g[..., o]``, the bias gradient, while each row of the gradient is in
    cache (in float64).

    Pass 1: ``rows[6 k + j, tx] = (g A^T)[k, j]``, along each of a tile's four rows; pass 2:
    ``out[6 i + j] = sum_k A^T[k, i] rows[6 k + j]``. Each loop reads four rows and writes one.

    A hanging tile's rows and columns past the output's edge count as zeros, so the gradient
    needs no padded copy: a row past the edge gives rows of zeros, and the last tile of a row
    reads its columns from a four-pixel buffer with zeros past the edge.

    Shape: ``grad (N, OH, OW, OC)`` with ``OH <= 4 * tiles_h``, ``OW <= 4 * tiles_w``, ``rows
    (24, >= tiles_w, OC)`` (scratch) -> ``out (36, T, OC)``, ``grad_bias (OC,)`` (added to).
    """
    n, out_h, out_w, oc = grad.shape
    at = np.empty(24, dtype=out.dtype)  # in the data's dtype, so the arithmetic stays in it
    for k in range(24):
        at[k] = _AT[k]
    inside = out_w // 4  # tiles of a row that end before the edge
    edge = np.zeros((4, oc), dtype=grad.dtype)  # the hanging tile's columns, zeros past the edge
    for b in range(n):
        for ty in range(tiles_h):
            t0 = (b * tiles_h + ty) * tiles_w
            for k in range(4):  # pass 1: A^T's columns along each row k of the tile
                y = 4 * ty + k
                if y >= out_h:  # past the edge: a row of zeros
                    rows[6 * k : 6 * k + 6] = 0
                    continue
                for x in range(out_w):
                    g0 = grad[b, y, x]
                    for ch in range(oc):
                        grad_bias[ch] += g0[ch]
                if inside < tiles_w:
                    edge[:] = 0
                    edge[: out_w - 4 * inside] = grad[b, y, 4 * inside :]
                for j in range(6):
                    c0, c1, c2, c3 = at[j], at[6 + j], at[12 + j], at[18 + j]
                    r = rows[6 * k + j]
                    for tx in range(inside):
                        x = 4 * tx
                        g0, g1 = grad[b, y, x], grad[b, y, x + 1]
                        g2, g3 = grad[b, y, x + 2], grad[b, y, x + 3]
                        o = r[tx]
                        for ch in range(oc):
                            o[ch] = c0 * g0[ch] + c1 * g1[ch] + c2 * g2[ch] + c3 * g3[ch]
                    if inside < tiles_w:
                        o = r[inside]
                        for ch in range(oc):
                            o[ch] = c0 * edge[0, ch] + c1 * edge[1, ch] + c2 * edge[2, ch]
            for i in range(6):  # pass 2: A down the columns
                c0, c1, c2, c3 = at[i], at[6 + i], at[12 + i], at[18 + i]
                for j in range(6):
                    plane = out[6 * i + j]
                    for tx in range(tiles_w):
                        h0, h1 = rows[j, tx], rows[6 + j, tx]
                        h2, h3 = rows[12 + j, tx], rows[18 + j, tx]
                        o = plane[t0 + tx]
                        for ch in range(oc):
                            o[ch] = c0 * h0[ch] + c1 * h1[ch] + c2 * h2[ch] + c3 * h3[ch]


@njit(cache=True, nogil=True)
def winograd4_weight_grad(grad_u, out):
    """``out[o, c] = G^T dU G`` for the gradient ``dU = grad_u[:, c, o]`` (6x6) of each
    transformed filter: the weight gradient (the adjoint of :func:`winograd4_weight`), in
    float64 inside.

    Shape: ``grad_u (36, C, OC)`` -> ``out (OC, C, 3, 3)``.
    """
    channels, out_channels = grad_u.shape[1], grad_u.shape[2]
    rows = np.empty((3, 6))  # G^T dU
    for c in range(channels):
        for o in range(out_channels):
            for a in range(3):
                for j in range(6):
                    total = 0.0
                    for i in range(6):
                        total += _G[3 * i + a] * float(grad_u[6 * i + j, c, o])
                    rows[a, j] = total
            for a in range(3):
                for k in range(3):
                    total = 0.0
                    for j in range(6):
                        total += rows[a, j] * _G[3 * j + k]
                    out[o, c, a, k] = total
