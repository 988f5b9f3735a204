"""Winograd F(2x2, 3x3) transforms (see :mod:`scratchcnn.fast.winograd` for the algorithm)."""

from __future__ import annotations

import numpy as np
from numba import njit

from scratchcnn.fast.kernels.common import _window_max

# --- Winograd F(2x2, 3x3) ------------------------------------------------------------------------
# Tile t = (n * tiles_h + i) * tiles_w + j covers output rows 2i, 2i+1 and columns 2j, 2j+1, and
# reads the 4x4 input window at rows 2i..2i+3, columns 2j..2j+3 of a zero-padded image.
# Transformed tiles are stored by position: ``(16, T, C)`` arrays, plane ``p = 4 * row + column``
# of the 4x4 transform, so that each of the 16 matrix products reads one contiguous ``(T, C)``
# plane (BLAS measured up to 1.9x faster on those than on planes strided through the tiles).
# The transforms (Lavin & Gray, 2015) are B^T d B for the input and A^T m A for the output, with
#   B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],  A^T = [[1, 1, 1, 0],
#   [0, 1, -1, -1]]; every coefficient is 0 or +-1, so the transforms are additions only.
# The planar kernels compute one plane (or one output position) per loop, whose inner loop runs
# along a row of channels reading at most four planes: LLVM then vectorises it (a loop reading all
# sixteen positions needs more runtime alias checks than LLVM allows, and stays scalar).

# B^T's two non-zero entries per row i: row i of B^T d = sign_a[i] d[row_a[i]] + sign_b[i]
# d[row_b[i]] (sign_a is +1 throughout).
_BT_A = (0, 1, 2, 1)
_BT_B = (2, 2, 1, 3)
_BT_SIGN_B = (-1.0, 1.0, -1.0, -1.0)

FASTMATH = {"contract", "arcp", "afn"}  # no nnan: NaN stays NaN


@njit(cache=True, inline="always")
def _b_transposed_column(padded, b, y, x, ch):
    """``B^T`` applied to the 4 values at rows ``y..y+3`` of column ``x``."""
    d0, d1 = padded[b, y, x, ch], padded[b, y + 1, x, ch]
    d2, d3 = padded[b, y + 2, x, ch], padded[b, y + 3, x, ch]
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(cache=True, inline="always")
def _winograd_input_tile(padded, b, y, x, out, t):
    """``out[t, :, c] = B^T d B`` for the 4x4 window at ``(y, x)`` of image ``b``, every ``c``."""
    for ch in range(padded.shape[3]):
        # Rows first: column s of B^T d is a_s = B^T (column x + s of the window) ...
        a00, a10, a20, a30 = _b_transposed_column(padded, b, y, x, ch)
        a01, a11, a21, a31 = _b_transposed_column(padded, b, y, x + 1, ch)
        a02, a12, a22, a32 = _b_transposed_column(padded, b, y, x + 2, ch)
        a03, a13, a23, a33 = _b_transposed_column(padded, b, y, x + 3, ch)
        # ... then each row of B^T d times B.
        out[t, 0, ch] = a00 - a02
        out[t, 1, ch] = a01 + a02
        out[t, 2, ch] = a02 - a01
        out[t, 3, ch] = a01 - a03
        out[t, 4, ch] = a10 - a12
        out[t, 5, ch] = a11 + a12
        out[t, 6, ch] = a12 - a11
        out[t, 7, ch] = a11 - a13
        out[t, 8, ch] = a20 - a22
        out[t, 9, ch] = a21 + a22
        out[t, 10, ch] = a22 - a21
        out[t, 11, ch] = a21 - a23
        out[t, 12, ch] = a30 - a32
        out[t, 13, ch] = a31 + a32
        out[t, 14, ch] = a32 - a31
        out[t, 15, ch] = a31 - a33


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def winograd_input(padded, tiles_h, tiles_w, out):
    """``out[p, t, c] = (B^T d B)[p]`` for the 4x4 window ``d`` of every tile.

    Each plane is ``d[ra, ca] + sc d[ra, cb] + sr (d[rb, ca] + sc d[rb, cb])``, its rows and
    signs from the two non-zero entries of rows ``p // 4`` and ``p % 4`` of ``B^T``.

    Shape: ``padded (N, >= 2 * tiles_h + 2, >= 2 * tiles_w + 2, C)`` -> ``out (16, T, C)``.
    """
    n, _, _, c = padded.shape
    for b in range(n):
        for ty in range(tiles_h):
            t0 = (b * tiles_h + ty) * tiles_w
            y = 2 * ty
            for i in range(4):
                row_a, row_b, sign_row = y + _BT_A[i], y + _BT_B[i], _BT_SIGN_B[i]
                for j in range(4):
                    plane = out[4 * i + j]
                    col_a, col_b, sign_col = _BT_A[j], _BT_B[j], _BT_SIGN_B[j]
                    for tx in range(tiles_w):
                        x = 2 * tx
                        aa, ab = padded[b, row_a, x + col_a], padded[b, row_a, x + col_b]
                        ba, bb = padded[b, row_b, x + col_a], padded[b, row_b, x + col_b]
                        o = plane[t0 + tx]
                        for ch in range(c):
                            o[ch] = (aa[ch] + sign_col * ab[ch]) + sign_row * (
                                ba[ch] + sign_col * bb[ch]
                            )


