"""Winograd F(2x2, 3x3) and F(4x4, 3x3): the fast backend's 3x3, stride-1 convolutions with fewer
multiplications.

im2col turns a 3x3 convolution into one matrix product with ``9 * C``-long rows: 36
multiply-adds per input channel, output channel and 2x2 block of output pixels. Winograd's
minimal filtering algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
2015) gets the same 2x2 block from the 4x4 input block under it with 16: 2.25x fewer. In 1-D,
two outputs of a 3-tap filter ``g`` over inputs ``d0..d3`` are

    y0 = m0 + m1 + m2,  y1 = m1 - m2 - m3,  with
    m0 = (d0 - d2) g0,  m1 = (d1 + d2) (g0 + g1 + g2) / 2,
    m2 = (d2 - d1) (g0 - g1 + g2) / 2,  m3 = (d1 - d3) g2,

four multiplications instead of six; nesting it for rows and columns gives 16 instead of 36. In
matrix form, with a 4x4 input tile ``d`` and the 3x3 filter ``g``,

    Y = A^T [(G g G^T) * (B^T d B)] A      (``*`` elementwise),

and over channels the elementwise products become 16 matrix products, one per position of the
4x4 transform: ``M[p] = V[p] @ U[p]`` with ``V[p]`` (tiles, C) the transformed inputs and
``U[p]`` (C, OC) the transformed weights. Those go to NumPy's BLAS; the transforms (additions
only: every entry of ``B`` and ``A`` is 0 or +-1) are Numba kernels in
:mod:`scratchcnn.fast.kernels.winograd`.

F(4x4, 3x3) nests a 1-D algorithm with six inputs and four outputs the same way: a 4x4 block of
outputs from the 6x6 input block under it with 36 multiplications instead of 144, 4x fewer
(:mod:`scratchcnn.fast.kernels.winograd4` has its matrices). Its transforms scale by up to 8 and
add more terms, so they cost more per value and round a few times more in float32, but they
touch fewer values per output (36 per 16 outputs against 16 per 4). Forward passes, input
gradients and weight gradients take it wherever its 36 products per tile add up to fewer than
the 2x2 tiles' 16 per tile: outputs of 7 pixels a side or more, and 4 (:func:`tile_side`;
``settings(winograd_tile=2)`` keeps 2x2 tiles). On airbench's layers it measured 1.3-1.7x
faster than F(2x2, 3x3) (benchmarks/README.md).

Each chunk of images is (1) padded, (2) transformed tile by tile, (3) multiplied, (4) transformed
back, all in per-thread buffers that stay in cache. F(2x2, 3x3) pads a copy of the chunk;
F(4x4, 3x3)'s input transform reads the chunk itself and takes the padding as zeros where it
falls, and its output-gradient transform reads a hanging tile's overhang as zeros the same way
(what that saved: benchmarks/README.md). The result equals the im2col convolution up to float
rounding (the transforms add and subtract a few extra terms); the tests hold both to the naive
loops.

Used for kernels of 3x3 with stride 1 and no dilation, when Numba is present and the settings
allow (``scratchcnn.fast.settings(winograd=False)`` turns it off), for forward passes with
``winograd_min_channels`` or more input channels (fewer make the products too thin for BLAS)
and outputs of at least ``winograd_min_size`` pixels a side (on a 3x3 output the tiles compute 16
values for 9), and in inference for any number of channels when a ReLU and a 2x2 / stride-2
max-pool follow (the output tiles are the pool windows; RGB inputs then run as one Numba loop
per tile, see :func:`conv_relu_pool_chain`). The backward pass of a stride-1 convolution
computes its input gradient as a forward convolution of the output gradient (see
``fast.conv.transposed_geometry``), so that runs here too.

The weight gradient runs here for the same convolutions when they have enough input channels
for their tiles: ``winograd4_weight_grad_min_channels`` (16) on 4x4 tiles,
``winograd_weight_grad_min_channels`` (64) on 2x2 tiles, whose products are too thin below that.
With ``V`` the transformed input tiles and ``dM = A g A^T`` the gradient of the products (``g``
each tile's output gradient), the gradient of each transformed filter is ``dU[p] = V[p]^T @
dM[p]``, 16 (or 36) products that sum over the tiles, and the weight gradient is ``G^T dU G``: the
forward's transforms run backwards (their adjoints), with the same savings in multiplications.
Every other convolution and weight gradient stays on im2col.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from scratchcnn.backend import ConvGeometry
from scratchcnn.fast.runtime import (
    batch_chunks,
    blas_limit,
    kernels,
    map_chunks,
    scratch,
    sum_over_chunks,
)
from scratchcnn.fast.settings import Settings
from scratchcnn.functional.conv import Pad2d

# Scratch slots (``runtime.scratch``), clear of those of ``fast.conv``; a chain's block outputs
# take ``_CHAIN + index``.
_PADDED, _V, _M, _ROWS, _GRAD, _GRAD_M, _GRAD_U, _INPUT_ROWS = 10, 11, 12, 13, 14, 15, 16, 17
_CHAIN = 20


def applies(
    x_shape_nhwc: tuple[int, ...],
    weight_shape: tuple[int, ...],
    geometry: ConvGeometry,
    settings: Settings,
    pooled: bool = False,
) -> bool:
    """Whether a convolution of an ``(N, H, W, C)`` input with an ``(OC, C, KH, KW)`` weight runs
    on Winograd: 3x3, stride 1, no dilation, Numba, Winograd enabled, and (unless it is
    ``pooled``: a conv + ReLU + 2x2 max-pool in inference takes any size) at least
    ``settings.winograd_min_channels`` inputs and ``settings.winograd_min_size`` output pixels
    down and across."""
    if not (
        settings.winograd
        and tuple(weight_shape[2:]) == (3, 3)
        and geometry.stride == (1, 1)
        and geometry.dilation == (1, 1)
        and kernels(settings) is not None
    ):
        return False
    if pooled:
        return True
    out_size = geometry.output_size(tuple(x_shape_nhwc[1:3]))
    return x_shape_nhwc[3] >= settings.winograd_min_channels and min(out_size) >= (
        settings.winograd_min_size
    )


def weight_grad_applies(
    x_shape_nhwc: tuple[int, ...],
    weight_shape: tuple[int, ...],
    geometry: ConvGeometry,
    settings: Settings,
) -> bool:
    """Whether the weight gradient of a convolution runs on Winograd: its forward does (see
    :func:`applies`) and it has enough input channels for its tiles (:func:`tile_side`):
    ``settings.winograd4_weight_grad_min_channels`` on 4x4 tiles,
    ``settings.winograd_weight_grad_min_channels`` on 2x2 tiles."""
    if not applies(x_shape_nhwc, weight_shape, geometry, settings):
        return False
    out_hw = geometry.output_size(tuple(x_shape_nhwc[1:3]))
    if tile_side(out_hw, settings) == 4:
        return x_shape_nhwc[3] >= settings.winograd4_weight_grad_min_channels
    return x_shape_nhwc[3] >= settings.winograd_weight_grad_min_channels


def transform_weight(weight: np.ndarray, settings: Settings, side: int = 2) -> np.ndarray:
    """``U = G g G^T`` for every filter, laid out for the products of F(side x side, 3x3)
    (C-contiguous, as BLAS needs each ``U[p]``).

    Shape: ``(OC, C, 3, 3) -> ((side + 2) ** 2, C, OC)``, in the weight's dtype.
    """
    u = np.empty(((side + 2) ** 2, weight.shape[1], weight.shape[0]), dtype=weight.dtype)
    compiled = kernels(settings)
    (compiled.winograd4_weight if side == 4 else compiled.winograd_weight)(weight, u)
    return u


def _tiles(out_hw: tuple[int, int], side: int = 2) -> tuple[int, int]:
    """Tiles down and across: each covers a ``side x side`` block of the output (the last may
    hang over)."""
    return -(-out_hw[0] // side), -(-out_hw[1] // side)


def tile_side(out_hw: tuple[int, int], settings: Settings) -> int:
    """The output tile of a Winograd convolution (or weight gradient) with an ``out_hw`` output:
    4, F(4x4, 3x3), where ``settings.winograd_tile`` allows it and its 36 products per tile add
    up to fewer than F(2x2, 3x3)'s 16 per tile (outputs of 7 pixels a side or more, and 4), else
    2. On a 5x5 or 6x6 output both need as many, and the 2x2 tiles' cheaper transforms win."""
    if settings.winograd_tile == 4:
        large, small = _tiles(out_hw, 4), _tiles(out_hw, 2)
        if 36 * large[0] * large[1] < 16 * small[0] * small[1]:
            return 4
    return 2


