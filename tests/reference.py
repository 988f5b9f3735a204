"""Naive loop implementations, written independently of the im2col and strided-window kernels.

Each function walks the output pixels one by one and reads the receptive field with plain
slicing, the way the maths is written on a whiteboard. They are slow and only meant for tests.

Padding is always explicit, ``((top, bottom), (left, right))``, as the layers resolve it.
"""

from __future__ import annotations

import numpy as np

Pad2d = tuple[tuple[int, int], tuple[int, int]]


def output_size(size: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int) -> int:
    """``floor((size + pad_before + pad_after - dilation * (kernel - 1) - 1) / stride) + 1``."""
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def _pad(x: np.ndarray, padding: Pad2d, value: float = 0.0) -> np.ndarray:
    (top, bottom), (left, right) = padding
    n, c, h, w = x.shape
    out = np.full((n, c, h + top + bottom, w + left + right), value, dtype=x.dtype)
    out[:, :, top : top + h, left : left + w] = x
    return out


def _window(
    i: int, j: int, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[slice, slice]:
    """Row and column slices (in padded coordinates) of output pixel ``(i, j)``'s field."""
    top, left = i * stride[0], j * stride[1]
    rows = slice(top, top + dilation[0] * (kernel[0] - 1) + 1, dilation[0])
    cols = slice(left, left + dilation[1] * (kernel[1] - 1) + 1, dilation[1])
    return rows, cols


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
) -> np.ndarray:
    """Cross-correlation by loops over the batch and the output pixels.

    Shape: ``x (N, C, H, W)``, ``weight (OC, C, KH, KW)`` -> ``(N, OC, OH, OW)``.
    """
    n, _, h, w = x.shape
    out_c, _, kh, kw = weight.shape
    out_h = output_size(h, kh, stride[0], padding[0], dilation[0])
    out_w = output_size(w, kw, stride[1], padding[1], dilation[1])
    xp = _pad(x, padding)
    out = np.zeros((n, out_c, out_h, out_w), dtype=x.dtype)
    for b in range(n):
        for i in range(out_h):
            for j in range(out_w):
                rows, cols = _window(i, j, (kh, kw), stride, dilation)
                field = xp[b, :, rows, cols]  # (C, KH, KW)
                for o in range(out_c):
                    out[b, o, i, j] = np.sum(field * weight[o])
                    if bias is not None:
                        out[b, o, i, j] += bias[o]
    return out


def conv2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients w.r.t. input, weight and bias, accumulated output pixel by output pixel.

    Shape: ``grad_out (N, OC, OH, OW)`` -> ``(N, C, H, W)``, ``(OC, C, KH, KW)``, ``(OC,)``.
    """
    n, _, h, w = x.shape
    out_c, _, kh, kw = weight.shape
    (top, _), (left, _) = padding
    xp = _pad(x, padding)
    grad_xp = np.zeros_like(xp)
    grad_w = np.zeros_like(weight)
    grad_b = np.zeros(out_c, dtype=weight.dtype)
    for b in range(n):
        for i in range(grad_out.shape[2]):
            for j in range(grad_out.shape[3]):
                rows, cols = _window(i, j, (kh, kw), stride, dilation)
                for o in range(out_c):
                    g = grad_out[b, o, i, j]
                    grad_w[o] += g * xp[b, :, rows, cols]
                    grad_xp[b, :, rows, cols] += g * weight[o]
                    grad_b[o] += g
    return grad_xp[:, :, top : top + h, left : left + w], grad_w, grad_b


def max_pool2d(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: Pad2d
) -> tuple[np.ndarray, np.ndarray]:
    """Window maxima (padding is ``-inf``) and each winner's padded ``(row, col)``.

    Ties go to the first position in row-major window order.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)`` and ``(N, C, OH, OW, 2)`` integer positions.
    """
    n, c, h, w = x.shape
    out_h = output_size(h, kernel[0], stride[0], padding[0], 1)
    out_w = output_size(w, kernel[1], stride[1], padding[1], 1)
    xp = _pad(x, padding, value=-np.inf)
    out = np.zeros((n, c, out_h, out_w), dtype=x.dtype)
    winner = np.zeros((n, c, out_h, out_w, 2), dtype=int)
    for b in range(n):
        for ch in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    best, best_pos = -np.inf, None
                    for ki in range(kernel[0]):
                        for kj in range(kernel[1]):
                            r, s = i * stride[0] + ki, j * stride[1] + kj
                            if best_pos is None or xp[b, ch, r, s] > best:  # strict: first wins
                                best, best_pos = xp[b, ch, r, s], (r, s)
                    out[b, ch, i, j] = best
                    winner[b, ch, i, j] = best_pos
    return out, winner


def max_pool2d_backward(
    grad_out: np.ndarray, winner: np.ndarray, input_shape: tuple[int, ...], padding: Pad2d
) -> np.ndarray:
    """Send each output gradient to its window's winner.

    Shape: ``grad_out (N, C, OH, OW)`` -> ``(N, C, H, W)``.
    """
    n, c, h, w = input_shape
    (top, bottom), (left, right) = padding
    grad_xp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=grad_out.dtype)
    for b, ch, i, j in np.ndindex(grad_out.shape):
        r, s = winner[b, ch, i, j]
        grad_xp[b, ch, r, s] += grad_out[b, ch, i, j]
    return grad_xp[:, :, top : top + h, left : left + w]


def avg_pool2d(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: Pad2d
) -> np.ndarray:
    """Window means, zero padding included in the count.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)``.
    """
    n, c, h, w = x.shape
    out_h = output_size(h, kernel[0], stride[0], padding[0], 1)
    out_w = output_size(w, kernel[1], stride[1], padding[1], 1)
    xp = _pad(x, padding)
    out = np.zeros((n, c, out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            rows, cols = _window(i, j, kernel, stride, (1, 1))
            out[:, :, i, j] = xp[:, :, rows, cols].sum(axis=(2, 3)) / (kernel[0] * kernel[1])
    return out


def avg_pool2d_backward(
    grad_out: np.ndarray,
    input_shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
) -> np.ndarray:
    """Spread each output gradient evenly over its window.

    Shape: ``grad_out (N, C, OH, OW)`` -> ``(N, C, H, W)``.
    """
    n, c, h, w = input_shape
    (top, bottom), (left, right) = padding
    grad_xp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=grad_out.dtype)
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            rows, cols = _window(i, j, kernel, stride, (1, 1))
            share = grad_out[:, :, i, j] / (kernel[0] * kernel[1])
            grad_xp[:, :, rows, cols] += share[:, :, None, None]
    return grad_xp[:, :, top : top + h, left : left + w]


def relu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``max(x, 0)`` element by element (NaN stays NaN) and its derivative (1 where x > 0).

    Shape: any -> same (twice).
    """
    out = np.array([v if not v <= 0 else 0.0 for v in x.ravel()], dtype=x.dtype)
    slope = np.array([1.0 if v > 0 else 0.0 for v in x.ravel()], dtype=x.dtype)
    return out.reshape(x.shape), slope.reshape(x.shape)


