"""Channels-last (NHWC) views and window helpers shared by the fast operations.

The fast backend's arrays have NCHW *shape* at the API and NHWC *memory* inside
(``out.transpose(0, 3, 1, 2)`` of a contiguous NHWC buffer), exactly like PyTorch's
``channels_last`` format: every NumPy operation sees the same logical values, and the next fast
operation reads them without copying.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from scratchcnn.functional.conv import Pad2d, conv_output_size


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


def out_hw(
    hw: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int] = (1, 1),
) -> tuple[int, int]:
    """Output height and width by ``functional.conv.conv_output_size`` along each axis."""
    return (
        conv_output_size(hw[0], kernel_size[0], stride[0], padding[0], dilation[0]),
        conv_output_size(hw[1], kernel_size[1], stride[1], padding[1], dilation[1]),
    )


def pad_nhwc(x: np.ndarray, padding: Pad2d, value: float) -> np.ndarray:
    """Pad the spatial axes of a channels-last array (no copy when there is no padding).

    Shape: ``(N, H, W, C) -> (N, H + top + bottom, W + left + right, C)``.
    """
    (top, bottom), (left, right) = padding
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def windows_nhwc(
    x_padded: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_size: tuple[int, int],
) -> np.ndarray:
    """A read-only strided view of every window; no data is copied.

    Shape: ``(N, Hp, Wp, C) -> (N, OH, OW, KH, KW, C)``.
    """
    n, _, _, c = x_padded.shape
    s_n, s_h, s_w, s_c = x_padded.strides
    return as_strided(
        x_padded,
        shape=(n, *out_size, *kernel_size, c),
        strides=(s_n, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1], s_c),
        writeable=False,
    )
