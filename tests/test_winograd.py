"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions against the naive loops in ``reference``.

The kernels are called directly (any channel count) and through the fast backend, which uses
them for 3x3, stride-1 layers with at least ``winograd_min_channels`` input channels (a
:class:`scratchcnn.fast.Settings` field), and in inference for conv + ReLU + 2x2 max-pool blocks
with any number.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import reference as ref
from helpers_winograd import MATRICES

import scratchcnn as sc
from scratchcnn import fast
from scratchcnn.backend import ConvGeometry, use_backend
from scratchcnn.fast import conv, winograd
from scratchcnn.fast.layout import to_nchw, to_nhwc
from scratchcnn.fast.runtime import kernels
from scratchcnn.tools.gradcheck import check_layer

if kernels(fast.current_settings()) is None:
    pytest.skip("Winograd runs on the Numba kernels only", allow_module_level=True)

SAME = ((1, 1), (1, 1))
PADDINGS = [SAME, ((0, 0), (0, 0)), ((2, 1), (0, 2)), ((0, 1), (1, 0)), ((2, 2), (2, 2))]
# (N, C, H, W): odd and even sizes, so that the last tile hangs over the output or not.
SHAPES = [(1, 1, 1, 1), (2, 3, 4, 4), (3, 2, 5, 7), (2, 9, 6, 3), (1, 4, 8, 9)]


def tolerance(dtype) -> dict:
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


def sample(shape, out_channels, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((out_channels, shape[1], 3, 3)).astype(dtype)
    bias = rng.standard_normal(out_channels).astype(dtype)
    return x, weight, bias


def output_hw(shape, padding):
    return shape[2] + sum(padding[0]) - 2, shape[3] + sum(padding[1]) - 2


def cases():
    for shape, padding in itertools.product(SHAPES, PADDINGS):
        if min(output_hw(shape, padding)) >= 1:
            yield shape, padding


@pytest.fixture(
    params=[(1, 1 << 30), (2, 1), (3, 1)], ids=["whole-batch", "2-workers", "3-workers"]
)
def chunking(request):
    """The batch in one chunk on one thread, or one image per chunk on several threads; yields
    the settings in effect."""
    workers, chunk_bytes = request.param
    with fast.settings(
        workers=workers,
        winograd_chunk_bytes=chunk_bytes,
        winograd_weight_grad_chunk_bytes=chunk_bytes,
        few_channels_chunk_images=chunk_bytes,
    ) as settings:
        yield settings


@pytest.fixture(params=[2, 4], ids=["F2x2", "F4x4"])
def side(request, monkeypatch):
    """Every Winograd forward pass (and input gradient) on one tile size, whatever its output
    size (``tile_side`` picks the size in the library; its choices are tested on their own)."""
    monkeypatch.setattr(winograd, "tile_side", lambda out_hw, settings: request.param)
    return request.param


@pytest.mark.parametrize("tile", [2, 4])
def test_weight_transform_is_g_g_g_transposed(tile):
    g_matrix = MATRICES[tile][1]
    _, weight, _ = sample((1, 3, 4, 4), 2, np.float64, 0)
    u = winograd.transform_weight(weight, fast.current_settings(), tile)
    assert u.shape == ((tile + 2) ** 2, 3, 2)
    for o, c in itertools.product(range(2), range(3)):
        want = g_matrix @ weight[o, c] @ g_matrix.T  # (tile + 2, tile + 2)
        np.testing.assert_allclose(u[:, c, o].reshape(tile + 2, tile + 2), want, rtol=1e-14)


def test_one_tile_by_the_textbook_formula(side):
    """One input tile of ``side + 2`` pixels a side: ``Y = A^T [(G g G^T) * (B^T d B)] A`` gives
    the ``side x side`` correlation, and so do the kernels."""
    b_t, g_matrix, a_t = MATRICES[side]
    d, g, _ = sample((1, 1, side + 2, side + 2), 1, np.float64, 1)
    textbook = a_t @ ((g_matrix @ g[0, 0] @ g_matrix.T) * (b_t @ d[0, 0] @ b_t.T)) @ a_t.T
    direct = ref.conv2d(d, g, None, (1, 1), ((0, 0), (0, 0)), (1, 1))[0, 0]
    np.testing.assert_allclose(textbook, direct, rtol=1e-12)
    got = winograd.conv2d_forward(to_nhwc(d), g, None, ((0, 0), (0, 0)), fast.current_settings())
    np.testing.assert_allclose(got[0, :, :, 0], direct, rtol=1e-12)


@pytest.mark.parametrize(
    ("out_hw", "want"),
    [((31, 31), 4), ((15, 15), 4), ((7, 7), 4), ((8, 8), 4), ((4, 4), 4), ((9, 40), 4),
     ((5, 5), 2), ((6, 6), 2), ((5, 6), 2), ((1, 1), 2), ((2, 3), 2), ((2, 30), 2)],
)  # fmt: skip
def test_tile_side_takes_4x4_tiles_where_they_need_fewer_products(out_hw, want):
    """36 products per 4x4 tile against 16 per 2x2 tile: on a 15x15 output 16 x 36 = 576 against
    64 x 16 = 1024; on a 5x5 one 4 x 36 = 144 against 9 x 16 = 144, a tie that 2x2 tiles take."""
    with fast.settings() as settings:
        assert winograd.tile_side(out_hw, settings) == want
        large, small = winograd._tiles(out_hw, 4), winograd._tiles(out_hw, 2)
        assert (want == 4) == (36 * large[0] * large[1] < 16 * small[0] * small[1])
    with fast.settings(winograd_tile=2) as settings:
        assert winograd.tile_side(out_hw, settings) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "padding"), list(cases()))
