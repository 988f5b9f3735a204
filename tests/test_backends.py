"""Every operation of the backend interface, on each backend, against the naive loops.

The ``backend`` fixture (conftest.py) runs each test once per backend, so a bug in the reference
backend fails ``...[reference]`` and one in the fast backend fails ``...[fast]``: neither is
only the other's oracle. The truths are ``tests/reference.py``'s loops, in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

from scratchcnn.backend import (
    ConvBlock,
    ConvGeometry,
    PoolGeometry,
    available_backends,
    current_backend,
    get_backend,
    set_backend,
    use_backend,
)

CONV_CASES = [
    # (N, C, H, W), (OC, KH, KW), stride, padding, dilation
    ((2, 3, 8, 8), (4, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 5, 7, 9), (3, 3, 2), (2, 1), ((0, 0), (1, 1)), (1, 1)),
    ((1, 4, 9, 8), (2, 3, 3), (1, 2), ((2, 2), (0, 0)), (2, 1)),
    ((3, 2, 6, 6), (5, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((2, 3, 8, 8), (4, 4, 4), (1, 1), ((1, 2), (1, 2)), (1, 1)),  # "same" with an even kernel
    ((2, 9, 7, 7), (3, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # Winograd on the fast backend
    ((2, 6, 10, 10), (3, 3, 3), (3, 3), ((1, 1), (1, 1)), (2, 2)),
]

POOL_CASES = [
    # (N, C, H, W), kernel, stride, padding
    ((2, 3, 8, 8), (2, 2), (2, 2), ((0, 0), (0, 0))),
    ((2, 3, 7, 9), (2, 2), (2, 2), ((0, 0), (0, 0))),  # a row and a column left over
    ((2, 3, 7, 9), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((1, 4, 6, 6), (2, 3), (1, 2), ((1, 1), (0, 0))),
    ((2, 2, 5, 5), (3, 3), (1, 1), ((0, 0), (0, 0))),  # overlapping windows
]


def close(got, want, dtype=np.float64) -> None:
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def conv_inputs(x_shape, w_shape, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal((w_shape[0], x_shape[1], *w_shape[1:])).astype(dtype)
    bias = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, weight, bias, rng


# --- convolution -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "dilation"), CONV_CASES)
def test_conv2d_against_naive_loops(backend, dtype, x_shape, w_shape, stride, padding, dilation):
    x, weight, bias, rng = conv_inputs(x_shape, w_shape, dtype=dtype)
    geometry = ConvGeometry(w_shape[1:], stride, padding, dilation)
    out, saved = backend.conv2d_forward(x, weight, bias, geometry, keep=True)
    want = ref.conv2d(x.astype(float), weight.astype(float), bias, stride, padding, dilation)
    assert out.shape == want.shape and out.dtype == dtype
    close(out, want, dtype)
    grad_out = rng.standard_normal(out.shape).astype(dtype)
    got = backend.conv2d_backward(saved, grad_out, True, True)
    want_grads = ref.conv2d_backward(
        grad_out.astype(float), x.astype(float), weight.astype(float), stride, padding, dilation
    )
    for name, g, w in zip(("input", "weight", "bias"), got, want_grads, strict=True):
        assert g.shape == w.shape and g.dtype == dtype, name
        close(g, w, dtype)


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "dilation"), CONV_CASES)
def test_conv2d_gradients_not_needed_are_none(backend, x_shape, w_shape, stride, padding, dilation):
    x, weight, bias, rng = conv_inputs(x_shape, w_shape, seed=1)
    geometry = ConvGeometry(w_shape[1:], stride, padding, dilation)
    out, saved = backend.conv2d_forward(x, weight, bias, geometry, keep=True)
    grad_out = rng.standard_normal(out.shape)
    full = backend.conv2d_backward(saved, grad_out, True, True)
    no_input = backend.conv2d_backward(saved, grad_out, False, True)
    no_weight = backend.conv2d_backward(saved, grad_out, True, False)
    assert no_input[0] is None and no_weight[1] is None and no_weight[2] is None
    close(no_input[1], full[1])
    close(no_input[2], full[2])
    close(no_weight[0], full[0])


def test_inference_keeps_nothing(backend):
    x, weight, bias, _ = conv_inputs((2, 3, 6, 6), (4, 3, 3))
    geometry = ConvGeometry((3, 3), (1, 1), ((1, 1), (1, 1)))
    assert backend.conv2d_forward(x, weight, bias, geometry, keep=False)[1] is None
    pool = PoolGeometry((2, 2), (2, 2), ((0, 0), (0, 0)))
    assert backend.max_pool2d_forward(x, pool, keep=False)[1] is None
    assert backend.avg_pool2d_forward(x, pool, keep=False)[1] is None
    assert backend.relu_forward(x, keep=False)[1] is None
    assert backend.gelu_forward(x, "none", keep=False)[1] is None
    assert backend.conv2d_relu_max_pool2d_forward(x, weight, bias, geometry, pool, False)[1] is None
    flat = x.reshape(2, -1)
    assert backend.linear_forward(flat, flat[:3], None, keep=False)[1] is None
    ones, zeros = np.ones(3), np.zeros(3)
    assert backend.batch_norm_forward(x, ones, zeros, 1e-5, keep=False)[1] is None


# --- pooling -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), POOL_CASES)
def test_max_pool2d_against_naive_loops(backend, dtype, x_shape, kernel, stride, padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(dtype)
    out, saved = backend.max_pool2d_forward(x, PoolGeometry(kernel, stride, padding), keep=True)
    want, winner = ref.max_pool2d(x, kernel, stride, padding)
    np.testing.assert_array_equal(out, want)
    grad_out = rng.standard_normal(out.shape).astype(dtype)
    close(
        backend.max_pool2d_backward(saved, grad_out),
        ref.max_pool2d_backward(grad_out, winner, x.shape, padding),
        dtype,
    )


def test_max_pool2d_ties_go_to_the_first_position(backend):
    x = np.zeros((1, 2, 4, 4))
    out, saved = backend.max_pool2d_forward(x, PoolGeometry((2, 2), (2, 2), ((0, 0),) * 2), True)
    grad = backend.max_pool2d_backward(saved, np.ones_like(out))
    assert grad.sum() == out.size and np.all(grad[:, :, ::2, ::2] == 1)


@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), POOL_CASES)
def test_avg_pool2d_against_naive_loops(backend, x_shape, kernel, stride, padding):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape)
    out, saved = backend.avg_pool2d_forward(x, PoolGeometry(kernel, stride, padding), keep=True)
    close(out, ref.avg_pool2d(x, kernel, stride, padding))
    grad_out = rng.standard_normal(out.shape)
    close(
        backend.avg_pool2d_backward(saved, grad_out),
        ref.avg_pool2d_backward(grad_out, x.shape, kernel, stride, padding),
    )


# --- element-wise ------------------------------------------------------------------------------
def test_relu_against_naive_loops_and_nan_stays_nan(backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    out, saved = backend.relu_forward(x, keep=True)
    want, slope = ref.relu(x)
    np.testing.assert_array_equal(out, want)  # NaN where x is NaN, as in NumPy and PyTorch
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 0, 1] == np.inf and out[0, 0, 0, 2] == 0
    grad_out = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(backend.relu_backward(saved, grad_out), grad_out * slope)
    inference, _ = backend.relu_forward(x, keep=False)
    np.testing.assert_array_equal(inference, want)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_against_naive_loops(backend, approximate):
    rng = np.random.default_rng(5)
    x = 3 * rng.standard_normal((3, 4, 5))
    out, saved = backend.gelu_forward(x, approximate, keep=True)
    want, slope = ref.gelu(x, approximate)
    close(out, want)
    grad_out = rng.standard_normal(x.shape)
    close(backend.gelu_backward(saved, grad_out), grad_out * slope)


# --- linear and batch norm ---------------------------------------------------------------------
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_against_naive_loops(backend, with_bias):
    rng = np.random.default_rng(6)
    x, weight = rng.standard_normal((5, 7)), rng.standard_normal((3, 7))
    bias = rng.standard_normal(3) if with_bias else None
    out, saved = backend.linear_forward(x, weight, bias, keep=True)
    close(out, ref.linear(x, weight, bias))
    grad_out = rng.standard_normal(out.shape)
    grad_x, grad_w, grad_b = backend.linear_backward(saved, grad_out, True, True)
    close(grad_x, np.einsum("no,oi->ni", grad_out, weight))
    close(grad_w, np.einsum("no,ni->oi", grad_out, x))
    close(grad_b, grad_out.sum(axis=0))
    assert backend.linear_backward(saved, grad_out, False, False) == (None, None, None)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 2)])
def test_batch_norm_training_against_the_staged_graph(backend, shape):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape) * 2 + 1
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    out, saved, mean, var = backend.batch_norm_forward(x, weight, bias, 1e-5, keep=True)
    want, want_mean, want_var = ref.batch_norm(x, weight, bias, 1e-5)
    close(out, want)
    close(mean, want_mean)
    close(var, want_var)
    grad_out = rng.standard_normal(shape)
    got = backend.batch_norm_backward(saved, grad_out, True)
    for g, w in zip(got, ref.batch_norm_backward(grad_out, x, weight, 1e-5), strict=True):
        close(g, w)


def test_batch_norm_with_fixed_statistics_is_affine(backend):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3, 2, 2))
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    running = (rng.standard_normal(3), rng.random(3) + 0.5)
    out, saved, mean, var = backend.batch_norm_forward(x, weight, bias, 1e-5, True, running)
    close(out, ref.batch_norm(x, weight, bias, 1e-5, stats=running)[0])
    assert mean is running[0] and var is running[1]
    grad_out = rng.standard_normal(x.shape)
    grad_x, grad_w, grad_b = backend.batch_norm_backward(saved, grad_out, True)
    scale = (weight / np.sqrt(running[1] + 1e-5))[None, :, None, None]
    close(grad_x, grad_out * scale)
    assert backend.batch_norm_backward(saved, grad_out, False)[1:] == (None, None)


# --- fused operations equal their composition --------------------------------------------------
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), POOL_CASES)
def test_relu_max_pool_is_pool_of_relu(backend, keep, x_shape, kernel, stride, padding):
    rng = np.random.default_rng(9)
    x = rng.standard_normal(x_shape)
    out, saved = backend.relu_max_pool2d_forward(x, PoolGeometry(kernel, stride, padding), keep)
    want, winner = ref.max_pool2d(ref.relu(x)[0], kernel, stride, padding)
    np.testing.assert_array_equal(out, want)
    if keep:
        grad_out = rng.standard_normal(out.shape)
        grad_x = backend.relu_max_pool2d_backward(saved, grad_out)
        want_grad = ref.max_pool2d_backward(grad_out, winner, x.shape, padding) * ref.relu(x)[1]
        close(grad_x, want_grad)


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "padding"),
    [
        ((3, 3, 9, 7), (4, 3, 3), ((1, 1), (1, 1))),  # RGB: the few-channel Winograd loop
        ((2, 9, 8, 8), (5, 3, 3), ((1, 1), (1, 1))),  # Winograd's tiles are the pool windows
        ((2, 4, 8, 8), (3, 5, 5), ((2, 2), (2, 2))),  # im2col
    ],
)
def test_conv_relu_max_pool_is_the_composition(backend, keep, x_shape, w_shape, padding):
    x, weight, bias, rng = conv_inputs(x_shape, w_shape, seed=10)
    conv = ConvGeometry(w_shape[1:], (1, 1), padding)
    pool = PoolGeometry((2, 2), (2, 2), ((0, 0), (0, 0)))
    out, saved = backend.conv2d_relu_max_pool2d_forward(x, weight, bias, conv, pool, keep)
    conv_out = ref.conv2d(x, weight, bias, (1, 1), padding, (1, 1))
    want, winner = ref.max_pool2d(ref.relu(conv_out)[0], (2, 2), (2, 2), pool.padding)
    close(out, want)
    if keep:
        grad_out = rng.standard_normal(out.shape)
        grads = backend.conv2d_relu_max_pool2d_backward(saved, grad_out, True, True)
        grad_conv = ref.max_pool2d_backward(grad_out, winner, conv_out.shape, pool.padding)
        grad_conv *= ref.relu(conv_out)[1]
        want_grads = ref.conv2d_backward(grad_conv, x, weight, (1, 1), padding, (1, 1))
        for g, w in zip(grads, want_grads, strict=True):
            close(g, w)


def test_conv_relu_pool_chain_is_the_blocks_in_turn(backend):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 3, 16, 16))
    pool = PoolGeometry((2, 2), (2, 2), ((0, 0), (0, 0)))
    same = ConvGeometry((3, 3), (1, 1), ((1, 1), (1, 1)))
    blocks = [
        ConvBlock(rng.standard_normal((8, 3, 3, 3)), rng.standard_normal(8), same, pool),
        ConvBlock(rng.standard_normal((9, 8, 3, 3)), None, same, pool),
        ConvBlock(rng.standard_normal((4, 9, 1, 1)), rng.standard_normal(4), ConvGeometry(
            (1, 1), (1, 1), ((0, 0), (0, 0))), pool),  # not a Winograd block: splits the run
    ]  # fmt: skip
    want = x
    for block in blocks:
        conv_out = ref.conv2d(want, block.weight, block.bias, (1, 1), block.conv.padding, (1, 1))
        want = ref.max_pool2d(ref.relu(conv_out)[0], (2, 2), (2, 2), pool.padding)[0]
    close(backend.conv_relu_pool_chain_forward(x, blocks), want)


# --- selection ---------------------------------------------------------------------------------
def test_backend_selection_is_scoped_and_validated():
    assert get_backend() == "fast" and set(available_backends()) == {"fast", "reference"}
    with use_backend("reference") as selected:
        assert get_backend() == "reference" and current_backend() is selected
        with use_backend("fast"):
            assert current_backend().name == "fast"
        assert get_backend() == "reference"
    assert get_backend() == "fast"
    with pytest.raises(ValueError, match=r"backend must be one of \('fast', 'reference'\), got"):
        set_backend("gpu")
    set_backend("reference")
    try:
        assert get_backend() == "reference"
    finally:
        set_backend("fast")


def test_backend_choice_does_not_leak_into_other_threads():
    import threading

    seen = []
    with use_backend("reference"):
        thread = threading.Thread(target=lambda: seen.append(get_backend()))
        thread.start()
        thread.join()
    assert seen == ["fast"]  # a new thread starts from the default


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 2)])
def test_batch_norm_activation_is_the_composition(backend, activation, shape):
    rng = np.random.default_rng(12)
    x = rng.standard_normal(shape) * 2 + 1
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    out, saved, mean, var = backend.batch_norm_activation_forward(
        x, weight, bias, 1e-5, activation, keep=True
    )
    normed, want_mean, want_var = ref.batch_norm(x, weight, bias, 1e-5)
    act = ref.relu if activation == "relu" else ref.gelu
    want, slope = act(normed)
    close(out, want)
    close(mean, want_mean)
    close(var, want_var)
    grad_out = rng.standard_normal(shape)
    got = backend.batch_norm_activation_backward(saved, grad_out, True)
    want_grads = ref.batch_norm_backward(grad_out * slope, x, weight, 1e-5)
    for g, w in zip(got, want_grads, strict=True):
        close(g, w)
    running = (want_mean, want_var + 0.5)
    fixed, _, _, _ = backend.batch_norm_activation_forward(
        x, weight, bias, 1e-5, activation, False, running
    )
    close(fixed, act(ref.batch_norm(x, weight, bias, 1e-5, stats=running)[0])[0])