@njit(cache=True, inline="always")
def _winograd_tile(m, t, ch):
    """The 2x2 outputs ``A^T m A`` of tile ``t`` in channel ``ch``: ``(y00, y01, y10, y11)``."""
    # Rows first: (A^T m) row 0 = m row 0 + row 1 + row 2; row 1 = row 1 - row 2 - row 3.
    r00 = m[t, 0, ch] + m[t, 4, ch] + m[t, 8, ch]
    r01 = m[t, 1, ch] + m[t, 5, ch] + m[t, 9, ch]
    r02 = m[t, 2, ch] + m[t, 6, ch] + m[t, 10, ch]
    r03 = m[t, 3, ch] + m[t, 7, ch] + m[t, 11, ch]
    r10 = m[t, 4, ch] - m[t, 8, ch] - m[t, 12, ch]
    r11 = m[t, 5, ch] - m[t, 9, ch] - m[t, 13, ch]
    r12 = m[t, 6, ch] - m[t, 10, ch] - m[t, 14, ch]
    r13 = m[t, 7, ch] - m[t, 11, ch] - m[t, 15, ch]
    return r00 + r01 + r02, r01 - r02 - r03, r10 + r11 + r12, r11 - r12 - r13


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _output_rows(m, t0, tiles_w, rows):
    """Stage 1 of ``A^T m A`` for one row of tiles: ``rows[4 i + k] = (A^T m)[i, k]``, i.e.
    ``m[k] + m[4 + k] + m[8 + k]`` and ``m[4 + k] - m[8 + k] - m[12 + k]``.

    Shape: ``m (16, T, OC)`` -> ``rows (8, tiles_w, OC)``.
    """
    oc = m.shape[2]
    for k in range(4):
        for tx in range(tiles_w):
            m0, m1 = m[k, t0 + tx], m[4 + k, t0 + tx]
            m2, m3 = m[8 + k, t0 + tx], m[12 + k, t0 + tx]
            r0, r1 = rows[k, tx], rows[4 + k, tx]
            for ch in range(oc):
                r0[ch] = m0[ch] + m1[ch] + m2[ch]
                r1[ch] = m1[ch] - m2[ch] - m3[ch]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def winograd_output(m, bias, tiles_h, tiles_w, rows, out):
    """``out = A^T m A + bias`` for every tile: the convolution's output, channels-last.

    ``rows`` is a scratch buffer for stage 1 (:func:`_output_rows`); stage 2 takes the two
    columns of ``A`` along each row: ``y[i, 0] = r[i, 0] + r[i, 1] + r[i, 2]``, ``y[i, 1] =
    r[i, 1] - r[i, 2] - r[i, 3]``.

    Shape: ``m (16, T, OC)``, ``bias (OC,)``, ``rows (8, >= tiles_w, OC)`` -> ``out (N, OH,
    OW, OC)`` with ``OH <= 2 * tiles_h``, ``OW <= 2 * tiles_w`` (a last odd row or column of a
    hanging tile is dropped).
    """
    n, out_h, out_w, oc = out.shape
    for b in range(n):
        for ty in range(tiles_h):
            _output_rows(m, (b * tiles_h + ty) * tiles_w, tiles_w, rows)
            for i in range(2):
                y = 2 * ty + i
                if y >= out_h:
                    continue
                for tx in range(tiles_w):
                    r0, r1 = rows[4 * i, tx], rows[4 * i + 1, tx]
                    r2, r3 = rows[4 * i + 2, tx], rows[4 * i + 3, tx]
                    left = out[b, y, 2 * tx]
                    for ch in range(oc):
                        left[ch] = r0[ch] + r1[ch] + r2[ch] + bias[ch]
                    if 2 * tx + 1 < out_w:
                        right = out[b, y, 2 * tx + 1]
                        for ch in range(oc):
                            right[ch] = r1[ch] - r2[ch] - r3[ch] + bias[ch]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def winograd_output_relu_pool(m, bias, tiles_h, tiles_w, rows, out):
    """``max(0, bias + max of each tile's 2x2 outputs)``: conv, ReLU and 2x2/stride-2 max-pool.

    A tile's 2x2 outputs are exactly one pooling window; the bias and ReLU are applied after the
    maximum (both are monotone, see ``max_pool_2x2_bias_relu``); a NaN output wins its window.

    Shape: ``m (16, T, OC)``, ``bias (OC,)``, ``rows (8, >= tiles_w, OC)`` -> ``out (N, PH, PW,
    OC)``, ``PH <= tiles_h``, ``PW <= tiles_w``.
    """
    n, out_h, out_w, oc = out.shape
    for b in range(n):
        for ty in range(out_h):
            _output_rows(m, (b * tiles_h + ty) * tiles_w, tiles_w, rows)
            for tx in range(out_w):
                a0, a1, a2, a3 = rows[0, tx], rows[1, tx], rows[2, tx], rows[3, tx]
                c0, c1, c2, c3 = rows[4, tx], rows[5, tx], rows[6, tx], rows[7, tx]
                o = out[b, ty, tx]
                for ch in range(oc):
                    best = (
                        _window_max(
                            (
                                a0[ch] + a1[ch] + a2[ch],
                                a1[ch] - a2[ch] - a3[ch],
                                c0[ch] + c1[ch] + c2[ch],
                                c1[ch] - c2[ch] - c3[ch],
                            )
                        )[0]
                        + bias[ch]
                    )
                    o[ch] = 0 if best <= 0 else best  # NaN stays NaN


