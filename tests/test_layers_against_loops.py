"""Conv2d, MaxPool2d and AvgPool2d on each backend against naive loop versions (float64).

Every test runs on both backends (the ``backend`` fixture, or a ``backend_name`` parameter for
the hypothesis tests), so a bug in the reference im2col or col2im fails ``...[reference]`` here
even though the fast backend does not use them.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import reference as ref
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scratchcnn import layers as L
from scratchcnn.backend import available_backends, use_backend

TOL = {"rtol": 1e-10, "atol": 1e-10}


def conv_cases() -> list[tuple]:
    """A grid over kernel, stride, padding and dilation; cases whose output is empty are dropped.

    The input is 7x9 (H != W): a transposed axis anywhere would change the result.
    """
    kernels = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (3, 2), (1, 4)]
    strides = [1, 2, 3]
    paddings = [0, 1, 2, "same", "valid"]
    dilations = [1, 2, 3]
    cases = []
    for kernel, stride, padding, dilation in itertools.product(
        kernels, strides, paddings, dilations
    ):
        if padding == "same" and stride != 1:
            continue
        effective = [dilation * (k - 1) + 1 for k in kernel]
        pad = 0 if isinstance(padding, str) else padding
        if effective[0] > 7 + 2 * pad or effective[1] > 9 + 2 * pad:
            continue
        cases.append((kernel, stride, padding, dilation))
    return cases


def case_id(case: tuple) -> str:
    kernel, stride, padding, dilation = case
    return f"k{kernel[0]}x{kernel[1]}-s{stride}-p{padding}-d{dilation}"


def conv_against_reference(
    rng: np.random.Generator,
    batch: int,
    in_channels: int,
    out_channels: int,
    size: tuple[int, int],
    kernel,
    stride,
    padding,
    dilation,
    bias: bool = True,
) -> None:
    conv = L.Conv2d(
        in_channels, out_channels, kernel, stride, padding, dilation, bias=bias, rng=rng,
        dtype=np.float64,
    )  # fmt: skip
    if bias:
        conv.bias.data = rng.standard_normal(out_channels)
    x = rng.standard_normal((batch, in_channels, *size))
    out = conv.forward(x, training=True)
    bias_data = conv.bias.data if bias else None
    expected = ref.conv2d(x, conv.weight.data, bias_data, conv.stride, conv.pad, conv.dilation)
    np.testing.assert_allclose(out, expected, **TOL)

    grad_out = rng.standard_normal(out.shape)
    grad_x = conv.backward(grad_out)
    exp_x, exp_w, exp_b = ref.conv2d_backward(
        grad_out, x, conv.weight.data, conv.stride, conv.pad, conv.dilation
    )
    np.testing.assert_allclose(grad_x, exp_x, **TOL)
    np.testing.assert_allclose(conv.weight.grad, exp_w, **TOL)
    if bias:
        np.testing.assert_allclose(conv.bias.grad, exp_b, **TOL)


@pytest.mark.parametrize("case", conv_cases(), ids=case_id)
def test_conv2d_matches_loops(backend, case: tuple) -> None:
    kernel, stride, padding, dilation = case
    rng = np.random.default_rng(zlib.crc32(case_id(case).encode()))
    conv_against_reference(rng, 2, 2, 3, (7, 9), kernel, stride, padding, dilation)


@pytest.mark.parametrize(
    ("batch", "in_channels", "out_channels", "bias"),
    [(1, 1, 1, True), (3, 4, 2, False), (2, 5, 6, True)],
)
@pytest.mark.parametrize(("stride", "padding"), [((1, 2), (2, 0)), ((2, 1), "valid"), (1, "same")])
def test_conv2d_channels_and_asymmetric_arguments(
    backend, batch: int, in_channels: int, out_channels: int, bias: bool, stride, padding
) -> None:
    rng = np.random.default_rng(batch * 100 + in_channels * 10 + out_channels)
    conv_against_reference(
        rng, batch, in_channels, out_channels, (6, 5), (3, 2), stride, padding, (2, 1), bias
    )


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 2),
    in_channels=st.integers(1, 3),
    out_channels=st.integers(1, 3),
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    seed=st.integers(0, 2**16),
)
@pytest.mark.parametrize("backend_name", available_backends())
def test_conv2d_property(
    backend_name, batch, in_channels, out_channels, h, w, kh, kw, stride, padding, dilation, seed
) -> None:
    pad = ((padding[0], padding[0]), (padding[1], padding[1]))
    # the layer rejects inputs too small for the kernel (tested in test_layers)
    assume(ref.output_size(h, kh, stride[0], pad[0], dilation[0]) >= 1)
    assume(ref.output_size(w, kw, stride[1], pad[1], dilation[1]) >= 1)
    rng = np.random.default_rng(seed)
    with use_backend(backend_name):
        conv_against_reference(
            rng, batch, in_channels, out_channels, (h, w), (kh, kw), stride, padding, dilation
        )


# --- pooling -----------------------------------------------------------------------------------

POOL_CASES = [
    # kernel, stride, padding
    ((2, 2), None, 0),
    ((2, 2), (1, 1), 0),
    ((3, 3), (2, 2), 1),
    ((3, 3), (1, 1), 1),
    ((3, 2), (2, 1), (1, 1)),
    ((1, 3), (1, 3), (0, 1)),
    ((5, 5), (3, 2), 2),
    ((4, 4), (2, 3), 2),
]


def pool_id(case: tuple) -> str:
    kernel, stride, padding = case
    return f"k{kernel}-s{stride}-p{padding}"


@pytest.mark.parametrize("case", POOL_CASES, ids=pool_id)
def test_max_pool_matches_loops(backend, case: tuple) -> None:
    kernel, stride, padding = case
    rng = np.random.default_rng(1)
    pool = L.MaxPool2d(kernel, stride, padding)
    x = rng.standard_normal((2, 3, 8, 7))
    out = pool.forward(x, training=True)
    expected, winner = ref.max_pool2d(x, pool.kernel_size, pool.stride, pool.pad)
    np.testing.assert_allclose(out, expected, **TOL)
    grad_out = rng.standard_normal(out.shape)
    expected_grad = ref.max_pool2d_backward(grad_out, winner, x.shape, pool.pad)
    np.testing.assert_allclose(pool.backward(grad_out), expected_grad, **TOL)


@pytest.mark.parametrize("case", POOL_CASES, ids=pool_id)
def test_max_pool_ties_go_to_first_position(backend, case: tuple) -> None:
    """Quantised inputs tie often; every tie must route to the first window position only."""
    kernel, stride, padding = case
    rng = np.random.default_rng(2)
    pool = L.MaxPool2d(kernel, stride, padding)
    x = rng.integers(0, 3, size=(2, 2, 8, 7)).astype(np.float64)
    out = pool.forward(x, training=True)
    expected, winner = ref.max_pool2d(x, pool.kernel_size, pool.stride, pool.pad)
    np.testing.assert_array_equal(out, expected)
    grad_out = rng.standard_normal(out.shape)
    expected_grad = ref.max_pool2d_backward(grad_out, winner, x.shape, pool.pad)
    grad_x = pool.backward(grad_out)
    np.testing.assert_allclose(grad_x, expected_grad, **TOL)
    # Each output's gradient lands exactly once: nothing duplicated across tied entries.
    np.testing.assert_allclose(grad_x.sum(), grad_out.sum(), rtol=1e-12)


@pytest.mark.parametrize("case", POOL_CASES, ids=pool_id)
def test_avg_pool_matches_loops(backend, case: tuple) -> None:
    kernel, stride, padding = case
    rng = np.random.default_rng(3)
    pool = L.AvgPool2d(kernel, stride, padding)
    x = rng.standard_normal((2, 3, 8, 7))
    out = pool.forward(x, training=True)
    np.testing.assert_allclose(
        out, ref.avg_pool2d(x, pool.kernel_size, pool.stride, pool.pad), **TOL
    )
    grad_out = rng.standard_normal(out.shape)
    expected = ref.avg_pool2d_backward(grad_out, x.shape, pool.kernel_size, pool.stride, pool.pad)
    np.testing.assert_allclose(pool.backward(grad_out), expected, **TOL)


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
@pytest.mark.parametrize("backend_name", available_backends())
def test_pools_property(backend_name, h, w, kernel, stride, seed, data) -> None:
    padding = (
        data.draw(st.integers(0, kernel[0] // 2)),
        data.draw(st.integers(0, kernel[1] // 2)),
    )
    pad = ((padding[0], padding[0]), (padding[1], padding[1]))
    assume(ref.output_size(h, kernel[0], stride[0], pad[0], 1) >= 1)
    assume(ref.output_size(w, kernel[1], stride[1], pad[1], 1) >= 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, h, w))
    for layer in (L.MaxPool2d(kernel, stride, padding), L.AvgPool2d(kernel, stride, padding)):
        with use_backend(backend_name):
            out = layer.forward(x, training=True)
            grad_out = rng.standard_normal(out.shape)
            grad_x = layer.backward(grad_out)
        if isinstance(layer, L.MaxPool2d):
            expected, winner = ref.max_pool2d(x, layer.kernel_size, layer.stride, layer.pad)
            expected_grad = ref.max_pool2d_backward(grad_out, winner, x.shape, layer.pad)
        else:
            expected = ref.avg_pool2d(x, layer.kernel_size, layer.stride, layer.pad)
            expected_grad = ref.avg_pool2d_backward(
                grad_out, x.shape, layer.kernel_size, layer.stride, layer.pad
            )
        np.testing.assert_allclose(out, expected, **TOL)
        np.testing.assert_allclose(grad_x, expected_grad, **TOL)


# --- output-size formula -----------------------------------------------------------------------


def formula(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@pytest.mark.parametrize("size", [(7, 9), (8, 8), (5, 12)])
@pytest.mark.parametrize("kernel", [1, 2, 3, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("dilation", [1, 2])
def test_conv_output_shape_formula(size, kernel, stride, padding, dilation) -> None:
    expected = tuple(formula(s, kernel, stride, padding, dilation) for s in size)
    if min(expected) < 1:
        pytest.skip("kernel larger than the padded input")
    conv = L.Conv2d(2, 3, kernel, stride, padding, dilation, rng=np.random.default_rng(0))
    x = np.zeros((1, 2, *size), dtype=np.float32)
    out = conv.forward(x)
    assert out.shape == (1, 3, *expected)
    assert conv.output_shape(x.shape) == out.shape


@pytest.mark.parametrize("size", [(7, 9), (8, 8)])
@pytest.mark.parametrize(("kernel", "dilation"), [(1, 1), (2, 1), (3, 1), (4, 2), (5, 3)])
def test_same_padding_keeps_size(size, kernel, dilation) -> None:
    conv = L.Conv2d(2, 3, kernel, padding="same", dilation=dilation, rng=np.random.default_rng(0))
    assert conv.forward(np.zeros((1, 2, *size), dtype=np.float32)).shape == (1, 3, *size)


@pytest.mark.parametrize("layer_type", [L.MaxPool2d, L.AvgPool2d])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", [(7, 9), (8, 8)])
def test_pool_output_shape_formula(layer_type, kernel, stride, size) -> None:
    padding = kernel // 2
    pool = layer_type(kernel, stride, padding)
    x = np.zeros((1, 2, *size), dtype=np.float32)
    expected = tuple(formula(s, kernel, stride, padding, 1) for s in size)
    out = pool.forward(x)
    assert out.shape == (1, 2, *expected)
    assert pool.output_shape(x.shape) == out.shape
