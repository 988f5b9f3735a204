"""Winograd F(2x2, 3x3) transforms (see :mod:`scratchcnn.fast.winograd` for the algorithm)."""

from __future__ import annotations

import numpy as np
from numba import njit

from scratchcnn.fast.kernels.common import _window_max

# --- Winograd F(2x2, 3x3) ------------------------------------------------------------------------
# Tile t = (n * tiles_h + i) * tiles_w + j covers output rows 2i, 2i+1 and columns 2j, 2j+1, and
# reads the 4x4 input window at rows 2i..2i+3, columns 2j..2j+3 of a zero-padded image. Transformed
# tiles are ``(T, 16, C)`` arrays, position ``p = 4 * row + column`` of the 4x4 transform.
# The transforms (Lavin & Gray, 2015) are B^T d B for the input and A^T m A for the output, with
#   B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],  A^T = [[1, 1, 1, 0],
#   [0, 1, -1, -1]]; every coefficient is 0 or +-1, so the transforms are additions only.


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


@njit(cache=True, nogil=True)
def winograd_input(padded, tiles_h, tiles_w, out):
    """``out[t, :, c] = B^T d B`` for the 4x4 window ``d`` of every tile, channel by channel.

    Shape: ``padded (N, >= 2 * tiles_h + 2, >= 2 * tiles_w + 2, C)`` -> ``out (T, 16, C)``.
    """
    for image_row in range(padded.shape[0] * tiles_h):
        b = image_row // tiles_h
        y = 2 * (image_row % tiles_h)
        for j in range(tiles_w):
            _winograd_input_tile(padded, b, y, 2 * j, out, image_row * tiles_w + j)


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


@njit(cache=True, nogil=True)
def winograd_output(m, bias, tiles_h, tiles_w, out):
    """``out = A^T m A + bias`` for every tile: the convolution's output, channels-last.

    Shape: ``m (T, 16, OC)``, ``bias (OC,)`` -> ``out (N, OH, OW, OC)`` with
    ``OH <= 2 * tiles_h``, ``OW <= 2 * tiles_w`` (a last odd row or column is dropped).
    """
    n, out_h, out_w, c = out.shape
    for image_row in range(n * tiles_h):
        b = image_row // tiles_h
        y = 2 * (image_row % tiles_h)
        for j in range(tiles_w):
            t = image_row * tiles_w + j
            x = 2 * j
            # Whole tiles take a branch without bounds tests, so that its channel loop
            # vectorises; only tiles hanging over the last row or column take the other.
            if y + 1 < out_h and x + 1 < out_w:
                for ch in range(c):
                    y00, y01, y10, y11 = _winograd_tile(m, t, ch)
                    out[b, y, x, ch] = y00 + bias[ch]
                    out[b, y, x + 1, ch] = y01 + bias[ch]
                    out[b, y + 1, x, ch] = y10 + bias[ch]
                    out[b, y + 1, x + 1, ch] = y11 + bias[ch]
            else:
                for ch in range(c):
                    y00, y01, y10, y11 = _winograd_tile(m, t, ch)
                    out[b, y, x, ch] = y00 + bias[ch]
                    if x + 1 < out_w:
                        out[b, y, x + 1, ch] = y01 + bias[ch]
                    if y + 1 < out_h:
                        out[b, y + 1, x, ch] = y10 + bias[ch]
                        if x + 1 < out_w:
                            out[b, y + 1, x + 1, ch] = y11 + bias[ch]


@njit(cache=True, nogil=True)
def winograd_output_relu_pool(m, bias, tiles_h, tiles_w, out):
    """``max(0, bias + max of each tile's 2x2 outputs)``: conv, ReLU and 2x2/stride-2 max-pool.

    A tile's 2x2 outputs are exactly one pooling window; the bias and ReLU are applied after the
    maximum (both are monotone, see ``max_pool_2x2_bias_relu``).

    Shape: ``m (T, 16, OC)``, ``bias (OC,)`` -> ``out (N, PH, PW, OC)``, ``PH <= tiles_h``,
    ``PW <= tiles_w``.
    """
    n, out_h, out_w, c = out.shape
    for image_row in range(n * out_h):
        b = image_row // out_h
        i = image_row % out_h
        for j in range(out_w):
            t = (b * tiles_h + i) * tiles_w + j
            for ch in range(c):
                best = _window_max(_winograd_tile(m, t, ch))[0] + bias[ch]
                out[b, i, j, ch] = 0 if best <= 0 else best  # NaN stays NaN


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


@njit(cache=True, inline="always")
def _a_column(g0, g1):
    """``A`` applied to a 2-vector, ``A = [[1, 0], [1, 1], [1, -1], [0, -1]]``."""
    return g0, g0 + g1, g0 - g1, -g1


@njit(cache=True, inline="always")
def _output_grad_tile(out, t, ch, g00, g01, g10, g11):
    """``out[t, :, ch] = A g A^T`` for the 2x2 output gradient ``g`` of tile ``t``."""
    r00, r10, r20, r30 = _a_column(g00, g10)  # A g, column 0 ...
    r01, r11, r21, r31 = _a_column(g01, g11)  # ... and column 1
    out[t, 0, ch], out[t, 1, ch], out[t, 2, ch], out[t, 3, ch] = _a_column(r00, r01)
    out[t, 4, ch], out[t, 5, ch], out[t, 6, ch], out[t, 7, ch] = _a_column(r10, r11)
    out[t, 8, ch], out[t, 9, ch], out[t, 10, ch], out[t, 11, ch] = _a_column(r20, r21)
    out[t, 12, ch], out[t, 13, ch], out[t, 14, ch], out[t, 15, ch] = _a_column(r30, r31)