def _padded(
    x_nhwc: np.ndarray, padding: Pad2d, tiles: tuple[int, int], dtype, side: int = 2
) -> np.ndarray:
    """Step 1: a per-thread copy of the chunk, tall and wide enough for every tile's
    ``(side + 2) x (side + 2)`` window (the padding, then zeros)."""
    n, h, w, c = x_nhwc.shape
    top, left = padding[0][0], padding[1][0]
    shape = (n, side * tiles[0] + 2, side * tiles[1] + 2, c)
    padded = scratch(_PADDED, shape, dtype)
    padded.fill(0)
    padded[:, top : top + h, left : left + w] = x_nhwc
    return padded


def _transformed_input(
    x_nhwc: np.ndarray, padding: Pad2d, tiles: tuple[int, int], dtype, compiled, side: int = 2
) -> np.ndarray:
    """Steps 1-2 for one chunk: ``V = B^T d B`` of every tile, ``((side + 2) ** 2, T, C)`` in a
    per-thread buffer. F(4x4, 3x3)'s transform reads the chunk itself, its padding as zeros
    (converted first if it is kept in another dtype); F(2x2, 3x3)'s reads a padded copy."""
    count = x_nhwc.shape[0] * tiles[0] * tiles[1]
    v = scratch(_V, ((side + 2) ** 2, count, x_nhwc.shape[3]), dtype)
    if side == 4:
        rows = scratch(_INPUT_ROWS, (6, 4 * tiles[1] + 2, x_nhwc.shape[3]), dtype)
        top, left = padding[0][0], padding[1][0]
        if x_nhwc.dtype != dtype or not x_nhwc.flags.c_contiguous:  # a float16-kept chunk
            converted = scratch(_PADDED, x_nhwc.shape, dtype)  # (unpadded: the slot is free)
            converted[...] = x_nhwc
            x_nhwc = converted
        compiled.winograd4_input(x_nhwc, top, left, *tiles, rows, v)
    else:
        compiled.winograd_input(_padded(x_nhwc, padding, tiles, dtype, side), *tiles, v)
    return v