@njit(cache=True, nogil=True)
def winograd_weight(weight, out):
    """``out[:, c, o] = G g G^T`` for each 3x3 filter ``g = weight[o, c]``, in float64 inside.

    ``G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]``.

    Shape: ``weight (OC, C, 3, 3)`` -> ``out (16, C, OC)``.
    """
    out_channels, channels = weight.shape[0], weight.shape[1]
    rows = np.empty((4, 3))  # G g
    for c in range(channels):
        for o in range(out_channels):
            for k in range(3):
                g0 = float(weight[o, c, 0, k])
                g1 = float(weight[o, c, 1, k])
                g2 = float(weight[o, c, 2, k])
                rows[0, k] = g0
                rows[1, k] = (g0 + g1 + g2) / 2
                rows[2, k] = (g0 - g1 + g2) / 2
                rows[3, k] = g2
            for i in range(4):
                g0, g1, g2 = rows[i, 0], rows[i, 1], rows[i, 2]
                out[4 * i, c, o] = g0
                out[4 * i + 1, c, o] = (g0 + g1 + g2) / 2
                out[4 * i + 2, c, o] = (g0 - g1 + g2) / 2
                out[4 * i + 3, c, o] = g2


# A's two entries per row i (A is 4x2; A^T is above): the output transform's adjoint spreads a
# tile's 2x2 output gradient g over the 4x4 products as A g A^T, every coefficient 0 or +-1.
_A_COL0 = (1.0, 1.0, 1.0, 0.0)
_A_COL1 = (0.0, 1.0, -1.0, -1.0)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def winograd_output_grad(grad, tiles_h, tiles_w, out):
    """``out[p, t, o] = (A g A^T)[p]`` for the 2x2 output gradient ``g`` of every tile: the
    gradient of the 16 products ``M`` (the adjoint of :func:`winograd_output`'s transform).

    Plane ``p = 4 i + j`` is ``A[i, 0] (A[j, 0] g00 + A[j, 1] g01) + A[i, 1] (A[j, 0] g10 +
    A[j, 1] g11)``; one plane per loop, so that LLVM vectorises the channel loop.

    Shape: ``grad (N, >= 2 * tiles_h, >= 2 * tiles_w, OC)`` (zeros past the output's edge) ->
    ``out (16, T, OC)``.
    """
    n, oc = grad.shape[0], grad.shape[3]
    for b in range(n):
        for ty in range(tiles_h):
            t0 = (b * tiles_h + ty) * tiles_w
            y = 2 * ty
            for i in range(4):
                row0, row1 = _A_COL0[i], _A_COL1[i]
                for j in range(4):
                    col0, col1 = _A_COL0[j], _A_COL1[j]
                    plane = out[4 * i + j]
                    for tx in range(tiles_w):
                        x = 2 * tx
                        g00, g01 = grad[b, y, x], grad[b, y, x + 1]
                        g10, g11 = grad[b, y + 1, x], grad[b, y + 1, x + 1]
                        o = plane[t0 + tx]
                        for ch in range(oc):
                            o[ch] = row0 * (col0 * g00[ch] + col1 * g01[ch]) + row1 * (
                                col0 * g10[ch] + col1 * g11[ch]
                            )