def test_forward_matches_naive_loops(chunking, side, dtype, shape, padding):
    x, weight, bias = sample(shape, 5, dtype, 2)
    got = winograd.conv2d_forward(to_nhwc(x), weight, bias, padding, chunking)
    want = ref.conv2d(x.astype(np.float64), weight, bias, (1, 1), padding, (1, 1))
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_allclose(to_nchw(got), want, **tolerance(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "padding"),
    [c for c in cases() if min(output_hw(*c)) >= 2],  # a whole 2x2 window
)
def test_fused_relu_pool_matches_naive_loops(chunking, dtype, shape, padding):
    x, weight, bias = sample(shape, 4, dtype, 3)
    got = winograd.conv_relu_pool_chain(to_nhwc(x), [(weight, bias, padding)], chunking)
    conv_out = ref.conv2d(x.astype(np.float64), weight, bias, (1, 1), padding, (1, 1))
    want, _ = ref.max_pool2d(np.maximum(conv_out, 0), (2, 2), (2, 2), ((0, 0), (0, 0)))
    assert got.dtype == dtype
    np.testing.assert_allclose(to_nchw(got), want, **tolerance(dtype))


# The smallest input channel count whose weight gradient runs on Winograd: 1 puts every one
# there, a huge one none (im2col).
WEIGHT_GRAD_PATHS = {
    "winograd-weight-grad": {
        "winograd_weight_grad_min_channels": 1,
        "winograd4_weight_grad_min_channels": 1,
    },
    "im2col-weight-grad": {
        "winograd_weight_grad_min_channels": 1 << 30,
        "winograd4_weight_grad_min_channels": 1 << 30,
    },
}


@pytest.mark.parametrize(
    "weight_grad_from", list(WEIGHT_GRAD_PATHS.values()), ids=list(WEIGHT_GRAD_PATHS)
)
@pytest.mark.parametrize(("need_input_grad", "need_weight_grad"), [(1, 1), (0, 1), (1, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "padding"), list(cases()))
def test_gradients_match_naive_loops(
    chunking, side, weight_grad_from, need_input_grad, need_weight_grad, dtype, shape, padding
):
    """The backward pass of a layer that runs on Winograd (its minimum channels and size set to
    1, so that every case does): its input gradient is a Winograd convolution of the output
    gradient with the flipped kernel (stride 1, on either tile size); its weight gradient runs
    on Winograd's adjoint transforms or comes from im2col rows, and both are held to the
    loops."""
    x, weight, _ = sample(shape, 3, dtype, 4)
    grad_out = np.random.default_rng(5).standard_normal((shape[0], 3, *output_hw(shape, padding)))
    grad_out = grad_out.astype(dtype)
    geometry = ConvGeometry((3, 3), (1, 1), padding)
    saved = conv.ConvSaved(to_nhwc(x), None, weight, geometry)
    with fast.settings(
        winograd_min_channels=1, winograd_min_size=1, **weight_grad_from
    ) as settings:  # fmt: skip
        grad_x, grad_w, grad_b = conv.conv2d_backward(
            saved, grad_out, bool(need_input_grad), bool(need_weight_grad), settings
        )
    want_x, want_w, want_b = ref.conv2d_backward(grad_out, x, weight, (1, 1), padding, (1, 1))
    if need_input_grad:
        assert grad_x.shape == x.shape and grad_x.dtype == dtype
        np.testing.assert_allclose(grad_x, want_x, **tolerance(dtype))
    else:
        assert grad_x is None
    if need_weight_grad:
        assert grad_w.dtype == grad_b.dtype == dtype
        np.testing.assert_allclose(grad_w, want_w, **tolerance(dtype))
        np.testing.assert_allclose(grad_b, want_b, **tolerance(dtype))
    else:
        assert grad_w is None and grad_b is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "padding"), list(cases()))
