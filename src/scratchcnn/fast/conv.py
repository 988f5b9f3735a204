"""The im2col convolution, channels-last and in cache-sized chunks of images.

In channels-last memory an im2col row is ``KH * KW`` contiguous runs of ``C`` channels, and the
product ``cols @ weight_rows.T`` is already the ``(N, OH, OW, OC)`` output: no transpose copy.
The batch is cut into chunks small enough that a chunk's rows stay in cache between im2col
writing them and BLAS reading them; the workers of :mod:`.runtime` take chunks in parallel.

3x3 stride-1 convolutions go to :mod:`.winograd` instead (when it applies). Without Numba, the
kernels' NumPy equivalents run (slab copies), so the backend works everywhere.

Output sizes follow ``functional.conv``: ``out = floor((in + p0 + p1 - d(k - 1) - 1) / s) + 1``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from scratchcnn.backend import ConvGeometry, PoolGeometry
from scratchcnn.fast import winograd
from scratchcnn.fast.layout import out_hw, pad_nhwc, to_nchw, to_nhwc, windows_nhwc
from scratchcnn.fast.runtime import (
    batch_chunks,
    blas_limit,
    kernels,
    map_chunks,
    restored,
    scratch,
    storage_dtype,
    stored,
    sum_over_chunks,
)
from scratchcnn.fast.settings import Settings
from scratchcnn.functional.conv import Pad2d, kernel_offset_slices

# Scratch slots of this module (``runtime.scratch``); Winograd uses its own.
_COLS, _GRAD_COLS, _PADDED, _CONV_OUT, _WEIGHT_GRAD = 0, 1, 2, 3, 4


def im2col_nhwc(
    x: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
    settings: Settings,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Unroll every receptive field of a channels-last batch into a contiguous row.

    Shape: ``x (N, H, W, C)`` (any strides) -> ``(N, OH, OW, KH * KW * C)``, columns ordered
    ``(kh, kw, c)``, matching :func:`weight_rows`; written into ``out`` (C-contiguous) if given.
    """
    n, h, w, c = x.shape
    size = out_hw((h, w), kernel_size, stride, padding, dilation)
    if c < settings.keep_cols_below_channels and dilation[1] == 1:
        return _im2col_runs(x, kernel_size, stride, padding, dilation[0], size, out)
    compiled = kernels(settings)
    if compiled is None:
        windows = windows_nhwc(pad_nhwc(x, padding, 0.0), kernel_size, stride, dilation, size)
        cols = windows.reshape(n, *size, -1)  # (N, OH, OW, KH*KW*C), a copy
        if out is None:
            return cols
        out[...] = cols
        return out
    if out is None:
        out = np.empty((n, *size, kernel_size[0] * kernel_size[1] * c), dtype=x.dtype)
    compiled.im2col(x, *kernel_size, *stride, padding[0][0], padding[1][0], *dilation, out)
    return out


def _im2col_runs(x, kernel_size, stride, padding: Pad2d, dil_h: int, size, out) -> np.ndarray:
    """:func:`im2col_nhwc` for few channels and undilated columns, copied in whole kernel rows.

    In a zero-padded, C-contiguous copy of ``x`` the ``KW * C`` values under one kernel row are
    contiguous, so the rows come from one strided view ``(N, OH, OW, KH, KW*C)`` copied with runs
    of ``KW * C`` values (27 values in 3 runs of 9 for a 3x3 RGB kernel), not ``KH * KW`` runs of
    ``C`` (3-value copies, which made the per-element loop slow).
    """
    n, h, w, c = x.shape
    (top, bottom), (left, right) = padding
    padded = scratch(_PADDED, (n, h + top + bottom, w + left + right, c), x.dtype)
    if top or bottom or left or right:
        padded.fill(0)
    padded[:, top : top + h, left : left + w] = x
    s_n, s_h, s_w, s_c = padded.strides
    run = kernel_size[1] * c
    windows = as_strided(
        padded,
        shape=(n, *size, kernel_size[0], run),
        strides=(s_n, s_h * stride[0], s_w * stride[1], s_h * dil_h, s_c),
        writeable=False,
    )  # (N, OH, OW, KH, KW*C)
    if out is None:
        out = np.empty((n, *size, kernel_size[0] * run), dtype=x.dtype)
    np.copyto(out.reshape(n, *size, kernel_size[0], run), windows)
    return out