def gelu(x: np.ndarray, approximate: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """GELU and its derivative element by element with ``math.erf`` / ``math.tanh``.

    Shape: any -> same (twice).
    """
    import math

    out, slope = np.empty(x.size), np.empty(x.size)
    for k, v in enumerate(x.ravel().astype(float)):
        if approximate == "tanh":
            inner = math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)
            t = math.tanh(inner)
            out[k] = 0.5 * v * (1 + t)
            d_inner = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * v**2)
            slope[k] = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * d_inner
        else:
            cdf = 0.5 * (1 + math.erf(v / math.sqrt(2)))
            out[k] = v * cdf
            slope[k] = cdf + v * math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)
    return out.reshape(x.shape).astype(x.dtype), slope.reshape(x.shape).astype(x.dtype)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``out[n, o] = sum_i x[n, i] weight[o, i] + bias[o]`` with explicit sums.

    Shape: ``x (N, in)``, ``weight (out, in)`` -> ``(N, out)``.
    """
    out = np.zeros((x.shape[0], weight.shape[0]), dtype=x.dtype)
    for n in range(x.shape[0]):
        for o in range(weight.shape[0]):
            out[n, o] = np.sum(x[n] * weight[o]) + (0 if bias is None else bias[o])
    return out


def batch_norm(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, stats=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel normalisation, channel by channel; batch statistics unless ``stats``.

    Shape: ``x (N, C, ...)`` -> ``out`` like ``x``, ``mean (C,)``, ``var (C,)`` (biased).
    """
    out = np.empty_like(x)
    means, variances = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        values = x[:, c]
        mean = values.mean() if stats is None else stats[0][c]
        var = ((values - values.mean()) ** 2).mean() if stats is None else stats[1][c]
        out[:, c] = weight[c] * (values - mean) / np.sqrt(var + eps) + bias[c]
        means[c], variances[c] = mean, var
    return out, means, variances


def batch_norm_backward(
    grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training-mode gradients through the staged graph (CS231n's way, not the compact formula):
    ``x -> mu -> var -> x_hat -> out``, each stage's local derivative in turn.

    Shape: ``grad_out, x (N, C, ...)`` -> ``grad_x`` like ``x``, ``(C,)``, ``(C,)``.
    """
    grad_x = np.empty_like(x)
    grad_w, grad_b = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        v, g = x[:, c], grad_out[:, c]
        m = v.size
        mu = v.mean()
        var = ((v - mu) ** 2).mean()
        inv_std = 1.0 / np.sqrt(var + eps)
        x_hat = (v - mu) * inv_std
        grad_b[c], grad_w[c] = g.sum(), (g * x_hat).sum()
        d_x_hat = g * weight[c]
        d_var = np.sum(d_x_hat * (v - mu)) * -0.5 * inv_std**3
        d_mu = -np.sum(d_x_hat) * inv_std + d_var * np.mean(-2.0 * (v - mu))
        grad_x[:, c] = d_x_hat * inv_std + d_var * 2.0 * (v - mu) / m + d_mu / m
    return grad_x, grad_w, grad_b