def test_weight_gradient_matches_naive_loops(chunking, side, dtype, shape, padding):
    """The Winograd weight and bias gradients, called directly (any channel count), odd sizes
    and hanging tiles included."""
    x, weight, _ = sample(shape, 4, dtype, 13)
    out_shape = (shape[0], 4, *output_hw(shape, padding))
    grad_out = np.random.default_rng(14).standard_normal(out_shape).astype(dtype)
    grad_w, grad_b = winograd.conv2d_weight_grad(
        to_nhwc(x), np.ascontiguousarray(to_nhwc(grad_out)), padding, chunking
    )
    _, want_w, want_b = ref.conv2d_backward(grad_out, x, weight, (1, 1), padding, (1, 1))
    assert grad_w.dtype == grad_b.dtype == dtype
    np.testing.assert_allclose(grad_w, want_w, **tolerance(dtype))
    np.testing.assert_allclose(grad_b, want_b, **tolerance(dtype))


def test_weight_gradient_of_an_empty_batch_is_zero():
    x = np.zeros((0, 6, 6, 8), np.float32)
    grad_w, grad_b = winograd.conv2d_weight_grad(
        x, np.zeros((0, 6, 6, 5), np.float32), SAME, fast.current_settings()
    )
    assert grad_w.shape == (5, 8, 3, 3) and not grad_w.any()
    assert grad_b.shape == (5,) and not grad_b.any()