def col2im_nhwc(
    cols: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Pad2d,
    dilation: tuple[int, int],
    settings: Settings,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Fold column gradients back onto a channels-last image, summing overlaps (im2col's adjoint).

    Shape: ``cols (N, OH, OW, KH * KW * C)``, ``input_shape (N, H, W, C)`` -> ``(N, H, W, C)``,
    written into ``out`` (C-contiguous) if given.
    """
    n, h, w, c = input_shape
    compiled = kernels(settings)
    if compiled is not None:
        out = np.empty(input_shape, dtype=cols.dtype) if out is None else out
        geometry = (*kernel_size, *stride, padding[0][0], padding[1][0], *dilation)
        compiled.col2im(np.ascontiguousarray(cols), *geometry, out)
        return out
    (top, bottom), (left, right) = padding
    out_h, out_w = cols.shape[1:3]
    slabs = cols.reshape(n, out_h, out_w, kernel_size[0], kernel_size[1], c)
    grad_padded = np.zeros((n, h + top + bottom, w + left + right, c), dtype=cols.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            rows, columns = kernel_offset_slices((i, j), stride, dilation, (out_h, out_w))
            grad_padded[:, rows, columns] += slabs[:, :, :, i, j]
    if out is None:
        return grad_padded[:, top : top + h, left : left + w]
    out[...] = grad_padded[:, top : top + h, left : left + w]
    return out


def weight_rows(weight: np.ndarray) -> np.ndarray:
    """Shape: ``(OC, C, KH, KW) -> (OC, KH * KW * C)``, the column order of :func:`im2col_nhwc`."""
    return weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)


def im2col_chunks(n: int, x_shape_nhwc, size, kernel_size, itemsize: int, settings: Settings):
    """The batch cut into chunks whose im2col rows fit ``settings.im2col_chunk_bytes``."""
    per_image = size[0] * size[1] * kernel_size[0] * kernel_size[1] * x_shape_nhwc[3] * itemsize
    return batch_chunks(n, settings.im2col_chunk_bytes // per_image, settings.workers)


class ConvSaved(NamedTuple):
    """What the fast convolution keeps for backward.

    ``x_nhwc`` is the input as a channels-last view ``(N, H, W, C)`` (a float16 copy with
    ``settings.storage == "float16"``). ``cols`` is its im2col matrix ``(N, OH, OW, KH*KW*C)``
    when the input has fewer than ``settings.keep_cols_below_channels`` channels, else ``None``
    and backward rebuilds it chunk by chunk (long contiguous copies, cheaper than writing and
    re-reading a matrix ``KH*KW`` times the input's size).
    """

    x_nhwc: np.ndarray
    cols: np.ndarray | None
    weight: np.ndarray
    geometry: ConvGeometry


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    geometry: ConvGeometry,
    keep: bool,
    settings: Settings,
) -> tuple[np.ndarray, ConvSaved | None]:
    """2-D cross-correlation, channels-last, a few images at a time (see the module docstring).

    Shape: ``x (N, C, H, W)``, ``weight (OC, C, KH, KW)``, ``bias (OC,)`` ->
    ``out (N, OC, OH, OW)`` (channels-last memory), and a :class:`ConvSaved` when ``keep``.
    """
    g = geometry
    x_nhwc = to_nhwc(x)
    if winograd.applies(x_nhwc.shape, weight.shape, g, settings):
        out = winograd.conv2d_forward(x_nhwc, weight, bias, g.padding, settings)
        return to_nchw(out), (
            ConvSaved(stored(x_nhwc, settings), None, weight, g) if keep else None
        )
    n, h, w, c = x_nhwc.shape
    kernel_size = weight.shape[2:]
    out_channels = weight.shape[0]
    size = out_hw((h, w), kernel_size, g.stride, g.padding, g.dilation)
    weight_cols = weight_rows(weight).T  # (KH*KW*C, OC)
    out = np.empty((n, *size, out_channels), dtype=np.result_type(x, weight))
    chunks = im2col_chunks(n, x_nhwc.shape, size, kernel_size, x.itemsize, settings)
    width = kernel_size[0] * kernel_size[1] * c
    compiled = kernels(settings)  # loaded here, not racing in the worker threads
    kept = None
    if keep and c < settings.keep_cols_below_channels:
        kept = np.empty((n, *size, width), dtype=storage_dtype(x.dtype, settings))

    def forward_chunk(images: slice) -> None:
        x_chunk = x_nhwc[images]
        if kept is not None and kept.dtype == x.dtype:
            buffer = kept[images]
        else:
            buffer = scratch(_COLS, (x_chunk.shape[0], *size, width), x.dtype)
        cols = im2col_nhwc(x_chunk, kernel_size, g.stride, g.padding, g.dilation, settings, buffer)
        if kept is not None and kept.dtype != x.dtype:
            kept[images] = cols  # kept in float16
        rows = out[images].reshape(-1, out_channels)  # (b*OH*OW, OC) view
        np.matmul(cols.reshape(rows.shape[0], -1), weight_cols, out=rows)
        if bias is not None and compiled is not None:
            compiled.add_bias(rows, bias.astype(rows.dtype, copy=False))
        elif bias is not None:
            rows += bias

    with blas_limit(settings.blas_threads):
        map_chunks(forward_chunk, chunks, settings.workers)
    saved = ConvSaved(stored(x_nhwc, settings), kept, weight, g) if keep else None
    return to_nchw(out), saved


def transposed_geometry(geometry: ConvGeometry) -> ConvGeometry | None:
    """Where the flipped kernel goes when a stride-1 convolution's input gradient is computed as
    a convolution of the output gradient (``None`` for strided convolutions, or for padding
    wider than the kernel's reach, where col2im is used instead).

    With stride 1, input pixel ``i`` receives ``grad_out[i + p0 - d k]`` through kernel tap
    ``k``; that is the correlation of the output gradient, padded by ``d (K - 1) - p0`` before
    and ``d (K - 1) - p1`` after, with the kernel flipped: the same kind of operation as the
    forward pass, with no overlapping sums to scatter back.
    """
    if geometry.stride != (1, 1):
        return None
    padding = []
    for size, pad, dilation in zip(
        geometry.kernel_size, geometry.padding, geometry.dilation, strict=True
    ):
        reach = dilation * (size - 1)
        before, after = reach - pad[0], reach - pad[1]
        if before < 0 or after < 0:
            return None
        padding.append((before, after))
    return ConvGeometry(geometry.kernel_size, (1, 1), tuple(padding), geometry.dilation)


def flipped_weight(weight: np.ndarray) -> np.ndarray:
    """The kernel of the input gradient's convolution: in and out channels swapped, taps flipped.

    Shape: ``(OC, C, KH, KW) -> (C, OC, KH, KW)``.
    """
    return np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def conv2d_backward(
    saved: ConvSaved,
    grad_out: np.ndarray,
    need_input_grad: bool,
    need_weight_grad: bool,
    settings: Settings,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of :func:`conv2d_forward`, a few images at a time.

    For a stride-1 convolution the input gradient is itself a forward convolution of the output
    gradient (:func:`transposed_geometry`), which runs on Winograd where that applies. The
    weight gradient runs on Winograd's adjoint transforms where
    :func:`.winograd.weight_grad_applies` (3x3 stride-1 layers with many input channels), and
    on im2col rows otherwise. Everything else comes from one im2col pass, the input gradient
    folded back by col2im (:func:`im2col_backward`). (Winograd's adjoint for the input gradient
    measured 1.2-2x slower than the flipped-kernel convolution; benchmarks/README.md.)

    Shape: ``grad_out (N, OC, OH, OW)`` -> ``grad_x (N, C, H, W)`` (channels-last memory),
    ``grad_w (OC, C, KH, KW)``, ``grad_b (OC,)``; ``None`` for those not needed.
    """
    if not (need_input_grad or need_weight_grad):
        return None, None, None
    winograd_weight = need_weight_grad and winograd.weight_grad_applies(
        saved.x_nhwc.shape, saved.weight.shape, saved.geometry, settings
    )
    transposed = transposed_geometry(saved.geometry) if need_input_grad else None
    if transposed is None and not winograd_weight:
        return im2col_backward(saved, grad_out, need_input_grad, need_weight_grad, settings)
    grad_x = grad_w = grad_b = None
    if transposed is not None:
        flipped = flipped_weight(saved.weight)
        grad_x, _ = conv2d_forward(grad_out, flipped, None, transposed, False, settings)
    elif need_input_grad:
        grad_x, _, _ = im2col_backward(saved, grad_out, True, False, settings)
    if winograd_weight:
        grad_nhwc = np.ascontiguousarray(to_nhwc(grad_out))  # free if channels-last memory
        grad_w, grad_b = winograd.conv2d_weight_grad(
            saved.x_nhwc, grad_nhwc, saved.geometry.padding, settings
        )
    elif need_weight_grad:
        _, grad_w, grad_b = im2col_backward(saved, grad_out, False, True, settings)
    return grad_x, grad_w, grad_b


def im2col_backward(
    saved: ConvSaved,
    grad_out: np.ndarray,
    need_input_grad: bool,
    need_weight_grad: bool,
    settings: Settings,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Both gradients from im2col rows, chunk by chunk: ``grad_w = cols^T grad_rows`` and the
    input gradient ``col2im(grad_rows @ W)``, folded back onto the overlapping windows.

    Shape: as :func:`conv2d_backward`.
    """
    x_nhwc, weight, g = saved.x_nhwc, saved.weight, saved.geometry
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    kernel_size = (kernel_h, kernel_w)
    n, h, w, c = x_nhwc.shape
    grad_nhwc = np.ascontiguousarray(to_nhwc(grad_out))  # free if already channels-last memory
    if not (need_input_grad or need_weight_grad):
        return None, None, None
    size = grad_nhwc.shape[1:3]
    w_rows = weight_rows(weight)  # (OC, KH*KW*C)
    width = w_rows.shape[1]
    grad_x = np.empty((n, h, w, c), dtype=grad_out.dtype) if need_input_grad else None
    chunks = im2col_chunks(n, x_nhwc.shape, size, kernel_size, x_nhwc.itemsize, settings)
    largest = max((images.stop - images.start for images in chunks), default=0)
    ones = np.ones(largest * size[0] * size[1], dtype=grad_nhwc.dtype)
    kernels(settings)  # load once here, not racing in the worker threads

    def zeros() -> tuple[np.ndarray, np.ndarray]:
        """A worker's running sums: ``cols^T grad_rows`` (KH*KW*C, OC) and the bias gradient."""
        return np.zeros((width, out_channels), grad_nhwc.dtype), np.zeros(
            out_channels, grad_nhwc.dtype
        )

    def backward_chunk(images: slice, sums: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Fill this chunk's input gradient; add its shares of the weight and bias gradients."""
        grad_rows = grad_nhwc[images].reshape(-1, out_channels)  # (b*OH*OW, OC)
        count = images.stop - images.start
        if grad_x is not None:
            grad_cols = scratch(_GRAD_COLS, (count, *size, width), grad_rows.dtype)
            np.matmul(grad_rows, w_rows, out=grad_cols.reshape(-1, width))
            col2im_nhwc(
                grad_cols, grad_x[images].shape, kernel_size, g.stride, g.padding, g.dilation,
                settings, out=grad_x[images],
            )  # fmt: skip
        if sums is None:
            return
        if saved.cols is not None:
            cols = restored(saved.cols[images], grad_rows.dtype)
        else:
            buffer = scratch(_COLS, (count, *size, width), grad_rows.dtype)
            x_chunk = restored(x_nhwc[images], grad_rows.dtype)
            cols = im2col_nhwc(
                x_chunk, kernel_size, g.stride, g.padding, g.dilation, settings, buffer
            )
        grad_w_cols, grad_b = sums
        # The bias gradient as a BLAS product with ones: grad_rows.sum(axis=0) reduces a tall,
        # narrow array one short row at a time and measured ~10x slower.
        grad_b += ones[: grad_rows.shape[0]] @ grad_rows
        # cols^T g, not (g^T cols)^T: the same (KH*KW*C, OC) product, which OpenBLAS makes up to
        # 1.4x faster this way round for thin rows (conv1's 27 columns; never slower).
        product = scratch(_WEIGHT_GRAD, grad_w_cols.shape, grad_rows.dtype)
        np.matmul(cols.reshape(-1, width).T, grad_rows, out=product)
        grad_w_cols += product

    grad_w = grad_b = None
    with blas_limit(settings.blas_threads):
        if need_weight_grad:  # one set of running sums per worker, not one per chunk
            grad_w_cols, grad_b = sum_over_chunks(backward_chunk, chunks, settings.workers, zeros)
            grad_w = grad_w_cols.T.reshape(out_channels, kernel_h, kernel_w, in_channels)
            grad_w = grad_w.transpose(0, 3, 1, 2)  # (OC, C, KH, KW)
        else:
            map_chunks(lambda images: backward_chunk(images, None), chunks, settings.workers)
    return (None if grad_x is None else to_nchw(grad_x)), grad_w, grad_b


def conv2d_relu_max_pool2d_inference(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    conv: ConvGeometry,
    pool: PoolGeometry,
    settings: Settings,
) -> np.ndarray | None:
    """``max_pool(relu(conv2d(x)))`` in one pass per chunk, for inference; ``None`` where this
    path does not apply (no Numba, or not a 2x2 / stride-2 unpadded pool).

    Each chunk's convolution output goes to a reused per-thread buffer and is pooled at once, so
    the full-size output is never written to memory; the bias and ReLU are applied after pooling
    (a per-channel constant and ReLU are monotone, so they commute with the maximum). A 3x3
    stride-1 convolution runs on Winograd, whose 2x2 output tiles are the pool windows.

    Shape: ``x (N, C, H, W)``, ``weight (OC, C, KH, KW)`` -> ``(N, OC, OH // 2, OW // 2)``
    (channels-last memory).
    """
    compiled = kernels(settings)
    if compiled is None or not pools_in_tiles(pool):
        return None
    x_nhwc = to_nhwc(x)
    if winograd.applies(x_nhwc.shape, weight.shape, conv, settings, pooled=True):
        blocks = [(weight, bias, conv.padding)]
        return to_nchw(winograd.conv_relu_pool_chain(x_nhwc, blocks, settings))
    n, h, w, c = x_nhwc.shape
    kernel_size = weight.shape[2:]
    out_channels = weight.shape[0]
    out_h, out_w = out_hw((h, w), kernel_size, conv.stride, conv.padding, conv.dilation)
    dtype = np.result_type(x, weight)
    weight_cols = weight_rows(weight).T  # (KH*KW*C, OC)
    width = weight_cols.shape[0]
    bias = np.zeros(out_channels, dtype=dtype) if bias is None else bias.astype(dtype, copy=False)
    pooled = np.empty((n, out_h // 2, out_w // 2, out_channels), dtype=dtype)
    chunks = im2col_chunks(n, x_nhwc.shape, (out_h, out_w), kernel_size, x.itemsize, settings)

    def forward_chunk(images: slice) -> None:
        x_chunk = x_nhwc[images]
        count = x_chunk.shape[0]
        cols = scratch(_COLS, (count, out_h, out_w, width), x.dtype)
        im2col_nhwc(x_chunk, kernel_size, conv.stride, conv.padding, conv.dilation, settings, cols)
        conv_out = scratch(_CONV_OUT, (count, out_h, out_w, out_channels), dtype)
        np.matmul(cols.reshape(-1, width), weight_cols, out=conv_out.reshape(-1, out_channels))
        compiled.max_pool_2x2_bias_relu(conv_out, bias, pooled[images])

    with blas_limit(settings.blas_threads):
        map_chunks(forward_chunk, chunks, settings.workers)
    return to_nchw(pooled)


def pools_in_tiles(pool: PoolGeometry) -> bool:
    """Whether ``pool`` is the 2x2, stride-2, unpadded max-pool that the fused kernels compute."""
    return pool.kernel_size == (2, 2) and pool.stride == (2, 2) and pool.padding == ((0, 0), (0, 0))