@njit(cache=True, nogil=True)
def winograd_weight_grad(grad_u, out):
    """``out[o, c] = G^T dU G`` for the gradient ``dU = grad_u[:, c, o]`` (4x4) of each
    transformed filter: the weight gradient (the adjoint of :func:`winograd_weight`), in float64
    inside.

    ``G^T h = (h0 + (h1 + h2) / 2, (h1 - h2) / 2, (h1 + h2) / 2 + h3)`` for a 4-vector ``h``.

    Shape: ``grad_u (16, C, OC)`` -> ``out (OC, C, 3, 3)``.
    """
    channels, out_channels = grad_u.shape[1], grad_u.shape[2]
    rows = np.empty((3, 4))  # G^T dU
    for c in range(channels):
        for o in range(out_channels):
            for j in range(4):
                h0 = float(grad_u[j, c, o])
                h1 = float(grad_u[4 + j, c, o])
                h2 = float(grad_u[8 + j, c, o])
                h3 = float(grad_u[12 + j, c, o])
                rows[0, j] = h0 + (h1 + h2) / 2
                rows[1, j] = (h1 - h2) / 2
                rows[2, j] = (h1 + h2) / 2 + h3
            for i in range(3):
                h0, h1, h2, h3 = rows[i, 0], rows[i, 1], rows[i, 2], rows[i, 3]
                out[o, c, i, 0] = h0 + (h1 + h2) / 2
                out[o, c, i, 1] = (h1 - h2) / 2
                out[o, c, i, 2] = (h1 + h2) / 2 + h3


@njit(cache=True, nogil=True)
def winograd_few_channels_relu_pool(padded, u, bias, out):
    """Conv + bias + ReLU + 2x2 max-pool for inputs with few channels, tile by tile in cache.

    With C = 3 the 16 products have 3-long rows, too thin for BLAS; here each tile's products
    ``m[p, o] = sum_c v[p, c] u[p, c, o]`` are a loop over the output channels instead, and the
    tile goes straight on to the output transform and the pool.

    Shape: ``padded`` as for ``winograd_input``, ``u (16, C, OC)``, ``bias (OC,)`` ->
    ``out (N, PH, PW, OC)``.
    """
    n, out_h, out_w, out_channels = out.shape
    channels = padded.shape[3]
    for image_row in range(n * out_h):
        b = image_row // out_h
        i = image_row % out_h
        v = np.empty((1, 16, channels), dtype=padded.dtype)
        m = np.empty((1, 16, out_channels), dtype=out.dtype)
        for j in range(out_w):
            _winograd_input_tile(padded, b, 2 * i, 2 * j, v, 0)
            for p in range(16):
                if channels == 3:  # RGB: the three products in one pass over the outputs
                    v0, v1, v2 = v[0, p, 0], v[0, p, 1], v[0, p, 2]
                    for o in range(out_channels):
                        m[0, p, o] = v0 * u[p, 0, o] + v1 * u[p, 1, o] + v2 * u[p, 2, o]
                else:
                    for o in range(out_channels):
                        m[0, p, o] = 0
                    for ch in range(channels):
                        value = v[0, p, ch]
                        for o in range(out_channels):
                            m[0, p, o] += value * u[p, ch, o]
            for o in range(out_channels):
                best = _window_max(_winograd_tile(m, 0, o))[0] + bias[o]
                out[b, i, j, o] = 0 if best <= 0 else best  # NaN stays NaN
