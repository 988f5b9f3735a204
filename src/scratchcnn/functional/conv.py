"""Convolution as im2col + one matrix product: the readable reference implementation.

The forward pass unrolls every receptive field of the padded input into one row of a matrix
("im2col"), so that the whole convolution becomes a single matrix product with the flattened
filters. The backward pass reuses the same matrix for the weight gradient and folds the
column gradient back onto the input ("col2im").

Output size along one spatial axis, for input size ``in``, kernel ``k``, stride ``s``,
padding ``p_before + p_after`` and dilation ``d``::

    out = floor((in + p_before + p_after - d * (k - 1) - 1) / s) + 1

With symmetric padding ``p`` this is PyTorch's ``floor((in + 2p - d(k - 1) - 1) / s) + 1``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

Pad2d = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def conv_output_size(
    size: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int
) -> int:
    """Output length along one axis: ``floor((size + pad0 + pad1 - d(k-1) - 1) / s) + 1``.

    Args:
        size: the input length along the axis.
        kernel: the kernel length along the axis.
        stride: the step between windows.
        pad: ``(before, after)`` padding.
        dilation: the spacing between kernel taps.
    """
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def pad_input(x: np.ndarray, padding: Pad2d, value: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes of an NCHW array.

    Shape: ``(N, C, H, W) -> (N, C, H + top + bottom, W + left + right)``.
    """
    (top, bottom), (left, right) = padding
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def sliding_windows(
    x_padded: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_size: tuple[int, int],
) -> np.ndarray:
    """A read-only strided view of every receptive field; no data is copied.

    Shape: ``(N, C, Hp, Wp) -> (N, C, OH, OW, KH, KW)``.
    """
    n, c = x_padded.shape[:2]
    s_n, s_c, s_h, s_w = x_padded.strides
    return as_strided(
        x_padded,
        shape=(n, c, out_size[0], out_size[1], kernel_size[0], kernel_size[1]),
        strides=(s_n, s_c, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1]),
        writeable=False,
    )


def kernel_offset_slices(
    offset: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_size: tuple[int, int],
) -> tuple[slice, slice]:
    """Where kernel position ``offset = (i, j)`` lands in the padded input, for every output pixel.

    Output pixel ``(oh, ow)`` reads padded input ``(oh * stride + i * dilation, ...)``, so over all
    outputs the rows form ``slice(i * dilation, ..., stride)``. Backward passes use these slabs to
    add each kernel position's gradient back without a loop over pixels.
    """
    starts = (offset[0] * dilation[0], offset[1] * dilation[1])
    return (
        slice(starts[0], starts[0] + stride[0] * (out_size[0] - 1) + 1, stride[0]),
        slice(starts[1], starts[1] + stride[1] * (out_size[1] - 1) + 1, stride[1]),
    )


def im2col(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
) -> tuple[np.ndarray, tuple[int, int]]:
    """Unroll every receptive field of ``x`` into a row.

    Args:
        x: the input batch.
        kernel_size: ``(kh, kw)``.
        stride: ``(sh, sw)``, the step between windows.
        padding: ``((top, bottom), (left, right))`` zeros around the input.
        dilation: ``(dh, dw)``, the spacing between kernel taps.

    Shape: ``(N, C, H, W) -> (N * OH * OW, C * KH * KW)``; also returns ``(OH, OW)``.
    Row ``n * OH * OW + i * OW + j`` holds the window that produces output pixel ``(n, i, j)``;
    its columns are ordered ``(c, kh, kw)``, matching a weight reshaped to ``(OC, C*KH*KW)``.
    """
    n, c, h, w = x.shape
    out_h = conv_output_size(h, kernel_size[0], stride[0], padding[0], dilation[0])
    out_w = conv_output_size(w, kernel_size[1], stride[1], padding[1], dilation[1])
    windows = sliding_windows(pad_input(x, padding), kernel_size, stride, dilation, (out_h, out_w))
    cols = windows.transpose(0, 2, 3, 1, 4, 5)  # (N, OH, OW, C, KH, KW)
    return cols.reshape(n * out_h * out_w, c * kernel_size[0] * kernel_size[1]), (out_h, out_w)


