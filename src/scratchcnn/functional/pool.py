"""Max and average pooling over sliding windows, with their backward passes.

Output size follows the convolution formula (see ``functional.conv``), with dilation 1.
"""

from __future__ import annotations

import numpy as np

from scratchcnn.functional.conv import (
    Pad2d,
    conv_output_size,
    kernel_offset_slices,
    pad_input,
    sliding_windows,
)


def _out_size(shape: tuple[int, ...], kernel_size, stride, padding: Pad2d) -> tuple[int, int]:
    return (
        conv_output_size(shape[2], kernel_size[0], stride[0], padding[0], 1),
        conv_output_size(shape[3], kernel_size[1], stride[1], padding[1], 1),
    )


def max_pool2d_forward(
    x: np.ndarray, kernel_size: tuple[int, int], stride: tuple[int, int], padding: Pad2d
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum of each window; padding never wins (it is ``-inf``).

    Args:
        x: the input batch.
        kernel_size: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        padding: ``((top, bottom), (left, right))``, filled with ``-inf``.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)``; also returns the flat argmax inside each window,
    ``(N, C, OH, OW)`` integers in ``[0, KH*KW)``. Ties go to the first position in the window.
    """
    out_size = _out_size(x.shape, kernel_size, stride, padding)
    windows = sliding_windows(
        pad_input(x, padding, value=-np.inf), kernel_size, stride, (1, 1), out_size
    )
    flat = windows.reshape(*windows.shape[:4], -1)  # (N, C, OH, OW, KH*KW)
    argmax = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    return out, argmax


def max_pool2d_backward(
    grad_out: np.ndarray,
    argmax: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
) -> np.ndarray:
    """Route each output gradient to the single input that won its window.

    Args:
        grad_out: ``d loss / d out``.
        argmax: the winners :func:`max_pool2d_forward` returned.
        input_shape: ``(N, C, H, W)`` of the forward input.
        kernel_size: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        padding: ``((top, bottom), (left, right))``.

    Shape: ``grad_out (N, C, OH, OW)`` -> ``grad_x (N, C, H, W)``.
    """
    n, c, h, w = input_shape
    (top, bottom), (left, right) = padding
    out_h, out_w = grad_out.shape[2:]
    grad_padded = np.zeros((n, c, h + top + bottom, w + left + right), dtype=grad_out.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            rows, columns = kernel_offset_slices((i, j), stride, (1, 1), (out_h, out_w))
            won = argmax == i * kernel_size[1] + j
            grad_padded[:, :, rows, columns] += np.where(won, grad_out, 0)
    return grad_padded[:, :, top : top + h, left : left + w]


def avg_pool2d_forward(
    x: np.ndarray, kernel_size: tuple[int, int], stride: tuple[int, int], padding: Pad2d
) -> np.ndarray:
    """Mean of each window, zero padding counted in the mean (PyTorch's default).

    Args:
        x: the input batch.
        kernel_size: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        padding: ``((top, bottom), (left, right))`` zeros, counted in the mean.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)``.
    """
    out_size = _out_size(x.shape, kernel_size, stride, padding)
    windows = sliding_windows(pad_input(x, padding), kernel_size, stride, (1, 1), out_size)
    return windows.mean(axis=(-2, -1))


def avg_pool2d_backward(
    grad_out: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
) -> np.ndarray:
    """Spread each output gradient evenly over its window.

    Args:
        grad_out: ``d loss / d out``.
        input_shape: ``(N, C, H, W)`` of the forward input.
        kernel_size: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        padding: ``((top, bottom), (left, right))``.

    Shape: ``grad_out (N, C, OH, OW)`` -> ``grad_x (N, C, H, W)``.
    """
    n, c, h, w = input_shape
    (top, bottom), (left, right) = padding
    out_h, out_w = grad_out.shape[2:]
    share = grad_out / (kernel_size[0] * kernel_size[1])
    grad_padded = np.zeros((n, c, h + top + bottom, w + left + right), dtype=grad_out.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            rows, columns = kernel_offset_slices((i, j), stride, (1, 1), (out_h, out_w))
            grad_padded[:, :, rows, columns] += share
    return grad_padded[:, :, top : top + h, left : left + w]