@njit(cache=True, nogil=True)
def winograd_output_grad(grad, tiles_h, tiles_w, out):
    """``out[t, :, c] = A g A^T`` for the 2x2 block ``g`` of output gradient under each tile (zero
    past the edge): the adjoint of ``winograd_output``.

    Shape: ``grad (N, OH, OW, OC)`` -> ``out (T, 16, OC)``.
    """
    n, out_h, out_w, c = grad.shape
    for image_row in range(n * tiles_h):
        b = image_row // tiles_h
        y = 2 * (image_row % tiles_h)
        for j in range(tiles_w):
            t = image_row * tiles_w + j
            x = 2 * j
            if y + 1 < out_h and x + 1 < out_w:  # whole tiles: no bounds tests (as above)
                for ch in range(c):
                    g00, g01 = grad[b, y, x, ch], grad[b, y, x + 1, ch]
                    g10, g11 = grad[b, y + 1, x, ch], grad[b, y + 1, x + 1, ch]
                    _output_grad_tile(out, t, ch, g00, g01, g10, g11)
            else:
                right, below = x + 1 < out_w, y + 1 < out_h
                zero = np.zeros(1, dtype=out.dtype)[0]
                for ch in range(c):
                    g00 = grad[b, y, x, ch]
                    g01 = grad[b, y, x + 1, ch] if right else zero
                    g10 = grad[b, y + 1, x, ch] if below else zero
                    g11 = grad[b, y + 1, x + 1, ch] if right and below else zero
                    _output_grad_tile(out, t, ch, g00, g01, g10, g11)


@njit(cache=True, inline="always")
def _b_column(e0, e1, e2, e3):
    """``B`` applied to a 4-vector: the adjoint of ``_b_transposed_column``."""
    return e0, e1 - e2 + e3, e1 + e2 - e0, -e3


@njit(cache=True, inline="always")
def _add_row(out, b, y, x, ch, row):
    """``out[b, y, x:x+4, ch] += row``."""
    out[b, y, x, ch] += row[0]
    out[b, y, x + 1, ch] += row[1]
    out[b, y, x + 2, ch] += row[2]
    out[b, y, x + 3, ch] += row[3]


@njit(cache=True, nogil=True)
def winograd_input_grad(grad_v, tiles_h, tiles_w, out):
    """``out[b, y:y+4, x:x+4, c] += B grad_v[t, :, c] B^T`` for every tile: the adjoint of
    ``winograd_input``. Neighbouring tiles overlap by two rows or columns, so ``out`` must start
    at zero and one image's tiles are added one after another.

    Shape: ``grad_v (T, 16, C)`` -> ``out (N, >= 2 * tiles_h + 2, >= 2 * tiles_w + 2, C)``.
    """
    c = out.shape[3]
    for b in range(out.shape[0]):
        for i in range(tiles_h):
            y = 2 * i
            for j in range(tiles_w):
                t = (b * tiles_h + i) * tiles_w + j
                x = 2 * j
                for ch in range(c):
                    # B on the left combines the rows of the 4x4 gradient, column by column ...
                    e00, e10, e20, e30 = _b_column(
                        grad_v[t, 0, ch], grad_v[t, 4, ch], grad_v[t, 8, ch], grad_v[t, 12, ch]
                    )
                    e01, e11, e21, e31 = _b_column(
                        grad_v[t, 1, ch], grad_v[t, 5, ch], grad_v[t, 9, ch], grad_v[t, 13, ch]
                    )
                    e02, e12, e22, e32 = _b_column(
                        grad_v[t, 2, ch], grad_v[t, 6, ch], grad_v[t, 10, ch], grad_v[t, 14, ch]
                    )
                    e03, e13, e23, e33 = _b_column(
                        grad_v[t, 3, ch], grad_v[t, 7, ch], grad_v[t, 11, ch], grad_v[t, 15, ch]
                    )
                    # ... and B^T on the right combines the columns of each row.
                    _add_row(out, b, y, x, ch, _b_column(e00, e01, e02, e03))
                    _add_row(out, b, y + 1, x, ch, _b_column(e10, e11, e12, e13))
                    _add_row(out, b, y + 2, x, ch, _b_column(e20, e21, e22, e23))
                    _add_row(out, b, y + 3, x, ch, _b_column(e30, e31, e32, e33))


@njit(cache=True, inline="always")
def _g_transposed_column(x0, x1, x2, x3):
    """``G^T`` applied to a 4-vector (length 4 -> 3): the adjoint of ``G``."""
    return x0 + (x1 + x2) / 2, (x1 - x2) / 2, (x1 + x2) / 2 + x3


@njit(cache=True, nogil=True)
def winograd_weight_grad(grad_u, out):
    """``out[o, c] = G^T X G`` with ``X[i, j] = grad_u[4 i + j, c, o]``: the adjoint of
    ``winograd_weight``, in float64 inside.

    Shape: ``grad_u (16, C, OC)`` -> ``out (OC, C, 3, 3)``.
    """
    channels, out_channels = grad_u.shape[1], grad_u.shape[2]
    rows = np.empty((3, 4))  # G^T X
    for c in range(channels):
        for o in range(out_channels):
            for j in range(4):
                rows[0, j], rows[1, j], rows[2, j] = _g_transposed_column(
                    float(grad_u[j, c, o]),
                    float(grad_u[4 + j, c, o]),
                    float(grad_u[8 + j, c, o]),
                    float(grad_u[12 + j, c, o]),
                )
            for k in range(3):
                out[o, c, k, 0], out[o, c, k, 1], out[o, c, k, 2] = _g_transposed_column(
                    rows[k, 0], rows[k, 1], rows[k, 2], rows[k, 3]
                )