def test_weight_gradient_reads_a_float16_kept_input():
    """Mixed precision keeps the input in float16: the gradient is computed in float32 from it
    and matches the loops on the rounded input."""
    x, _, _ = sample((3, 9, 7, 6), 4, np.float32, 15)
    x16 = x.astype(np.float16)
    grad_out = np.random.default_rng(16).standard_normal((3, 4, 7, 6)).astype(np.float32)
    grad_w, grad_b = winograd.conv2d_weight_grad(
        to_nhwc(x16), np.ascontiguousarray(to_nhwc(grad_out)), SAME, fast.current_settings()
    )
    _, want_w, want_b = ref.conv2d_backward(
        grad_out, x16.astype(np.float64), np.zeros((4, 9, 3, 3)), (1, 1), SAME, (1, 1)
    )
    assert grad_w.dtype == np.float32
    np.testing.assert_allclose(grad_w, want_w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad_b, want_b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tile", [2, 4])
def test_backward_transforms_are_the_adjoints_of_the_forward_ones(tile):
    """``<T a, b> = <a, T* b>`` for the weight transform against the weight gradient's, and for
    the output transform against the products' gradient: the backward kernels are exactly the
    transposes of the forward ones."""
    rng = np.random.default_rng(17)
    compiled = kernels(fast.current_settings())
    positions = (tile + 2) ** 2
    weight = rng.standard_normal((3, 2, 3, 3))
    grad_u = rng.standard_normal((positions, 2, 3))
    back = np.empty_like(weight)
    (compiled.winograd4_weight_grad if tile == 4 else compiled.winograd_weight_grad)(grad_u, back)
    forward = winograd.transform_weight(weight, fast.current_settings(), tile)
    np.testing.assert_allclose(np.vdot(forward, grad_u), np.vdot(weight, back), rtol=1e-12)

    tiles, channels = (2, 3), 4
    m = rng.standard_normal((positions, 2 * 6, channels))  # 2 images of 2x3 tiles
    grad = rng.standard_normal((2, 2 * tile, 3 * tile, channels))  # their outputs
    out = np.empty_like(grad)
    grad_m = np.empty_like(m)
    if tile == 4:
        compiled.winograd4_output(m, np.zeros(channels), *tiles, np.empty((24, 3, channels)), out)
        grad_bias = np.ones(channels)  # added to
        compiled.winograd4_output_grad(grad, *tiles, np.empty((24, 3, channels)), grad_m, grad_bias)
        np.testing.assert_allclose(grad_bias, 1 + grad.sum(axis=(0, 1, 2)), rtol=1e-12)
    else:
        compiled.winograd_output(m, np.zeros(channels), *tiles, np.empty((8, 3, channels)), out)
        compiled.winograd_output_grad(grad, *tiles, grad_m)
    np.testing.assert_allclose(np.vdot(out, grad), np.vdot(m, grad_m), rtol=1e-12)


def test_output_gradient_transform_reads_the_overhang_as_zeros():
    """F(4x4, 3x3)'s output-gradient transform on a 7x10 gradient (2x3 tiles, the last row and
    two last columns hanging over) equals the transform of the same gradient padded with zeros
    to 8x12, and its bias gradient sums only the 7x10 values."""
    compiled = kernels(fast.current_settings())
    grad = np.random.default_rng(18).standard_normal((2, 7, 10, 5))
    padded = np.zeros((2, 8, 12, 5))
    padded[:, :7, :10] = grad
    rows = np.empty((24, 3, 5))
    want, got = np.empty((36, 12, 5)), np.full((36, 12, 5), np.nan)
    want_bias, got_bias = np.zeros(5), np.zeros(5)
    compiled.winograd4_output_grad(padded, 2, 3, rows, want, want_bias)
    compiled.winograd4_output_grad(grad, 2, 3, rows, got, got_bias)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_bias, grad.sum(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(want_bias, got_bias, rtol=1e-12)


@pytest.mark.parametrize(
    ("size", "setting"),
    [(6, "winograd_weight_grad_min_channels"), (8, "winograd4_weight_grad_min_channels")],
    ids=["2x2-tiles", "4x4-tiles"],
)
def test_weight_gradient_runs_on_winograd_from_enough_channels(monkeypatch, size, setting):
    """The fast backward sends a Winograd layer's weight gradient to Winograd's adjoint from
    the minimum number of input channels of its tiles (a 6x6 output takes 2x2 tiles, an 8x8
    one 4x4 tiles), and to im2col below."""
    calls = []
    weight_grad = winograd.conv2d_weight_grad

    def spy(x_nhwc, grad_nhwc, padding, settings):
        calls.append(x_nhwc.shape[3])
        return weight_grad(x_nhwc, grad_nhwc, padding, settings)

    monkeypatch.setattr(winograd, "conv2d_weight_grad", spy)
    geometry = ConvGeometry((3, 3), (1, 1), SAME)
    for channels, minimum, expected in [(9, 8, [9]), (9, 10, []), (12, 12, [12])]:
        calls.clear()
        x, weight, _ = sample((2, channels, size, size), 3, np.float64, 18)
        grad_out = np.random.default_rng(19).standard_normal((2, 3, size, size))
        saved = conv.ConvSaved(to_nhwc(x), None, weight, geometry)
        with fast.settings(**{setting: minimum}) as settings:
            assert winograd.tile_side((size, size), settings) == (2 if size == 6 else 4)
            assert winograd.weight_grad_applies(
                to_nhwc(x).shape, weight.shape, geometry, settings
            ) == bool(expected)
            for need_input_grad in (True, False):
                _, grad_w, _ = conv.conv2d_backward(
                    saved, grad_out, need_input_grad, True, settings
                )
                want = ref.conv2d_backward(grad_out, x, weight, (1, 1), SAME, (1, 1))[1]
                np.testing.assert_allclose(grad_w, want, rtol=1e-10)
        assert calls == expected * 2, (channels, minimum)
    with fast.settings(winograd=False) as off:  # never without Winograd's forward
        assert not winograd.weight_grad_applies((2, size, size, 64), (3, 64, 3, 3), geometry, off)


def test_input_gradient_runs_on_winograd_as_the_flipped_convolution(monkeypatch):
    """A stride-1 layer's input gradient is the forward convolution of the output gradient with
    the flipped kernel, padded by the kernel's reach minus the padding; on Winograd when it has
    the channels for it."""
    calls = []
    forward = winograd.conv2d_forward

    def spy(x_nhwc, weight, bias, padding, settings):
        calls.append((x_nhwc.shape[3], weight.shape[:2], padding))
        return forward(x_nhwc, weight, bias, padding, settings)

    monkeypatch.setattr(winograd, "conv2d_forward", spy)
    x, weight, _ = sample((2, 9, 7, 6), 10, np.float32, 6)
    geometry = ConvGeometry((3, 3), (1, 1), ((0, 1), (2, 0)))
    saved = conv.ConvSaved(to_nhwc(x), None, weight, geometry)
    grad_out = np.ones((2, 10, 6, 6), np.float32)
    conv.conv2d_backward(saved, grad_out, True, False, fast.current_settings())
    assert calls == [(10, (9, 10), ((2, 1), (0, 2)))]  # 10 channels in, 9 out; reach 2 - pad
    assert conv.transposed_geometry(ConvGeometry((3, 3), (2, 2), SAME)) is None  # strided
    assert conv.transposed_geometry(ConvGeometry((3, 3), (1, 1), ((3, 0), (0, 0)))) is None


@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "dilation", "expected"),
    [
        (8, 3, 1, 1, True),
        (64, 3, 1, 1, True),
        (7, 3, 1, 1, False),  # too few channels: RGB inputs stay on im2col
        (8, 5, 1, 1, False),
        (8, 3, 2, 1, False),
        (8, 3, 1, 2, False),
    ],
)
def test_applies_only_to_3x3_stride_1_layers_with_enough_channels(
    channels, kernel, stride, dilation, expected
):
    shape = (2, 10, 10, channels)
    weight_shape = (4, channels, kernel, kernel)
    geometry = ConvGeometry((kernel,) * 2, (stride,) * 2, SAME, (dilation,) * 2)
    assert winograd.applies(shape, weight_shape, geometry, fast.current_settings()) is expected


