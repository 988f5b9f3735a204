"""Max pooling, channels-last, with the ReLU that so often comes before it fused in.

ReLU is monotone, so it commutes with a window maximum: ``max_pool(relu(x)) ==
relu(max_pool(x))``. The fused operations pool first and apply ReLU to the output, which is
(for a 2x2 / stride-2 pool) four times smaller; the full-size ReLU output and its mask are never
written. Backward routes ``grad_out * (out > 0)`` to each window's winner: exactly the ReLU's
gradient at that winner (a window whose maximum is <= 0 passes nothing either way).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from scratchcnn.backend import PoolGeometry
from scratchcnn.fast.conv import pools_in_tiles
from scratchcnn.fast.elementwise import relu_backward, relu_forward
from scratchcnn.fast.layout import out_hw, pad_nhwc, to_nchw, to_nhwc, windows_nhwc
from scratchcnn.fast.runtime import kernels, split_batch
from scratchcnn.fast.settings import Settings
from scratchcnn.functional.conv import kernel_offset_slices


class PoolSaved(NamedTuple):
    """What max-pooling keeps for backward: each window's winner ``kh * KW + kw`` as an
    ``(N, OH, OW, C)`` int32 array (channels-last), the input shape (NCHW), the geometry, and
    the ReLU mask of the pooled output when a ReLU was fused in (else ``None``)."""

    argmax: np.ndarray
    input_shape: tuple[int, int, int, int]
    geometry: PoolGeometry
    positive: np.ndarray | None


def max_pool2d_forward(
    x: np.ndarray, geometry: PoolGeometry, keep: bool, settings: Settings
) -> tuple[np.ndarray, PoolSaved | None]:
    """Maximum of each window; padding never wins, ties go to the first position, NaN wins.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)`` (channels-last memory).
    """
    out, argmax = _max_pool_nhwc(x, geometry, settings)
    return to_nchw(out), (PoolSaved(argmax, x.shape, geometry, None) if keep else None)


def _max_pool_nhwc(x: np.ndarray, g: PoolGeometry, settings: Settings):
    """The pooled output ``(N, OH, OW, C)`` and the winners, both channels-last."""
    x_nhwc = to_nhwc(x)
    n, h, w, c = x_nhwc.shape
    size = out_hw((h, w), g.kernel_size, g.stride, g.padding)
    compiled = kernels(settings)
    if compiled is None:
        padded = pad_nhwc(x_nhwc, g.padding, -np.inf)
        windows = windows_nhwc(padded, g.kernel_size, g.stride, (1, 1), size)
        flat = windows.reshape(n, *size, -1, c)  # (N, OH, OW, KH*KW, C)
        argmax = flat.argmax(axis=3).astype(np.int32)
        out = np.take_along_axis(flat, argmax[:, :, :, None, :], axis=3)[:, :, :, 0]
        return out, argmax
    out = np.empty((n, *size, c), dtype=x.dtype)
    argmax = np.empty((n, *size, c), dtype=np.int32)
    if pools_in_tiles(g):

        def pool_images(images: slice) -> None:
            compiled.max_pool_2x2(x_nhwc[images], out[images], argmax[images])
    else:
        window = (*g.kernel_size, *g.stride, g.padding[0][0], g.padding[1][0])

        def pool_images(images: slice) -> None:
            compiled.max_pool(x_nhwc[images], *window, out[images], argmax[images])

    split_batch(pool_images, n, x.nbytes, settings)
    return out, argmax


def max_pool2d_backward(saved: PoolSaved, grad_out: np.ndarray, settings: Settings) -> np.ndarray:
    """Route each output gradient to the input that won its window (after the fused ReLU's
    mask, if any).

    Shape: ``grad_out (N, C, OH, OW)`` -> ``grad_x (N, C, H, W)`` (channels-last memory).
    """
    if saved.positive is not None:
        grad_out = relu_backward(saved.positive, grad_out, settings)
    n, c, h, w = saved.input_shape
    g, argmax = saved.geometry, saved.argmax
    grad_nhwc = to_nhwc(grad_out)
    compiled = kernels(settings)
    if compiled is not None:
        out = np.empty((n, h, w, c), dtype=grad_out.dtype)
        if pools_in_tiles(g):

            def route_images(images: slice) -> None:
                compiled.max_pool_2x2_backward(grad_nhwc[images], argmax[images], out[images])
        else:
            window = (g.kernel_size[1], *g.stride, g.padding[0][0], g.padding[1][0])

            def route_images(images: slice) -> None:
                compiled.max_pool_backward(grad_nhwc[images], argmax[images], *window, out[images])

        split_batch(route_images, n, out.nbytes, settings)
        return to_nchw(out)
    (top, bottom), (left, right) = g.padding
    out_h, out_w = grad_nhwc.shape[1:3]
    grad_padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=grad_out.dtype)
    for i in range(g.kernel_size[0]):
        for j in range(g.kernel_size[1]):
            rows, columns = kernel_offset_slices((i, j), g.stride, (1, 1), (out_h, out_w))
            won = argmax == i * g.kernel_size[1] + j
            grad_padded[:, rows, columns] += np.where(won, grad_nhwc, 0)
    return to_nchw(grad_padded[:, top : top + h, left : left + w])


def relu_max_pool2d_forward(
    x: np.ndarray, geometry: PoolGeometry, keep: bool, settings: Settings
) -> tuple[np.ndarray, PoolSaved | None]:
    """``max_pool(relu(x))``, pooling first (see the module docstring).

    In inference a 2x2 / stride-2 pool reads each input once and writes each output once, with
    no winners kept.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)`` (channels-last memory).
    """
    compiled = kernels(settings)
    if not keep and compiled is not None and pools_in_tiles(geometry):
        x_nhwc = to_nhwc(x)
        n, h, w, c = x_nhwc.shape
        out = np.empty((n, h // 2, w // 2, c), dtype=x.dtype)
        zeros = np.zeros(c, dtype=x.dtype)

        def pool_images(images: slice) -> None:
            compiled.max_pool_2x2_bias_relu(x_nhwc[images], zeros, out[images])

        split_batch(pool_images, n, x.nbytes, settings)
        return to_nchw(out), None
    pooled, argmax = _max_pool_nhwc(x, geometry, settings)
    out, positive = relu_forward(to_nchw(pooled), keep, settings)
    return out, (PoolSaved(argmax, x.shape, geometry, positive) if keep else None)