def _products(
    x_nhwc: np.ndarray,
    padding: Pad2d,
    tiles: tuple[int, int],
    u: np.ndarray,
    compiled,
    side: int = 2,
) -> np.ndarray:
    """Steps 1-3 for one chunk: the products ``M[p] = V[p] @ U[p]``, ``((side + 2) ** 2, T,
    OC)`` in a per-thread buffer."""
    v = _transformed_input(x_nhwc, padding, tiles, u.dtype, compiled, side)
    m = scratch(_M, (u.shape[0], v.shape[1], u.shape[2]), u.dtype)
    np.matmul(v, u, out=m)
    return m


def _rows(tiles: tuple[int, int], out_channels: int, dtype, side: int = 2) -> np.ndarray:
    """The per-thread scratch of the output transform (and of F(4x4, 3x3)'s output-gradient
    transform) for one row of tiles: ``(8, tiles_w, OC)`` for F(2x2, 3x3), ``(24, tiles_w, OC)``
    for F(4x4, 3x3)."""
    return scratch(_ROWS, (8 if side == 2 else 24, tiles[1], out_channels), dtype)


def _plan(
    x_nhwc: np.ndarray,
    weight: np.ndarray,
    out_hw: tuple[int, int],
    per_position: int,
    settings: Settings,
    side: int,
):
    """The transformed weight, the tiles down and across, and the chunks of images: as many
    images as fit ``settings.winograd_chunk_bytes`` of transformed tiles, ``per_position``
    values at each of a tile's ``(side + 2) ** 2`` positions."""
    dtype = np.result_type(x_nhwc, weight)
    u = transform_weight(weight.astype(dtype, copy=False), settings, side)
    tiles = _tiles(out_hw, side)
    per_image = tiles[0] * tiles[1] * u.shape[0] * per_position * np.dtype(dtype).itemsize
    most = settings.winograd_chunk_bytes // per_image
    return u, tiles, batch_chunks(x_nhwc.shape[0], most, settings.workers)


def _out_hw(x_nhwc: np.ndarray, padding: Pad2d) -> tuple[int, int]:
    (top, bottom), (left, right) = padding
    return x_nhwc.shape[1] + top + bottom - 2, x_nhwc.shape[2] + left + right - 2


def _bias(bias: np.ndarray | None, out_channels: int, dtype) -> np.ndarray:
    return np.zeros(out_channels, dtype) if bias is None else bias.astype(dtype, copy=False)