def geometry_3x3() -> ConvGeometry:
    return ConvGeometry((3, 3), (1, 1), SAME)


def test_few_channels_apply_only_when_pooled():
    """RGB-like inputs run on Winograd only as conv + ReLU + pool (the one-loop kernel)."""
    shape, weight_shape = (2, 10, 10, 3), (4, 3, 3, 3)
    settings = fast.current_settings()
    assert not winograd.applies(shape, weight_shape, geometry_3x3(), settings)
    assert winograd.applies(shape, weight_shape, geometry_3x3(), settings, pooled=True)


def test_disabled_or_without_numba_it_is_never_used():
    shape, weight_shape = (2, 10, 10, 16), (4, 16, 3, 3)
    assert winograd.applies(shape, weight_shape, geometry_3x3(), fast.current_settings())
    for off in ({"winograd": False}, {"numba": False}, {"winograd_min_channels": 17}):
        with fast.settings(**off) as settings:
            assert not winograd.applies(shape, weight_shape, geometry_3x3(), settings), off


@pytest.mark.parametrize(
    "weight_grad_from", list(WEIGHT_GRAD_PATHS.values()), ids=list(WEIGHT_GRAD_PATHS)
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding", [SAME, ((0, 0), (0, 0)), ((3, 0), (1, 2))])
def test_fast_backend_convolution_on_winograd_matches_naive_loops(
    chunking, weight_grad_from, dtype, padding
):
    """Forward and all three gradients through ``fast`` for a layer Winograd takes (C >= 8),
    with its weight gradient on either path; the padding of 3 is wider than the kernel's reach,
    so that layer's input gradient goes through col2im."""
    x, weight, bias = sample((3, 9, 8, 9), 5, dtype, 6)  # outputs of at least 5x5
    geometry = ConvGeometry((3, 3), (1, 1), padding)
    assert winograd.applies(to_nhwc(x).shape, weight.shape, geometry, chunking)
    out, saved = conv.conv2d_forward(x, weight, bias, geometry, True, chunking)
    want = ref.conv2d(x.astype(np.float64), weight, bias, (1, 1), padding, (1, 1))
    np.testing.assert_allclose(out, want, **tolerance(dtype))
    grad_out = np.random.default_rng(7).standard_normal(out.shape).astype(dtype)
    with fast.settings(**weight_grad_from) as settings:
        got = conv.conv2d_backward(saved, grad_out, True, True, settings)
    wants = ref.conv2d_backward(grad_out, x, weight, (1, 1), padding, (1, 1))
    for name, g, w in zip(("input", "weight", "bias"), got, wants, strict=True):
        assert g.shape == w.shape and g.dtype == dtype, name
        np.testing.assert_allclose(g, w, **tolerance(dtype), err_msg=name)


# How much larger Winograd's largest float32 error may be than im2col's on the same layer: the
# 2x2 tiles' transforms add a few terms per output (within 4x); the 4x4 tiles' scale by up to 8
# and add more (measured about 5x on this layer, as the literature reports for F(4x4, 3x3)).
ERROR_FACTOR = {2: 4, 4: 10}


def test_float32_error_is_close_to_im2col_on_the_seed_model_layer(side):
    """Float32 results stay close to the float64 truth, measured against im2col's error on the
    same float64 convolution."""
    x, weight, bias = sample((4, 32, 16, 16), 64, np.float64, 8)
    truth = ref.conv2d(x, weight, bias, (1, 1), SAME, (1, 1))
    x32, w32, b32 = x.astype(np.float32), weight.astype(np.float32), bias.astype(np.float32)
    settings = fast.current_settings()
    wino = to_nchw(winograd.conv2d_forward(to_nhwc(x32), w32, b32, SAME, settings))
    with fast.settings(winograd=False) as off:
        im2col, _ = conv.conv2d_forward(x32, w32, b32, geometry_3x3(), False, off)
    wino_error, im2col_error = np.abs(wino - truth).max(), np.abs(im2col - truth).max()
    assert wino_error < ERROR_FACTOR[side] * im2col_error + 1e-6, (wino_error, im2col_error)
    assert wino_error / np.abs(truth).max() < 1e-5


def test_float32_weight_gradient_error_is_close_to_im2col(side):
    """The same for the weight gradient, a sum over every tile of the batch: a 64-channel layer
    at 15x15 (airbench's second), float32 against the float64 truth, beside im2col's error."""
    x, weight, _ = sample((4, 64, 15, 15), 32, np.float64, 18)
    grad_out = np.random.default_rng(19).standard_normal((4, 32, 15, 15))
    _, truth, _ = ref.conv2d_backward(grad_out, x, weight, (1, 1), SAME, (1, 1))
    x32, grad32 = x.astype(np.float32), grad_out.astype(np.float32)
    wino, _ = winograd.conv2d_weight_grad(
        to_nhwc(x32), np.ascontiguousarray(to_nhwc(grad32)), SAME, fast.current_settings()
    )
    saved = conv.ConvSaved(to_nhwc(x32), None, weight.astype(np.float32), geometry_3x3())
    _, im2col, _ = conv.im2col_backward(saved, grad32, False, True, fast.current_settings())
    wino_error, im2col_error = np.abs(wino - truth).max(), np.abs(im2col - truth).max()
    assert wino_error < ERROR_FACTOR[side] * im2col_error + 1e-6, (wino_error, im2col_error)
    assert wino_error / np.abs(truth).max() < 2e-5


def test_seed_model_gives_the_same_results_with_and_without_winograd():
    """The seed model's conv2 is on Winograd: a training step and inference agree with im2col."""
    results = []
    for enabled in (True, False):
        model = sc.seed_cnn(rng=np.random.default_rng(9))
        fused = sc.fuse(model)
        x = np.random.default_rng(10).standard_normal((6, 3, 32, 32)).astype(np.float32)
        with use_backend("fast"), fast.settings(winograd=enabled):
            logits = fused.forward(x, training=True)
            grad_in = fused.backward(np.ones_like(logits) / logits.size)
            inference = fused.forward(x)
        grads = {name: p.grad.copy() for name, p in model.named_parameters()}
        results.append((logits, grad_in, inference, grads))
    (logits, grad_in, inference, grads), (logits0, grad_in0, inference0, grads0) = results
    np.testing.assert_allclose(logits, logits0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(inference, inference0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad_in, grad_in0, rtol=1e-4, atol=1e-7)
    for name in grads0:
        np.testing.assert_allclose(grads[name], grads0[name], rtol=1e-3, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "weight_grad_from", list(WEIGHT_GRAD_PATHS.values()), ids=list(WEIGHT_GRAD_PATHS)
)
@pytest.mark.parametrize("padding", ["same", 0, 2])
def test_winograd_layer_passes_gradient_checks(padding, weight_grad_from):
    """A Conv2d that runs on Winograd (8 input channels, 3x3, stride 1, outputs of 5x5 or more),
    and so do its input gradient (9 channels of output gradient) and, on one path, its weight
    gradient: float64 gradients against central differences, as for every other layer."""
    rng = np.random.default_rng(12)
    layer = sc.Conv2d(8, 9, 3, padding=padding, rng=rng)
    input_shape = (2, 8, 7, 8)
    with fast.settings(**weight_grad_from) as settings:
        assert winograd.applies((2, 7, 8, 8), layer.weight.shape, layer.geometry, settings)
        on_winograd = winograd.weight_grad_applies(
            (2, 7, 8, 8), layer.weight.shape, layer.geometry, settings
        )
        assert on_winograd == (weight_grad_from == WEIGHT_GRAD_PATHS["winograd-weight-grad"])
        with use_backend("fast"):
            errors = check_layer(layer, input_shape, rng)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chain_of_blocks_matches_naive_loops(chunking, dtype):
    """Three conv + ReLU + pool blocks per chunk: an RGB-like few-channel block first, odd sizes."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 3, 22, 19)).astype(dtype)
    blocks = []
    for in_channels, out_channels, padding in (
        (3, 9, SAME),
        (9, 8, ((0, 1), (1, 0))),
        (8, 5, SAME),
    ):
        weight = rng.standard_normal((out_channels, in_channels, 3, 3)).astype(dtype)
        blocks.append((weight, rng.standard_normal(out_channels).astype(dtype), padding))
    blocks[1] = (blocks[1][0], None, blocks[1][2])  # a block without bias
    want = x.astype(np.float64)
    for weight, bias, padding in blocks:
        conv = ref.conv2d(want, weight, bias, (1, 1), padding, (1, 1))
        want, _ = ref.max_pool2d(np.maximum(conv, 0), (2, 2), (2, 2), ((0, 0), (0, 0)))
    got = winograd.conv_relu_pool_chain(to_nhwc(x), blocks, chunking)
    assert got.shape == to_nhwc(want).shape == (3, 2, 2, 5) and got.dtype == dtype
    np.testing.assert_allclose(to_nchw(got), want, **tolerance(dtype))


def test_fused_inference_runs_winograd_blocks_as_one_chain(monkeypatch):
    """The fused seed model's two conv blocks go through one Winograd chain call, with the
    reference backend's results; a model whose second block cannot pool on Winograd runs its
    blocks one by one."""
    calls = []
    chain = winograd.conv_relu_pool_chain
    monkeypatch.setattr(
        winograd,
        "conv_relu_pool_chain",
        lambda x, blocks, settings: calls.append(len(blocks)) or chain(x, blocks, settings),
    )
    model = sc.seed_cnn(rng=np.random.default_rng(14))
    x = np.random.default_rng(15).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with use_backend("fast"):
        got = sc.fuse(model).forward(x)
    with use_backend("reference"):
        want = model.forward(x)
    assert calls == [2]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    calls.clear()
    rng = np.random.default_rng(16)
    mixed = sc.Sequential(
        sc.Conv2d(3, 8, 3, padding=1, rng=rng), sc.ReLU(), sc.MaxPool2d(2),
        sc.Conv2d(8, 4, 5, padding=2, rng=rng), sc.ReLU(), sc.MaxPool2d(2),
    )  # fmt: skip
    with use_backend("fast"):
        got = sc.fuse(mixed).forward(x)
    with use_backend("reference"):
        want = mixed.forward(x)
    assert calls == [1]  # a 5x5 kernel is not Winograd's: the first block pools on its own
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_chain_input_errors_name_the_layer():
    model = sc.fuse(sc.seed_cnn(rng=np.random.default_rng(17)))
    with use_backend("fast"), pytest.raises(ValueError, match=r"Conv2d\(3, 32"):
        model.forward(np.zeros((2, 4, 32, 32), np.float32))  # 4 channels, not 3
    with use_backend("fast"), pytest.raises(ValueError, match="Conv2d"):
        model.forward(np.zeros((3, 32, 32), np.float32))  # no batch axis
    with use_backend("fast"), pytest.raises(ValueError, match=r"Conv2d\(32, 64.*too small"):
        model.forward(np.zeros((2, 3, 2, 2), np.float32))  # the second block gets 1 pixel