def col2im(
    cols: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
) -> np.ndarray:
    """Fold column gradients back onto the input, summing where windows overlap (im2col's adjoint).

    Args:
        cols: gradients of the im2col matrix, as :func:`im2col` laid it out.
        input_shape: ``(N, C, H, W)`` of the input the matrix was built from.
        kernel_size: ``(kh, kw)``.
        stride: ``(sh, sw)``, the step between windows.
        padding: ``((top, bottom), (left, right))`` zeros around the input.
        dilation: ``(dh, dw)``, the spacing between kernel taps.

    Shape: ``(N * OH * OW, C * KH * KW) -> (N, C, H, W)``.
    The loop runs over the KH * KW kernel offsets only; each iteration adds one strided slab.
    """
    n, c, h, w = input_shape
    (top, bottom), (left, right) = padding
    kh, kw = kernel_size
    out_h = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    out_w = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    cols = cols.reshape(n, out_h, out_w, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)  # (N,C,KH,KW,OH,OW)
    grad_padded = np.zeros((n, c, h + top + bottom, w + left + right), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = kernel_offset_slices((i, j), stride, dilation, (out_h, out_w))
            grad_padded[:, :, rows, columns] += cols[:, :, i, j]
    return grad_padded[:, :, top : top + h, left : left + w]


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """2-D cross-correlation (what deep learning calls convolution).

    Args:
        x: the input batch.
        weight: the filters.
        bias: one value per filter, or ``None``.
        stride: ``(sh, sw)``, the step between windows.
        padding: ``((top, bottom), (left, right))`` zeros around the input.
        dilation: ``(dh, dw)``, the spacing between kernel taps.

    Shape: ``x (N, C, H, W)``, ``weight (OC, C, KH, KW)``, ``bias (OC,)`` ->
    ``out (N, OC, OH, OW)``; also returns the im2col matrix ``(N*OH*OW, C*KH*KW)`` for backward.
    """
    out_channels = weight.shape[0]
    cols, (out_h, out_w) = im2col(x, weight.shape[2:], stride, padding, dilation)
    out = cols @ weight.reshape(out_channels, -1).T  # (N*OH*OW, OC)
    if bias is not None:
        out += bias
    out = out.reshape(x.shape[0], out_h, out_w, out_channels).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out), cols


def conv2d_backward(
    grad_out: np.ndarray,
    cols: np.ndarray,
    input_shape: tuple[int, int, int, int],
    weight: np.ndarray,
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
    need_input_grad: bool = True,
    need_weight_grad: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of a convolution with respect to its input, weight and bias.

    Args:
        grad_out: ``d loss / d out``.
        cols: the im2col matrix :func:`conv2d_forward` returned.
        input_shape: ``(N, C, H, W)`` of the forward input.
        weight: the filters of the forward pass.
        stride: ``(sh, sw)``, the step between windows.
        padding: ``((top, bottom), (left, right))`` zeros around the input.
        dilation: ``(dh, dw)``, the spacing between kernel taps.
        need_input_grad: compute ``grad_x`` (the first layer of a network skips it).
        need_weight_grad: compute ``grad_w`` and ``grad_b`` (frozen layers skip them).

    Shape: ``grad_out (N, OC, OH, OW)``, ``cols (N*OH*OW, C*KH*KW)`` ->
    ``grad_x (N, C, H, W)`` (``None`` unless ``need_input_grad``), ``grad_w (OC, C, KH, KW)``
    and ``grad_b (OC,)`` (both ``None`` unless ``need_weight_grad``).
    """
    out_channels = weight.shape[0]
    grad_rows = grad_out.transpose(0, 2, 3, 1).reshape(-1, out_channels)  # (N*OH*OW, OC)
    grad_w = grad_b = None
    if need_weight_grad:
        grad_w = (grad_rows.T @ cols).reshape(weight.shape)
        grad_b = grad_rows.sum(axis=0)
    grad_x = None
    if need_input_grad:
        grad_cols = grad_rows @ weight.reshape(out_channels, -1)  # (N*OH*OW, C*KH*KW)
        grad_x = col2im(grad_cols, input_shape, weight.shape[2:], stride, padding, dilation)
    return grad_x, grad_w, grad_b