def conv2d_forward(
    x_nhwc: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    padding: Pad2d,
    settings: Settings,
) -> np.ndarray:
    """The 3x3, stride-1 cross-correlation of a channels-last batch, on F(4x4, 3x3) or F(2x2,
    3x3) as :func:`tile_side` picks.

    Shape: ``x_nhwc (N, H, W, C)``, ``weight (OC, C, 3, 3)``, ``bias (OC,)`` ->
    ``(N, OH, OW, OC)``, C-contiguous.
    """
    compiled = kernels(settings)
    out_hw = _out_hw(x_nhwc, padding)
    side = tile_side(out_hw, settings)
    dtype = np.result_type(x_nhwc, weight)
    out = np.empty((x_nhwc.shape[0], *out_hw, weight.shape[0]), dtype=dtype)
    bias = _bias(bias, weight.shape[0], dtype)
    per_position = x_nhwc.shape[3] + weight.shape[0]
    u, tiles, chunks = _plan(x_nhwc, weight, out_hw, per_position, settings, side)
    output_transform = compiled.winograd4_output if side == 4 else compiled.winograd_output

    def chunk_work(images: slice) -> None:
        m = _products(x_nhwc[images], padding, tiles, u, compiled, side)  # steps 1-3
        rows = _rows(tiles, u.shape[2], dtype, side)
        output_transform(m, bias, *tiles, rows, out[images])  # step 4

    with blas_limit(settings.blas_threads):
        map_chunks(chunk_work, chunks, settings.workers)
    return out


def conv2d_weight_grad(
    x_nhwc: np.ndarray,
    grad_nhwc: np.ndarray,
    padding: Pad2d,
    settings: Settings,
) -> tuple[np.ndarray, np.ndarray]:
    """The weight and bias gradients of :func:`conv2d_forward`, given its input and the
    gradient of its output, on the tiles :func:`tile_side` picks for the output.

    Each chunk of images (1) transforms its input tiles again, ``V = B^T d B``, (2) spreads each
    tile's output gradient over the products, ``dM = A g A^T``, and (3) adds ``V[p]^T @ dM[p]``
    to its worker's running ``dU``; at the end the workers' sums are added and (4) transformed
    back, ``grad_w = G^T dU G``. ``x_nhwc`` may be kept in float16 (mixed precision): step 1
    converts each chunk.

    Shape: ``x_nhwc (N, H, W, C)``, ``grad_nhwc (N, OH, OW, OC)`` -> ``grad_w (OC, C, 3, 3)``,
    ``grad_b (OC,)``.
    """
    compiled = kernels(settings)
    n, out_h, out_w, out_channels = grad_nhwc.shape
    channels = x_nhwc.shape[3]
    dtype = grad_nhwc.dtype
    side = tile_side((out_h, out_w), settings)
    positions = (side + 2) ** 2
    tiles = _tiles((out_h, out_w), side)
    per_image = tiles[0] * tiles[1] * positions * (channels + out_channels)
    most = settings.winograd_weight_grad_chunk_bytes // (per_image * np.dtype(dtype).itemsize)
    chunks = batch_chunks(n, most, settings.workers)
    # The bias gradient, in step 2: 4x4 tiles sum it in their transform, in float64; 2x2 tiles
    # as a BLAS product with ones (see fast.conv.im2col_backward).
    bias_dtype = np.float64 if side == 4 else dtype
    if side == 2:
        ones = np.ones(max((c.stop - c.start for c in chunks), default=0) * out_h * out_w, dtype)

    def zeros() -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((positions, channels, out_channels), dtype), np.zeros(
            out_channels, bias_dtype
        )

    def chunk_work(images: slice, sums: tuple[np.ndarray, np.ndarray]) -> None:
        grad_u, grad_b = sums
        v = _transformed_input(x_nhwc[images], padding, tiles, dtype, compiled, side)  # step 1
        grad = grad_nhwc[images]
        count = grad.shape[0]
        grad_m = scratch(_GRAD_M, (positions, v.shape[1], out_channels), dtype)
        if side == 4:  # step 2, with the bias gradient; a hanging tile's overhang reads zeros
            rows = _rows(tiles, out_channels, dtype, side)
            compiled.winograd4_output_grad(np.ascontiguousarray(grad), *tiles, rows, grad_m, grad_b)
        else:
            grad_b += ones[: count * out_h * out_w] @ grad.reshape(-1, out_channels)
            if out_h % side or out_w % side:  # tiles hanging over the edge see zeros there
                shape = (count, side * tiles[0], side * tiles[1], out_channels)
                padded = scratch(_GRAD, shape, dtype)
                padded.fill(0)
                padded[:, :out_h, :out_w] = grad
                grad = padded
            compiled.winograd_output_grad(grad, *tiles, grad_m)
        product = scratch(_GRAD_U, grad_u.shape, dtype)
        np.matmul(v.transpose(0, 2, 1), grad_m, out=product)  # step 3
        grad_u += product

    with blas_limit(settings.blas_threads):
        grad_u, grad_b = sum_over_chunks(chunk_work, chunks, settings.workers, zeros)
    grad_w = np.empty((out_channels, channels, 3, 3), dtype)
    if side == 4:  # step 4
        compiled.winograd4_weight_grad(grad_u, grad_w)
    else:
        compiled.winograd_weight_grad(grad_u, grad_w)
    return grad_w, grad_b.astype(dtype, copy=False)


class _PoolBlock(NamedTuple):
    """One conv + ReLU + pool block of a chain, ready to run on chunks of images."""

    u: np.ndarray  # transformed weight (16, C, OC)
    bias: np.ndarray  # (OC,)
    padding: Pad2d
    tiles: tuple[int, int]
    pooled_hw: tuple[int, int]
    few_channels: bool  # the one-loop path (fewer than MIN_CHANNELS inputs)


def conv_relu_pool_chain(x_nhwc: np.ndarray, blocks: list, settings: Settings) -> np.ndarray:
    """Conv + ReLU + 2x2 max-pool blocks one after another, each chunk of images through all
    of them while it is in cache (inference).

    A chunk's pooled output from one block stays in a per-thread buffer as the next block's
    input, so the blocks in between never write their outputs to memory, and the workers are
    handed the batch once. ``blocks`` lists ``(weight (OC, C, 3, 3), bias (OC,) or None,
    padding)``, each taking the previous block's pooled output.

    Shape: ``x_nhwc (N, H, W, C)`` -> the last block's ``(N, PH, PW, OC)``, C-contiguous.
    """
    compiled = kernels(settings)
    n = x_nhwc.shape[0]
    dtype = np.result_type(x_nhwc, *(weight for weight, _, _ in blocks))
    itemsize = np.dtype(dtype).itemsize
    plans, most = [], n
    hw, channels = x_nhwc.shape[1:3], x_nhwc.shape[3]
    for weight, bias, padding in blocks:
        out_channels = weight.shape[0]
        (top, bottom), (left, right) = padding
        out_hw = (hw[0] + top + bottom - 2, hw[1] + left + right - 2)
        tiles = _tiles(out_hw)
        few_channels = channels < settings.winograd_min_channels
        if few_channels:  # no transformed tiles stored; small chunks share out the work
            most = min(most, settings.few_channels_chunk_images)
        else:
            per_image = tiles[0] * tiles[1] * 16 * (channels + out_channels) * itemsize
            most = min(most, settings.winograd_chunk_bytes // per_image)
        hw, channels = (out_hw[0] // 2, out_hw[1] // 2), out_channels
        u = transform_weight(weight.astype(dtype, copy=False), settings)
        plans.append(
            _PoolBlock(u, _bias(bias, out_channels, dtype), padding, tiles, hw, few_channels)
        )
    out = np.empty((n, *hw, channels), dtype=dtype)

    def chunk_work(images: slice) -> None:
        block_input = x_nhwc[images]
        for index, plan in enumerate(plans):
            if index == len(plans) - 1:
                block_output = out[images]
            else:
                shape = (block_input.shape[0], *plan.pooled_hw, plan.u.shape[2])
                block_output = scratch(_CHAIN + index, shape, dtype)
            if plan.few_channels:  # steps 2-4 in one Numba loop per tile
                padded = _padded(block_input, plan.padding, plan.tiles, dtype)
                compiled.winograd_few_channels_relu_pool(padded, plan.u, plan.bias, block_output)
            else:
                m = _products(block_input, plan.padding, plan.tiles, plan.u, compiled)
                rows = _rows(plan.tiles, plan.u.shape[2], dtype)
                compiled.winograd_output_relu_pool(m, plan.bias, *plan.tiles, rows, block_output)
            block_input = block_output

    with blas_limit(settings.blas_threads):
        map_chunks(chunk_work, batch_chunks(n, max(1, most), settings.workers), settings.workers)
    return out
