"""Every formula in docs/theory/, checked numerically against the library.

Each test names the page and the equation it checks (``convolution.md (C.3)``). The formula is
computed here independently, in float64, with plain NumPy (loops over kernel offsets or output
pixels, ``np.einsum``, explicit matrices), and compared with the library's public layers, losses
and optimizers; layer tests run on both backends (``"reference"`` and ``"fast"``). Where it helps,
a test also shows that a plausible *wrong* formula is rejected, so the comparison has teeth.

Kept fast (a few seconds): tiny shapes, no training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers_winograd import MATRICES

import scratchcnn
from scratchcnn.layers import (
    GELU,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    GlobalAvgPool2d,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.models import seed_cnn
from scratchcnn.optim import SGD, CosineLR, OneCycleLR, StepLR
from scratchcnn.parameter import Parameter
from scratchcnn.tools.gradcheck import numerical_gradient, relative_error

F64 = np.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}  # float64: the formulas and the library agree to rounding


@pytest.fixture(params=["reference", "fast"])
def backend(request):
    """Run the test body under each backend in turn."""
    with scratchcnn.use_backend(request.param):
        yield request.param


def forward_backward(layer, x: np.ndarray, grad_out_seed: int | None = 1):
    """One training forward and a backward of a random upstream gradient ``R`` (all ones when
    ``grad_out_seed`` is None, so that the result is the derivative itself).

    Shape: ``x`` any -> ``(out, R, grad_x)`` with ``R`` shaped like ``out``.
    """
    out = layer.forward(x, training=True)
    if grad_out_seed is None:
        grad_out = np.ones(out.shape)
    else:
        grad_out = np.random.default_rng(grad_out_seed).standard_normal(out.shape)
    grad_x = layer.backward(grad_out)
    return out, grad_out, grad_x


# ================================================================================================
# Plain NumPy references
# ================================================================================================


def explicit_pad(layer) -> tuple[tuple[int, int], tuple[int, int]]:
    """A layer's ``padding`` argument as ``((top, bottom), (left, right))``, resolved here from the
    constructor's vocabulary: an int, a pair, ``"valid"``, or ``"same"`` split by (S.2)."""
    padding = layer.padding
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(layer.dilation, layer.kernel_size, strict=True)]
        return tuple((t // 2, t - t // 2) for t in totals)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (ph, ph), (pw, pw)


def pad2d(x: np.ndarray, pad: tuple[tuple[int, int], tuple[int, int]], value=0.0) -> np.ndarray:
    """Pad the last two axes. Shape: ``(N, C, H, W) -> (N, C, H + t + b, W + l + r)``."""
    return np.pad(x, ((0, 0), (0, 0), pad[0], pad[1]), constant_values=value)


def correlate(image: np.ndarray, kernel: np.ndarray, stride=(1, 1), dilation=(1, 1)):
    """Multi-channel cross-correlation with no padding, one kernel offset at a time.

    ``out[n, o, i, j] = sum_{c, u, v} kernel[o, c, u, v] * image[n, c, s*i + d*u, s*j + d*v]``

    Shape: ``image (N, C, H, W)``, ``kernel (O, C, KH, KW)`` -> ``(N, O, OH, OW)`` with
    ``OH = (H - d*(KH - 1) - 1) // s + 1``.
    """
    n, c, h, w = image.shape
    o, c2, kh, kw = kernel.shape
    assert c == c2
    (sh, sw), (dh, dw) = stride, dilation
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (w - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for u in range(kh):
        for v in range(kw):
            # The pixels that kernel tap (u, v) sees, for every output position at once.
            patch = image[:, :, dh * u : dh * u + sh * (oh - 1) + 1 : sh,
                          dw * v : dw * v + sw * (ow - 1) + 1 : sw]  # fmt: skip
            out += np.einsum("nchw,oc->nohw", patch, kernel[:, :, u, v])
    return out


def dilate(g: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """Insert ``stride - 1`` zeros between neighbouring pixels (the stride's adjoint).

    Shape: ``(N, O, OH, OW) -> (N, O, (OH - 1) * sh + 1, (OW - 1) * sw + 1)``.
    """
    n, o, oh, ow = g.shape
    out = np.zeros((n, o, (oh - 1) * stride[0] + 1, (ow - 1) * stride[1] + 1))
    out[:, :, :: stride[0], :: stride[1]] = g
    return out


def im2col_loops(x_padded: np.ndarray, kernel_size, stride, dilation) -> np.ndarray:
    """Every receptive field as a row, by a loop over output pixels.

    Shape: ``(N, C, Hp, Wp) -> (N * OH * OW, C * KH * KW)``, columns ordered ``(c, u, v)``.
    """
    n, c, hp, wp = x_padded.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    rows = []
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                field = x_padded[b, :, sh * i : sh * i + dh * (kh - 1) + 1 : dh,
                                 sw * j : sw * j + dw * (kw - 1) + 1 : dw]  # fmt: skip
                rows.append(field.ravel())
    return np.array(rows)


def col2im_loops(cols: np.ndarray, padded_shape, kernel_size, stride, dilation) -> np.ndarray:
    """Scatter-add every row back onto its receptive field (the adjoint of ``im2col_loops``).

    Shape: ``(N * OH * OW, C * KH * KW) -> padded_shape (N, C, Hp, Wp)``.
    """
    n, c, hp, wp = padded_shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros(padded_shape)
    row = 0
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                rows = slice(sh * i, sh * i + dh * (kh - 1) + 1, dh)
                columns = slice(sw * j, sw * j + dw * (kw - 1) + 1, dw)
                out[b, :, rows, columns] += cols[row].reshape(c, kh, kw)
                row += 1
    return out


# ================================================================================================
# convolution.md
# ================================================================================================

# (in_channels, out_channels, kernel, stride, padding, dilation, H, W). H != W and odd sizes catch
# transposed indexing; strides that leave input rows unused catch the "extra rows" case; the
# 8-channel 3x3 stride-1 case runs on Winograd in the fast backend.
CONV_CASES = [
    (3, 4, 3, 1, 0, 1, 7, 6),
    (8, 4, 3, 1, 1, 1, 6, 5),
    (3, 2, 3, 2, 1, 1, 7, 6),
    (2, 3, (3, 2), (2, 1), (1, 2), 1, 7, 6),
    (3, 2, 3, 1, 2, 2, 7, 6),
    (2, 2, 3, 3, 0, 1, 8, 7),
    (2, 3, 2, 2, 1, 2, 9, 8),
]


def make_conv(case, seed: int = 0):
    """A float64 Conv2d with a random bias, an input for it, and its resolved geometry."""
    c, o, k, s, p, d, h, w = case
    rng = np.random.default_rng(seed)
    conv = Conv2d(c, o, k, stride=s, padding=p, dilation=d, rng=rng, dtype=F64)
    conv.bias.data = rng.standard_normal(o)
    x = rng.standard_normal((2, c, h, w))
    return conv, x


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_forward_is_cross_correlation(backend, case):
    """convolution.md (C.1): out = b + sum_{c,u,v} W[o,c,u,v] x_pad[n,c,s*i+d*u,s*j+d*v]."""
    conv, x = make_conv(case)
    xp, bias = pad2d(x, explicit_pad(conv)), conv.bias.data[None, :, None, None]
    expected = correlate(xp, conv.weight.data, conv.stride, conv.dilation) + bias
    np.testing.assert_allclose(conv.forward(x), expected, **TOL)
    # A true convolution (kernel flipped) is a different function: the layer correlates.
    flipped = correlate(xp, conv.weight.data[:, :, ::-1, ::-1], conv.stride, conv.dilation) + bias
    assert not np.allclose(conv.forward(x), flipped)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_input_grad_is_full_convolution_with_flipped_kernel(backend, case):
    """convolution.md (C.3)-(C.4): dX = crop( dilate_s(dY) padded by d(K-1), correlated with the
    kernel rotated 180 degrees, in/out channels swapped, dilation d )."""
    conv, x = make_conv(case)
    _, grad_out, grad_x = forward_backward(conv, x)
    (kh, kw), (dh, dw) = conv.kernel_size, conv.dilation
    (top, bottom), (left, right) = explicit_pad(conv)
    full = ((dh * (kh - 1),) * 2, (dw * (kw - 1),) * 2)
    flipped = conv.weight.data[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, O, KH, KW)
    used = correlate(pad2d(dilate(grad_out, conv.stride), full), flipped, dilation=conv.dilation)
    # Input rows past the last window (when the stride does not divide evenly) get no gradient.
    h, w = x.shape[2:]
    grad_padded = np.zeros((*x.shape[:2], h + top + bottom, w + left + right))
    grad_padded[:, :, : used.shape[2], : used.shape[3]] = used
    expected = grad_padded[:, :, top : top + h, left : left + w]
    np.testing.assert_allclose(grad_x, expected, **TOL)
    if conv.stride != (1, 1):  # forgetting to dilate dY by the stride is caught
        wrong = correlate(pad2d(grad_out, full), flipped, dilation=conv.dilation)
        assert wrong.shape != used.shape or not np.allclose(wrong, used)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_weight_grad_is_correlation_of_input_and_grad(backend, case):
    """convolution.md (C.5): dW[o,c,u,v] = sum_{n,i,j} dY[n,o,i,j] x_pad[n,c,s*i+d*u,s*j+d*v],
    a correlation of the padded input with dY in which stride and dilation swap roles."""
    conv, x = make_conv(case)
    _, grad_out, _ = forward_backward(conv, x)
    kh, kw = conv.kernel_size
    # Batch axis as the channel axis: image (C, N, Hp, Wp), kernel (O, N, OH, OW).
    as_correlation = correlate(
        pad2d(x, explicit_pad(conv)).transpose(1, 0, 2, 3),
        grad_out.transpose(1, 0, 2, 3),
        stride=conv.dilation,
        dilation=conv.stride,
    )  # (C, O, >= KH, >= KW): extra taps only when the stride leaves input rows unused
    expected = as_correlation[:, :, :kh, :kw].transpose(1, 0, 2, 3)
    np.testing.assert_allclose(conv.weight.grad, expected, **TOL)
    # The same sum written directly over (n, i, j) for each tap.
    direct = np.zeros_like(expected)
    xp = pad2d(x, explicit_pad(conv))
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    oh, ow = grad_out.shape[2:]
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, dh * u : dh * u + sh * (oh - 1) + 1 : sh,
                       dw * v : dw * v + sw * (ow - 1) + 1 : sw]  # fmt: skip
            direct[:, :, u, v] = np.einsum("nohw,nchw->oc", grad_out, patch)
    np.testing.assert_allclose(conv.weight.grad, direct, **TOL)


@pytest.mark.parametrize("case", CONV_CASES[:3])
def test_conv_bias_grad_is_sum_over_batch_and_pixels(backend, case):
    """convolution.md (C.6): db[o] = sum_{n,i,j} dY[n,o,i,j]."""
    conv, x = make_conv(case)
    _, grad_out, _ = forward_backward(conv, x)
    np.testing.assert_allclose(conv.bias.grad, grad_out.sum(axis=(0, 2, 3)), **TOL)


@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[3], CONV_CASES[6]])
def test_im2col_matrix_view_and_col2im_adjoint(backend, case):
    """convolution.md (C.7)-(C.10) and the scatter form (C.2): Y = X_col W_row^T;
    dW_row = dY^T X_col; dX = col2im(dY W_row); col2im is im2col's adjoint,
    <im2col(x), R> = <x, col2im(R)>."""
    conv, x = make_conv(case)
    out, grad_out, grad_x = forward_backward(conv, x)
    o = conv.out_channels
    xp = pad2d(x, explicit_pad(conv))
    cols = im2col_loops(xp, conv.kernel_size, conv.stride, conv.dilation)  # (N*OH*OW, C*KH*KW)
    w_rows = conv.weight.data.reshape(o, -1)  # (O, C*KH*KW)
    grad_rows = grad_out.transpose(0, 2, 3, 1).reshape(-1, o)  # (N*OH*OW, O)
    n, _, oh, ow = out.shape
    np.testing.assert_allclose(
        (cols @ w_rows.T + conv.bias.data).reshape(n, oh, ow, o).transpose(0, 3, 1, 2), out, **TOL
    )
    np.testing.assert_allclose(grad_rows.T @ cols, conv.weight.grad.reshape(o, -1), **TOL)
    (top, _), (left, _) = explicit_pad(conv)
    h, w = x.shape[2:]
    grad_padded = col2im_loops(grad_rows @ w_rows, xp.shape, conv.kernel_size, conv.stride,
                               conv.dilation)  # fmt: skip
    np.testing.assert_allclose(grad_x, grad_padded[:, :, top : top + h, left : left + w], **TOL)

    # im2col is itself a convolution, with one-hot filters (one output channel per column);
    # so the library's input gradient of that convolution is col2im, im2col's adjoint.
    c, (kh, kw) = x.shape[1], conv.kernel_size
    unroll = Conv2d(c, c * kh * kw, (kh, kw), stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=False, rng=np.random.default_rng(32),
                    dtype=F64)  # fmt: skip
    unroll.weight.data = np.eye(c * kh * kw).reshape(c * kh * kw, c, kh, kw)
    unrolled = unroll.forward(x, training=True)  # (N, C*KH*KW, OH, OW)
    np.testing.assert_allclose(unrolled.transpose(0, 2, 3, 1).reshape(cols.shape), cols, **TOL)
    r = np.random.default_rng(7).standard_normal(unrolled.shape)
    folded = unroll.backward(r)  # col2im(R), cropped to the unpadded input
    np.testing.assert_allclose(np.vdot(unrolled, r), np.vdot(x, folded), **TOL)
    r_rows = r.transpose(0, 2, 3, 1).reshape(cols.shape)
    mine = col2im_loops(r_rows, xp.shape, conv.kernel_size, conv.stride, conv.dilation)
    np.testing.assert_allclose(folded, mine[:, :, top : top + h, left : left + w], **TOL)


# ================================================================================================
# pooling.md
# ================================================================================================

# (kernel, stride, padding, (N, C, H, W))
POOL_CASES = [
    (2, 2, 0, (2, 2, 6, 6)),
    (2, 2, 0, (1, 3, 5, 7)),  # odd sizes: the last row and column belong to no window
    (3, 2, 1, (2, 2, 7, 6)),  # overlapping windows and padding
    (3, 1, 1, (1, 2, 5, 4)),
    ((2, 3), (1, 2), 0, (2, 2, 5, 7)),
]


def pool_geometry(pool, shape):
    (kh, kw), (sh, sw) = pool.kernel_size, pool.stride
    (top, bottom), (left, right) = explicit_pad(pool)
    oh = (shape[2] + top + bottom - kh) // sh + 1
    ow = (shape[3] + left + right - kw) // sw + 1
    return kh, kw, sh, sw, top, left, oh, ow


@pytest.mark.parametrize("kernel, stride, padding, shape", POOL_CASES)
def test_max_pool_routes_gradient_to_first_argmax(backend, kernel, stride, padding, shape):
    """pooling.md (P.2): dX[window's argmax] += dY; ties go to the first position of the window
    in row-major order; padding (-inf) never wins; overlapping windows add up."""
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 1, size=shape).astype(F64)  # values in {-2, -1, 0}: ties everywhere
    pool = MaxPool2d(kernel, stride=stride, padding=padding)
    out, grad_out, grad_x = forward_backward(pool, x)
    kh, kw, sh, sw, top, left, oh, ow = pool_geometry(pool, shape)
    xp = pad2d(x, explicit_pad(pool), value=-np.inf)
    expected_out = np.zeros(out.shape)
    grad_padded = np.zeros(xp.shape)
    for b in range(shape[0]):
        for c in range(shape[1]):
            for i in range(oh):
                for j in range(ow):
                    window = xp[b, c, sh * i : sh * i + kh, sw * j : sw * j + kw]
                    u, v = np.unravel_index(np.argmax(window), window.shape)  # first maximum
                    expected_out[b, c, i, j] = window[u, v]
                    grad_padded[b, c, sh * i + u, sw * j + v] += grad_out[b, c, i, j]
    h, w = shape[2:]
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_allclose(grad_x, grad_padded[:, :, top : top + h, left : left + w], **TOL)
    # Each output's gradient lands exactly once: the total is conserved (padding gets nothing).
    np.testing.assert_allclose(grad_x.sum(), grad_out.sum(), **TOL)


@pytest.mark.parametrize("kernel, stride, padding, shape", POOL_CASES)
def test_avg_pool_spreads_gradient_evenly(backend, kernel, stride, padding, shape):
    """pooling.md (P.3)-(P.4): Y = (1 / KH KW) sum of the window (zero padding counted), so
    dX[p] = sum over the windows containing p of dY / (KH KW)."""
    x = np.random.default_rng(4).standard_normal(shape)
    pool = AvgPool2d(kernel, stride=stride, padding=padding)
    out, grad_out, grad_x = forward_backward(pool, x)
    kh, kw, sh, sw, top, left, oh, ow = pool_geometry(pool, shape)
    xp = pad2d(x, explicit_pad(pool))
    expected_out = np.zeros(out.shape)
    grad_padded = np.zeros(xp.shape)
    for i in range(oh):
        for j in range(ow):
            window = (
                slice(None),
                slice(None),
                slice(sh * i, sh * i + kh),
                slice(sw * j, sw * j + kw),
            )
            expected_out[:, :, i, j] = xp[window].sum(axis=(2, 3)) / (kh * kw)
            grad_padded[window] += grad_out[:, :, i, j, None, None] / (kh * kw)
    h, w = shape[2:]
    np.testing.assert_allclose(out, expected_out, **TOL)
    np.testing.assert_allclose(grad_x, grad_padded[:, :, top : top + h, left : left + w], **TOL)


def test_pooling_worked_example(backend):
    """pooling.md, the worked example: 2x2 pools on a 4x4 input, dY = [[4, 8], [0, -4]]."""
    grad_out = np.array([[[[4.0, 8.0], [0.0, -4.0]]]])
    avg = AvgPool2d(2)
    avg.forward(np.zeros((1, 1, 4, 4)), training=True)
    expected = np.kron(grad_out[0, 0] / 4, np.ones((2, 2)))
    np.testing.assert_array_equal(avg.backward(grad_out)[0, 0], expected)
    pool = MaxPool2d(2)
    x = np.arange(16.0).reshape(1, 1, 4, 4)  # each block's winner is its bottom-right pixel
    pool.forward(x, training=True)
    routed = pool.backward(grad_out)[0, 0]
    np.testing.assert_array_equal(routed[1::2, 1::2], grad_out[0, 0])
    assert np.count_nonzero(routed) == 3  # the 0 lands too, but adds nothing


def test_global_avg_pool_gradient(backend):
    """pooling.md (P.5): dX[n,c,h,w] = dY[n,c] / (H W)."""
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 5))
    pool = GlobalAvgPool2d()
    out, grad_out, grad_x = forward_backward(pool, x)
    np.testing.assert_allclose(out, x.mean(axis=(2, 3)), **TOL)
    np.testing.assert_allclose(grad_x, np.broadcast_to(grad_out[:, :, None, None] / 20, x.shape))


# ================================================================================================
# activations.md
# ================================================================================================


def std_normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def std_normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def test_relu_gradient_including_zero(backend):
    """activations.md (A.1)-(A.2): dX = dY * [x > 0]; at exactly 0 the gradient is 0."""
    x = np.array([[-2.0, -0.5, 0.0, 0.0, 0.5, 3.0]])
    out, grad_out, grad_x = forward_backward(ReLU(), x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    np.testing.assert_array_equal(grad_x, grad_out * (x > 0))


def test_gelu_erf_derivative(backend):
    """activations.md (A.3)-(A.4): GELU(x) = x Phi(x); GELU'(x) = Phi(x) + x phi(x)."""
    x = np.linspace(-5, 5, 41).reshape(1, -1)
    out, grad_out, grad_x = forward_backward(GELU(), x)
    np.testing.assert_allclose(out, x * std_normal_cdf(x), **TOL)
    derivative = std_normal_cdf(x) + x * std_normal_pdf(x)
    np.testing.assert_allclose(grad_x, grad_out * derivative, **TOL)
    h = 1e-6  # and the derivative is the slope of the forward
    slope = ((x + h) * std_normal_cdf(x + h) - (x - h) * std_normal_cdf(x - h)) / (2 * h)
    np.testing.assert_allclose(derivative, slope, rtol=1e-7, atol=1e-9)
    assert not np.allclose(grad_x, grad_out * std_normal_cdf(x))  # dropping x phi(x) is wrong
    # Properties stated on the page: gelu'(-x) = 1 - gelu'(x) (so it dips below 0 exactly where
    # it rises above 1, |x| > 0.75), and its maximum, at x = sqrt(2), is about 1.129.
    np.testing.assert_allclose(derivative + derivative[:, ::-1], 1.0, **TOL)
    special = np.array([[-0.76, -0.74, math.sqrt(2)]])
    _, _, at_special = forward_backward(GELU(), special, grad_out_seed=None)
    assert at_special[0, 0] < 0 < at_special[0, 1]
    assert abs(at_special[0, 2] - 1.129) < 5e-4


def test_gelu_tanh_derivative(backend):
    """activations.md (A.5)-(A.6): GELU_tanh(x) = x/2 (1 + tanh(k(x + a x^3))),
    derivative (1 + t)/2 + x/2 (1 - t^2) k (1 + 3 a x^2); within 4.8e-4 of the erf form."""
    k, a = math.sqrt(2 / math.pi), 0.044715
    x = np.linspace(-5, 5, 41).reshape(1, -1)
    out, grad_out, grad_x = forward_backward(GELU("tanh"), x)
    t = np.tanh(k * (x + a * x**3))
    np.testing.assert_allclose(out, 0.5 * x * (1 + t), **TOL)
    derivative = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * a * x * x)
    np.testing.assert_allclose(grad_x, grad_out * derivative, **TOL)
    fine = np.linspace(-8, 8, 16001)
    gap = np.abs(0.5 * fine * (1 + np.tanh(k * (fine + a * fine**3))) - fine * std_normal_cdf(fine))
    assert 4.0e-4 < gap.max() < 4.8e-4


def test_sigmoid_tanh_leaky_relu_derivatives(backend):
    """activations.md (A.7)-(A.9): sigma' = sigma (1 - sigma); tanh' = 1 - tanh^2;
    LeakyReLU' = 1 or alpha."""
    x = np.linspace(-4, 4, 17).reshape(1, -1) + 0.05  # no exact zero: LeakyReLU's kink
    s = 1 / (1 + np.exp(-x))
    _, g, grad = forward_backward(Sigmoid(), x)
    np.testing.assert_allclose(grad, g * s * (1 - s), **TOL)
    _, g, grad = forward_backward(Tanh(), x)
    np.testing.assert_allclose(grad, g * (1 - np.tanh(x) ** 2), **TOL)
    _, g, grad = forward_backward(LeakyReLU(0.1), x)
    np.testing.assert_allclose(grad, g * np.where(x > 0, 1.0, 0.1), **TOL)


# ================================================================================================
# batchnorm.md
# ================================================================================================


def make_batchnorm2d(c: int, rng: np.random.Generator, eps: float = 1e-5) -> BatchNorm2d:
    """Non-trivial scale, shift and running statistics, so a wrong term cannot hide."""
    bn = BatchNorm2d(c, eps=eps, dtype=F64)
    bn.weight.data = rng.uniform(0.5, 1.5, c)
    bn.bias.data = rng.standard_normal(c)
    bn.running_mean = rng.standard_normal(c)
    bn.running_var = rng.uniform(0.5, 2.0, c)
    return bn


def batchnorm_backward_compact(grad_out, x, gamma, eps, axes):
    """The three-term formula (B.8), per channel over ``axes`` (m values each):

    dx = gamma / sigma * (dy - mean(dy) - x_hat * mean(dy * x_hat)).
    """
    shape = [1] * x.ndim
    shape[1] = -1
    mean = x.mean(axis=axes, keepdims=True)
    sigma = np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    x_hat = (x - mean) / sigma
    return (gamma.reshape(shape) / sigma) * (
        grad_out
        - grad_out.mean(axis=axes, keepdims=True)
        - x_hat * (grad_out * x_hat).mean(axis=axes, keepdims=True)
    )


def batchnorm_backward_staged(grad_out, x, gamma, eps, axes):
    """The chain rule through the computational graph, node by node (B.4)-(B.7)."""
    shape = [1] * x.ndim
    shape[1] = -1
    m = x.size // x.shape[1]
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    d_x_hat = grad_out * gamma.reshape(shape)
    d_var = (d_x_hat * (x - mu)).sum(axis=axes, keepdims=True) * -0.5 * (var + eps) ** -1.5
    d_mu = (-d_x_hat / np.sqrt(var + eps)).sum(axis=axes, keepdims=True) + d_var * (
        -2.0 * (x - mu)
    ).mean(axis=axes, keepdims=True)
    return d_x_hat / np.sqrt(var + eps) + d_var * 2.0 * (x - mu) / m + d_mu / m


def test_batchnorm_training_backward_three_term_formula(backend):
    """batchnorm.md (B.4)-(B.9): layer backward == staged chain rule == compact three-term
    formula == finite differences of the layer's forward."""
    rng = np.random.default_rng(8)
    bn = make_batchnorm2d(3, rng)
    x = 2.0 * rng.standard_normal((4, 3, 3, 2)) + 1.0
    _, grad_out, grad_x = forward_backward(bn, x)
    axes = (0, 2, 3)
    compact = batchnorm_backward_compact(grad_out, x, bn.weight.data, bn.eps, axes)
    staged = batchnorm_backward_staged(grad_out, x, bn.weight.data, bn.eps, axes)
    np.testing.assert_allclose(staged, compact, **TOL)
    np.testing.assert_allclose(grad_x, compact, **TOL)
    numeric = numerical_gradient(lambda: float(np.sum(bn.forward(x, True) * grad_out)), x)
    assert relative_error(grad_x, numeric) < 1e-7
    # Treating the batch statistics as constants (the evaluation-mode formula) is wrong here.
    assert not np.allclose(grad_x, grad_out * (bn.weight.data / np.sqrt(x.var(axis=axes) + bn.eps))
                           [None, :, None, None])  # fmt: skip


def test_batchnorm_worked_example(backend):
    """batchnorm.md, the worked example: x = (1, 2, 3, 6), dy = (1, 0, 0, 0), gamma = 1, eps -> 0
    gives dx = (0.248, -0.210, -0.134, 0.095)."""
    bn = BatchNorm1d(1, eps=1e-12, dtype=F64)
    bn.forward(np.array([[1.0], [2.0], [3.0], [6.0]]), training=True)
    grad_x = bn.backward(np.array([[1.0], [0.0], [0.0], [0.0]]))
    np.testing.assert_allclose(grad_x[:, 0], [0.248, -0.210, -0.134, 0.095], atol=6e-4)


def test_batchnorm_parameter_gradients(backend):
    """batchnorm.md (B.3): dgamma = sum dy * x_hat, dbeta = sum dy, over (N, H, W)."""
    rng = np.random.default_rng(9)
    bn = make_batchnorm2d(3, rng)
    x = rng.standard_normal((4, 3, 3, 2))
    _, grad_out, _ = forward_backward(bn, x)
    axes = (0, 2, 3)
    x_hat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(
        x.var(axis=axes, keepdims=True) + bn.eps
    )
    np.testing.assert_allclose(bn.weight.grad, (grad_out * x_hat).sum(axis=axes), **TOL)
    np.testing.assert_allclose(bn.bias.grad, grad_out.sum(axis=axes), **TOL)


def test_batchnorm_gradient_is_a_projection(backend):
    """batchnorm.md (B.10): per channel, dx sums to 0 and is orthogonal to x_hat (exactly for
    eps = 0; with eps the second sum is eps / (var + eps) of sum dy x_hat, hence a tiny eps)."""
    rng = np.random.default_rng(10)
    bn = make_batchnorm2d(3, rng, eps=1e-14)
    x = rng.standard_normal((5, 3, 2, 3))
    _, _, grad_x = forward_backward(bn, x)
    axes = (0, 2, 3)
    x_hat = (x - x.mean(axis=axes, keepdims=True)) / x.std(axis=axes, keepdims=True)
    np.testing.assert_allclose(grad_x.sum(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose((grad_x * x_hat).sum(axis=axes), 0, atol=1e-12)


def test_batchnorm_statistics_are_per_channel_over_n_h_w(backend):
    """batchnorm.md (B.1): one mean and variance per channel, over N, H and W (not one per
    activation (c, h, w) over N alone)."""
    rng = np.random.default_rng(11)
    bn = BatchNorm2d(3, dtype=F64)  # gamma = 1, beta = 0: the output is x_hat itself
    x = rng.standard_normal((4, 3, 5, 5)) * np.array([1.0, 3.0, 0.5])[None, :, None, None] + 2.0
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)) /
                               (x.var(axis=(0, 2, 3)) + bn.eps), **TOL)  # fmt: skip
    assert np.abs(y.mean(axis=0)).max() > 0.1  # per-activation means are not zeroed


def test_batchnorm_running_statistics_update(backend):
    """batchnorm.md (B.11): running = (1 - momentum) running + momentum * batch, with the
    unbiased variance (m / (m - 1)) for the running estimate."""
    rng = np.random.default_rng(12)
    bn = make_batchnorm2d(2, rng)
    mean0, var0 = bn.running_mean.copy(), bn.running_var.copy()
    x = rng.standard_normal((3, 2, 2, 2))
    bn.forward(x, training=True)
    m = 3 * 2 * 2
    np.testing.assert_allclose(bn.running_mean, 0.9 * mean0 + 0.1 * x.mean(axis=(0, 2, 3)), **TOL)
    unbiased = x.var(axis=(0, 2, 3)) * m / (m - 1)
    np.testing.assert_allclose(bn.running_var, 0.9 * var0 + 0.1 * unbiased, **TOL)


def test_batchnorm_evaluation_mode_is_affine(backend):
    """batchnorm.md (B.12): with running statistics, y = gamma (x - mu_r)/sqrt(var_r + eps) +
    beta and dx = dy * gamma / sqrt(var_r + eps)."""
    rng = np.random.default_rng(13)
    bn = make_batchnorm2d(3, rng)
    x = rng.standard_normal((2, 3, 2, 2))
    scale = (bn.weight.data / np.sqrt(bn.running_var + bn.eps))[None, :, None, None]
    with bn.recording():
        y = bn.forward(x, training=False)
        grad_out = rng.standard_normal(y.shape)
        grad_x = bn.backward(grad_out)
    expected = (x - bn.running_mean[None, :, None, None]) * scale + bn.bias.data[
        None, :, None, None
    ]
    np.testing.assert_allclose(y, expected, **TOL)
    np.testing.assert_allclose(grad_x, grad_out * scale, **TOL)


def test_batchnorm1d_three_term_formula(backend):
    """batchnorm.md (B.9) for BatchNorm1d: statistics over the batch axis only."""
    rng = np.random.default_rng(14)
    bn = BatchNorm1d(4, dtype=F64)
    bn.weight.data = rng.uniform(0.5, 1.5, 4)
    x = rng.standard_normal((6, 4))
    _, grad_out, grad_x = forward_backward(bn, x)
    compact = batchnorm_backward_compact(grad_out, x, bn.weight.data, bn.eps, (0,))
    np.testing.assert_allclose(grad_x, compact, **TOL)


# ================================================================================================
# dropout-linear.md
# ================================================================================================


def test_inverted_dropout(backend):
    """dropout-linear.md (D.1)-(D.3): y = x * m / (1 - p), m ~ Bernoulli(1 - p); dx = dy * m /
    (1 - p); E[y] = x; evaluation is the identity."""
    p = 0.3
    x = np.random.default_rng(15).uniform(0.5, 1.5, size=(200, 500))
    layer = Dropout(p, rng=np.random.default_rng(16))
    y, grad_out, grad_x = forward_backward(layer, x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), **TOL)
    np.testing.assert_allclose(grad_x, grad_out * kept / (1 - p), **TOL)
    # The kept fraction is Binomial(100000, 0.7)/100000: standard deviation 0.00145.
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / x.size)
    assert abs((y / x).mean() - 1.0) < 5 * math.sqrt(p / (1 - p) / x.size)  # E[y] = x
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_linear_gradients(backend):
    """dropout-linear.md (D.4)-(D.6): y = x W^T + b; dx = dy W; dW = dy^T x; db = sum_n dy."""
    rng = np.random.default_rng(17)
    layer = Linear(7, 5, rng=rng, dtype=F64)
    layer.bias.data = rng.standard_normal(5)
    x = rng.standard_normal((4, 7))
    y, grad_out, grad_x = forward_backward(layer, x)
    w = layer.weight.data
    np.testing.assert_allclose(y, np.einsum("ni,oi->no", x, w) + layer.bias.data, **TOL)
    np.testing.assert_allclose(grad_x, np.einsum("no,oi->ni", grad_out, w), **TOL)
    np.testing.assert_allclose(layer.weight.grad, np.einsum("no,ni->oi", grad_out, x), **TOL)
    np.testing.assert_allclose(layer.bias.grad, grad_out.sum(axis=0), **TOL)


# ================================================================================================
# loss.md
# ================================================================================================


def my_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def smoothed_targets(target: np.ndarray, k: int, eps: float) -> np.ndarray:
    """(L.6): q = (1 - eps) * target + eps / K, with integer labels as one-hot rows."""
    q = np.eye(k)[target] if target.ndim == 1 else target
    return (1 - eps) * q + eps / k


def _targets(kind: str, rng: np.random.Generator) -> np.ndarray:
    labels = rng.integers(0, 5, size=4)
    if kind == "labels":
        return labels
    lam = 0.7  # mixup: lam * onehot(a) + (1 - lam) * onehot(b)
    return lam * np.eye(5)[labels] + (1 - lam) * np.eye(5)[rng.permutation(labels)]


@pytest.mark.parametrize("kind", ["labels", "mixup"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_gradient_is_p_minus_q_over_n(kind, smoothing):
    """loss.md (L.3), (L.5), (L.6): L = -(1/N) sum_n sum_k q_nk log p_nk, dL/dz = (p - q) / N, for
    hard labels, soft (mixup) targets and label smoothing. (The loss has no backend switch.)"""
    rng = np.random.default_rng(18)
    logits = 3.0 * rng.standard_normal((4, 5))
    target = _targets(kind, rng)
    loss = CrossEntropyLoss(label_smoothing=smoothing)
    value = loss.forward(logits, target)
    grad = loss.backward()
    p = my_softmax(logits)
    q = smoothed_targets(target, 5, smoothing)
    np.testing.assert_allclose(value, -(q * np.log(p)).sum() / 4, **TOL)
    np.testing.assert_allclose(grad, (p - q) / 4, **TOL)
    numeric = numerical_gradient(lambda: loss.forward(logits, target), logits)
    assert relative_error(grad, numeric) < 1e-7
    if smoothing:  # ignoring the smoothing in the gradient is caught
        assert not np.allclose(grad, (p - smoothed_targets(target, 5, 0.0)) / 4)


def test_cross_entropy_worked_example():
    """loss.md, the worked example: K = 3, logits (2, 1, 0), label 0, with and without
    smoothing 0.1."""
    logits, label = np.array([[2.0, 1.0, 0.0]]), np.array([0])
    plain, smoothed = CrossEntropyLoss(), CrossEntropyLoss(label_smoothing=0.1)
    plain.forward(logits, label)
    np.testing.assert_allclose(plain.backward()[0], [-0.335, 0.245, 0.090], atol=6e-4)
    smoothed.forward(logits, label)
    np.testing.assert_allclose(smoothed.backward()[0], [-0.268, 0.211, 0.057], atol=6e-4)


def test_cross_entropy_is_linear_in_the_target():
    """loss.md (L.8): CE(z, lam e_a + (1 - lam) e_b) = lam CE(z, a) + (1 - lam) CE(z, b),
    so mixup's loss is the mixed loss of the two labels."""
    rng = np.random.default_rng(19)
    logits = rng.standard_normal((6, 4))
    a, b = rng.integers(0, 4, 6), rng.integers(0, 4, 6)
    lam = 0.35
    loss = CrossEntropyLoss()
    mixed = loss.forward(logits, lam * np.eye(4)[a] + (1 - lam) * np.eye(4)[b])
    separate = lam * loss.forward(logits, a) + (1 - lam) * loss.forward(logits, b)
    np.testing.assert_allclose(mixed, separate, **TOL)


def test_label_smoothing_optimum_has_finite_logits():
    """loss.md (L.7): with smoothing eps the gradient vanishes where p = q, i.e. when the true
    class's logit leads every other by log((1 - eps + eps/K) / (eps/K)) (4.51 for eps = 0.1,
    K = 10), and not before."""
    eps, k = 0.1, 10
    gap = math.log((1 - eps + eps / k) / (eps / k))
    assert abs(gap - 4.51) < 0.005
    loss = CrossEntropyLoss(label_smoothing=eps)
    logits = np.zeros((1, k))
    logits[0, 3] = gap
    loss.forward(logits, np.array([3]))
    np.testing.assert_allclose(loss.backward(), 0, atol=1e-15)
    logits[0, 3] = gap + 1.0  # more confident than the smoothed target: pushed back
    loss.forward(logits, np.array([3]))
    assert loss.backward()[0, 3] > 0


def test_cross_entropy_is_stable_for_large_logits():
    """loss.md (L.2): log p = z - max z - log sum exp(z - max z) never overflows."""
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 999.0]])
    loss = CrossEntropyLoss()
    value = loss.forward(logits, np.array([0, 2]))
    np.testing.assert_allclose(value, (0.0 + (1.0 + math.log1p(math.exp(-1.0)))) / 2, **TOL)
    assert np.all(np.isfinite(loss.backward()))


# ================================================================================================
# shapes-receptive-fields.md
# ================================================================================================


def output_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """(S.1): floor((size + 2 pad - dilation (kernel - 1) - 1) / stride) + 1."""
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def test_output_size_formula_over_a_grid(backend):
    """shapes-receptive-fields.md (S.1): every layer's output shape, and the ValueError when the
    formula gives less than one pixel."""
    rng = np.random.default_rng(29)
    checked = 0
    for size in (4, 7):
        x = np.ones((1, 1, size, size + 1))
        for kernel in (1, 2, 3):
            for stride in (1, 2, 3):
                for pad in (0, 1, 2):
                    for dilation in (1, 2):
                        conv = Conv2d(1, 1, kernel, stride, pad, dilation, rng=rng, dtype=F64)
                        expected = tuple(
                            output_size(n, kernel, stride, pad, dilation) for n in x.shape[2:]
                        )
                        assert conv.output_shape(x.shape)[2:] == expected
                        if min(expected) < 1:
                            with pytest.raises(ValueError, match="too small"):
                                conv.forward(x)
                        else:
                            assert conv.forward(x).shape[2:] == expected
                        checked += 1
                    if pad <= kernel // 2:  # pools allow padding up to half the kernel
                        for pool in (
                            MaxPool2d(kernel, stride, pad),
                            AvgPool2d(kernel, stride, pad),
                        ):
                            expected = tuple(
                                output_size(n, kernel, stride, pad, 1) for n in x.shape[2:]
                            )
                            assert pool.forward(x).shape[2:] == expected
                            checked += 1
    assert checked > 150


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (4, 1), (3, 2), (2, 3)])
def test_same_padding_splits_the_total(backend, kernel, dilation):
    """shapes-receptive-fields.md (S.2): "same" pads d (k - 1) in total, floor half first (top,
    left), so the output keeps the input's size and equals the correlation of that padding."""
    conv = Conv2d(1, 1, kernel, padding="same", dilation=dilation,
                  rng=np.random.default_rng(30), dtype=F64)  # fmt: skip
    x = np.random.default_rng(34).standard_normal((1, 1, 9, 8))
    total = dilation * (kernel - 1)
    split = ((total // 2, total - total // 2),) * 2
    expected = correlate(pad2d(x, split), conv.weight.data, dilation=conv.dilation)
    np.testing.assert_allclose(conv.forward(x) - conv.bias.data[0], expected, **TOL)
    assert expected.shape[2:] == (9, 8)
    if total % 2:  # the extra pixel on the other side would be a different function
        swapped = ((total - total // 2, total // 2),) * 2
        wrong = correlate(pad2d(x, swapped), conv.weight.data, dilation=conv.dilation)
        assert not np.allclose(conv.forward(x) - conv.bias.data[0], wrong)


def receptive_field_recursion(layers) -> list[tuple[int, int, int]]:
    """(S.3)-(S.5): after each layer, ``(r, j, start)``: receptive field, jump (input pixels
    between neighbouring outputs) and the input coordinate where output 0's field begins.

    r_l = r_{l-1} + (k_eff - 1) j_{l-1};  j_l = j_{l-1} s_l;  start_l = start_{l-1} - p_l j_{l-1}
    """
    r, j, start = 1, 1, 0
    rows = []
    for layer in layers:
        if isinstance(layer, (Conv2d, MaxPool2d, AvgPool2d)):
            d = layer.dilation[0] if isinstance(layer, Conv2d) else 1
            k_eff = d * (layer.kernel_size[0] - 1) + 1
            r, start, j = (
                r + (k_eff - 1) * j,
                start - explicit_pad(layer)[0][0] * j,
                j * layer.stride[0],
            )
        rows.append((r, j, start))
    return rows


def summary_rf_column(model, input_shape) -> list[str]:
    """The RF column of ``model.summary`` (its last column), one entry per top-level layer."""
    lines = model.summary(input_shape, print_fn=None).splitlines()
    rules = [i for i, line in enumerate(lines) if set(line) == {"-"}]
    return [line.split()[-1] for line in lines[rules[0] + 1 : rules[1]]]


def positive_stack(rng: np.random.Generator) -> Sequential:
    """Convolutions with positive weights and average pools: no cancellation, so the gradient
    of one output pixel is nonzero at every input pixel of its receptive field."""
    model = Sequential(
        Conv2d(1, 2, 3, padding=1, rng=rng, dtype=F64),
        AvgPool2d(2),
        Conv2d(2, 2, 3, dilation=2, padding=2, rng=rng, dtype=F64),
        Conv2d(2, 1, 3, stride=2, padding=1, rng=rng, dtype=F64),
        AvgPool2d(3, stride=1),
    )
    for layer in model:
        if isinstance(layer, Conv2d):
            layer.weight.data = rng.uniform(0.1, 1.0, layer.weight.shape)
    return model


def test_receptive_field_recursion_matches_summary():
    """shapes-receptive-fields.md (S.3)-(S.4) against the RF column of ``model.summary``."""
    model = positive_stack(np.random.default_rng(20))
    expected = [str(r) for r, _, _ in receptive_field_recursion(model)]
    assert expected == ["3", "4", "12", "16", "24"]
    assert summary_rf_column(model, (1, 32, 32)) == expected
    seed = seed_cnn(rng=np.random.default_rng(0))
    rf = [r for r, _, _ in receptive_field_recursion(seed)]
    # seed_cnn: conv3, relu, pool2, conv3, relu, pool2, then flatten ends spatial structure.
    assert rf[:6] == [3, 3, 4, 8, 8, 10]
    assert summary_rf_column(seed, (3, 32, 32)) == [str(r) for r in rf[:6]] + ["-"] * 4


def test_receptive_field_is_where_one_output_pixel_has_gradient(backend):
    """shapes-receptive-fields.md (S.5): d out[i, j] / d x is nonzero exactly on rows and
    columns start + i j_L ... start + i j_L + r - 1."""
    model = positive_stack(np.random.default_rng(21))
    x = np.random.default_rng(22).uniform(0.5, 1.0, (1, 1, 32, 32))
    out = model.forward(x, training=True)
    assert out.shape == (1, 1, 6, 6)
    r, jump, start = receptive_field_recursion(model)[-1]
    assert (r, jump, start) == (24, 4, -7)
    i, j = 3, 2  # an interior output pixel: its field lies inside the image
    grad_out = np.zeros(out.shape)
    grad_out[0, 0, i, j] = 1.0
    grad_x = model.backward(grad_out)[0, 0]
    rows, cols = np.nonzero(grad_x)
    assert (rows.min(), rows.max()) == (start + i * jump, start + i * jump + r - 1)
    assert (cols.min(), cols.max()) == (start + j * jump, start + j * jump + r - 1)
    assert np.all(grad_x[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] > 0)


def test_dilated_receptive_field_has_holes(backend):
    """shapes-receptive-fields.md (S.6): the recursion gives the bounding window; a dilated
    kernel over a smaller field sees only k separate pixels of it."""
    conv = Conv2d(1, 1, 3, dilation=3, bias=False, rng=np.random.default_rng(31), dtype=F64)
    conv.weight.data = np.ones((1, 1, 3, 3))
    out = conv.forward(np.ones((1, 1, 9, 9)), training=True)
    grad_out = np.zeros(out.shape)
    grad_out[0, 0, 1, 1] = 1.0
    support = conv.backward(grad_out)[0, 0] != 0
    ((r, _, _),) = receptive_field_recursion([conv])
    assert r == 7
    rows, cols = np.nonzero(support)
    assert rows.max() - rows.min() + 1 == r and support.sum() == 9  # 9 of the 49 pixels


# ================================================================================================
# winograd.md
# ================================================================================================

B_T, G, A_T = MATRICES[2]  # F(2x2, 3x3), as winograd.md prints them


def test_winograd_1d_f23_four_multiplications():
    """winograd.md (W.1)-(W.2): two outputs of a 3-tap filter from four products m0..m3."""
    rng = np.random.default_rng(23)
    for _ in range(20):
        d, g = rng.standard_normal(4), rng.standard_normal(3)
        m0 = (d[0] - d[2]) * g[0]
        m1 = (d[1] + d[2]) * (g[0] + g[1] + g[2]) / 2
        m2 = (d[2] - d[1]) * (g[0] - g[1] + g[2]) / 2
        m3 = (d[1] - d[3]) * g[2]
        direct = [d[0:3] @ g, d[1:4] @ g]
        np.testing.assert_allclose([m0 + m1 + m2, m1 - m2 - m3], direct, **TOL)
        # ... and the matrix form of the same: y = A^T [(G g) * (B^T d)]
        np.testing.assert_allclose(A_T @ ((G @ g) * (B_T @ d)), direct, **TOL)


def test_winograd_2d_tile_equals_direct_correlation():
    """winograd.md (W.3): Y = A^T [(G g G^T) * (B^T d B)] A on 4x4 tiles and 3x3 filters."""
    rng = np.random.default_rng(24)
    d = rng.standard_normal((200, 4, 4))
    g = rng.standard_normal((200, 3, 3))
    u = G @ g @ G.T  # (200, 4, 4)
    v = B_T @ d @ B_T.T  # (200, 4, 4)
    y = A_T @ (u * v) @ A_T.T  # (200, 2, 2): 16 multiplications each
    direct = np.empty((200, 2, 2))
    for i in range(2):
        for j in range(2):
            direct[:, i, j] = np.einsum("tuv,tuv->t", d[:, i : i + 3, j : j + 3], g)  # 9 each
    np.testing.assert_allclose(y, direct, **TOL)


def test_winograd_4x4_tile_equals_direct_correlation():
    """winograd.md, larger tiles: the same formula with F(4x4, 3x3)'s matrices on 6x6 tiles gives
    the 4x4 correlation, 36 multiplications per tile instead of 144."""
    b_t, g_matrix, a_t = MATRICES[4]
    rng = np.random.default_rng(26)
    d = rng.standard_normal((200, 6, 6))
    g = rng.standard_normal((200, 3, 3))
    y = a_t @ ((g_matrix @ g @ g_matrix.T) * (b_t @ d @ b_t.T)) @ a_t.T  # (200, 4, 4)
    direct = np.empty((200, 4, 4))
    for i in range(4):
        for j in range(4):
            direct[:, i, j] = np.einsum("tuv,tuv->t", d[:, i : i + 3, j : j + 3], g)
    np.testing.assert_allclose(y, direct, **TOL)


def test_winograd_transform_adjoints():
    """winograd.md (W.6): for T(X) = P X Q, <T(X), Y> = <X, P^T Y Q^T>, for the input (B^T . B),
    filter (G . G^T) and output (A^T . A) transforms; the transforms are not their own adjoints."""
    rng = np.random.default_rng(25)
    for p, q in ((B_T, B_T.T), (G, G.T), (A_T, A_T.T)):
        x = rng.standard_normal((p.shape[1], q.shape[0]))
        y = rng.standard_normal((p.shape[0], q.shape[1]))
        np.testing.assert_allclose(np.vdot(p @ x @ q, y), np.vdot(x, p.T @ y @ q.T), **TOL)
    x, y = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    assert not np.isclose(np.vdot(B_T @ x @ B_T.T, y), np.vdot(x, B_T @ y @ B_T.T))


def winograd_tiles(x_padded: np.ndarray, tiles: tuple[int, int]) -> np.ndarray:
    """4x4 input tiles, 2 apart (neighbours overlap by 2).

    Shape: ``(N, C, >= 2TH + 2, >= 2TW + 2) -> (N, TH, TW, C, 4, 4)``.
    """
    n, c = x_padded.shape[:2]
    out = np.empty((n, *tiles, c, 4, 4))
    for ty in range(tiles[0]):
        for tx in range(tiles[1]):
            out[:, ty, tx] = x_padded[:, :, 2 * ty : 2 * ty + 4, 2 * tx : 2 * tx + 4]
    return out


def winograd_conv(x, weight, bias, pad, grad_out=None):
    """A 3x3 stride-1 convolution by Winograd F(2x2, 3x3), as 16 matrix products over channels
    (W.4)-(W.5); with ``grad_out``, also its backward pass by the transforms' adjoints (W.7).

    Shape: ``x (N, C, H, W)``, ``weight (O, C, 3, 3)`` -> ``y (N, O, OH, OW)`` and, with
    ``grad_out (N, O, OH, OW)``, ``(dx (N, C, H, W), dw (O, C, 3, 3))``.
    """
    n, c, h, w = x.shape
    o = weight.shape[0]
    (top, bottom), (left, right) = pad
    oh, ow = h + top + bottom - 2, w + left + right - 2
    th, tw = -(-oh // 2), -(-ow // 2)  # tiles down and across; the last may hang over
    padded = np.zeros((n, c, 2 * th + 2, 2 * tw + 2))
    padded[:, :, top : top + h, left : left + w] = x
    d = winograd_tiles(padded, (th, tw)).reshape(-1, c, 4, 4)  # (T, C, 4, 4), T = N*TH*TW
    v = np.einsum("ai,tcij,bj->tcab", B_T, d, B_T).reshape(-1, c, 16).transpose(2, 0, 1)
    u = np.einsum("ai,ocij,bj->ocab", G, weight, G).reshape(o, c, 16).transpose(2, 1, 0)
    m = np.stack([v[p] @ u[p] for p in range(16)])  # 16 GEMMs: (T, C) @ (C, O) -> (16, T, O)
    m_tiles = m.transpose(1, 2, 0).reshape(-1, o, 4, 4)  # (T, O, 4, 4)
    y_tiles = np.einsum("ai,toij,bj->toab", A_T, m_tiles, A_T).reshape(n, th, tw, o, 2, 2)
    y = y_tiles.transpose(0, 3, 1, 4, 2, 5).reshape(n, o, 2 * th, 2 * tw)[:, :, :oh, :ow]
    y = y + bias[None, :, None, None]
    if grad_out is None:
        return y
    # Backward: the adjoint of every forward step, in reverse order.
    g = np.zeros((n, o, 2 * th, 2 * tw))
    g[:, :, :oh, :ow] = grad_out
    g_tiles = g.reshape(n, o, th, 2, tw, 2).transpose(0, 2, 4, 1, 3, 5).reshape(-1, o, 2, 2)
    dm = np.einsum("ai,toab,bj->toij", A_T, g_tiles, A_T)  # A dY A^T: (T, O, 4, 4)
    dm = dm.reshape(-1, o, 16).transpose(2, 0, 1)  # (16, T, O)
    du = np.stack([v[p].T @ dm[p] for p in range(16)])  # dU = V^T dM: (16, C, O)
    du = du.transpose(2, 1, 0).reshape(o, c, 4, 4)
    dw = np.einsum("ia,ocij,jb->ocab", G, du, G)  # G^T dU G: (O, C, 3, 3)
    dv = np.stack([dm[p] @ u[p].T for p in range(16)])  # dV = dM U^T: (16, T, C)
    dv = dv.transpose(1, 2, 0).reshape(n, th, tw, c, 4, 4)
    dd = np.einsum("ai,ntscab,bj->ntscij", B_T, dv, B_T)  # B dV B^T
    grad_padded = np.zeros_like(padded)
    for ty in range(th):
        for tx in range(tw):  # neighbouring tiles overlap by 2: their gradients add
            grad_padded[:, :, 2 * ty : 2 * ty + 4, 2 * tx : 2 * tx + 4] += dd[:, ty, tx]
    return y, (grad_padded[:, :, top : top + h, left : left + w], dw)


@pytest.mark.parametrize("padding", [0, 1, (2, 1)])
def test_winograd_convolution_and_backward_match_the_layer(backend, padding):
    """winograd.md (W.4)-(W.7): forward by 16 GEMMs over channels; backward dU = V^T dM,
    dW = G^T dU G, dV = dM U^T, dX = B dV B^T; against Conv2d (the fast backend runs Winograd
    itself for this shape: 3x3, stride 1, 8 input channels)."""
    rng = np.random.default_rng(26)
    conv = Conv2d(8, 4, 3, padding=padding, rng=rng, dtype=F64)
    conv.bias.data = rng.standard_normal(4)
    x = rng.standard_normal((2, 8, 7, 6))  # odd output sizes: the last tiles hang over
    out, grad_out, grad_x = forward_backward(conv, x)
    y, (dx, dw) = winograd_conv(x, conv.weight.data, conv.bias.data, explicit_pad(conv), grad_out)
    np.testing.assert_allclose(y, out, **TOL)
    np.testing.assert_allclose(dx, grad_x, **TOL)
    np.testing.assert_allclose(dw, conv.weight.grad, **TOL)


# ================================================================================================
# convergence.md
# ================================================================================================


def quadratic(eigenvalues: tuple[float, ...], seed: int = 27):
    """f(w) = 1/2 (w - w*)^T H (w - w*) with a rotated diagonal H. Returns (H, w*, w0)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    hessian = q @ np.diag(eigenvalues) @ q.T
    return hessian, rng.standard_normal(len(eigenvalues)), rng.standard_normal(len(eigenvalues))


def run_sgd(hessian, w_star, w0, steps: int, lrs, **sgd_kwargs) -> np.ndarray:
    """The library's SGD on the quadratic; returns the iterates ``(steps + 1, dim)``."""
    param = Parameter(w0.copy(), "w")
    opt = SGD([param], lr=lrs[0], **sgd_kwargs)
    path = [param.data.copy()]
    for t in range(steps):
        param.grad[...] = hessian @ (param.data - w_star)
        opt.lr = lrs[t]
        opt.step()
        path.append(param.data.copy())
    return np.array(path)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_is_pytorchs_rule(nesterov):
    """convergence.md (O.1)-(O.3): g = grad + wd w; b_1 = g, b_t = mu b_{t-1} + (1 - tau) g;
    d = g + mu b (Nesterov) or b; w -= lr d; under a changing learning rate."""
    hessian, w_star, w0 = quadratic((1.0, 4.0, 10.0))
    lrs = [0.02 + 0.01 * (t % 3) for t in range(12)]
    mu, wd, tau = 0.9, 0.01, 0.0 if nesterov else 0.2
    path = run_sgd(hessian, w_star, w0, 12, lrs, momentum=mu, nesterov=nesterov,
                   weight_decay=wd, dampening=tau)  # fmt: skip
    w, b = w0.copy(), None
    for t in range(12):
        g = hessian @ (w - w_star) + wd * w
        b = g.copy() if b is None else mu * b + (1 - tau) * g
        w = w - lrs[t] * (g + mu * b if nesterov else b)
        np.testing.assert_allclose(path[t + 1], w, **TOL)


def test_pytorch_momentum_equals_sutskever_form_only_at_constant_lr():
    """convergence.md (O.4): v = mu v - lr g; w += v is PyTorch's rule with v = -lr b when lr
    is constant, and differs once lr changes (PyTorch keeps b in gradient units)."""
    hessian, w_star, w0 = quadratic((1.0, 4.0, 10.0))

    def sutskever(lrs):
        w, v = w0.copy(), np.zeros_like(w0)
        for lr in lrs:
            v = 0.9 * v - lr * (hessian @ (w - w_star))
            w = w + v
        return w

    constant = [0.03] * 10
    np.testing.assert_allclose(run_sgd(hessian, w_star, w0, 10, constant, momentum=0.9)[-1],
                               sutskever(constant), **TOL)  # fmt: skip
    changing = [0.03] * 5 + [0.003] * 5
    assert not np.allclose(run_sgd(hessian, w_star, w0, 10, changing, momentum=0.9)[-1],
                           sutskever(changing))  # fmt: skip


def test_pytorch_nesterov_iterates_are_sutskevers_lookahead_points():
    """convergence.md (O.5)-(O.6): Sutskever's NAG evaluates the gradient at phi = theta + mu v;
    PyTorch's Nesterov parameters are exactly those look-ahead points phi_t."""
    hessian, w_star, w0 = quadratic((1.0, 4.0, 10.0))
    lr, mu = 0.04, 0.9
    path = run_sgd(hessian, w_star, w0, 15, [lr] * 15, momentum=mu, nesterov=True)
    theta, v = w0.copy(), np.zeros_like(w0)
    for t in range(15):
        v = mu * v - lr * (hessian @ (theta + mu * v - w_star))
        theta = theta + v
        np.testing.assert_allclose(path[t + 1], theta + mu * v, **TOL)


def test_heavy_ball_rate_on_a_quadratic():
    """convergence.md (O.7)-(O.8): on eigenvalues in [m, L] (kappa = L/m = 100), gradient descent
    with lr = 2/(L+m) contracts by (kappa-1)/(kappa+1) = 0.980 per step; heavy ball with
    lr = 4/(sqrt L + sqrt m)^2 and mu = ((sqrt kappa - 1)/(sqrt kappa + 1))^2 by
    (sqrt kappa - 1)/(sqrt kappa + 1) = 0.818."""
    m, big_l = 1.0, 100.0
    hessian, w_star, w0 = quadratic((m, 10.0, big_l))
    kappa = big_l / m
    steps = 400

    def measured_rate(path: np.ndarray, start: int) -> float:
        errors = np.linalg.norm(path - w_star, axis=1)
        return float((errors[steps] / errors[start]) ** (1 / (steps - start)))

    gd = run_sgd(hessian, w_star, w0, steps, [2 / (big_l + m)] * steps)
    # From step 50 on, only the two extreme eigen-directions are left; both contract at rho.
    assert abs(measured_rate(gd, 50) - (kappa - 1) / (kappa + 1)) < 1e-3
    rho = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    steps = 150  # heavy ball is much faster: stay above float64's floor
    hb = run_sgd(hessian, w_star, w0, steps, [4 / (math.sqrt(big_l) + math.sqrt(m)) ** 2] * steps,
                 momentum=rho**2)  # fmt: skip
    # The rate is a double eigenvalue, so the error is ~ t rho^t: measure late and allow t^(1/t).
    assert abs(measured_rate(hb, 50) - rho) < 0.015


def test_momentum_multiplies_a_steady_step_by_one_over_one_minus_mu():
    """convergence.md (O.9): under a constant gradient g the buffer tends to g / (1 - mu), so
    each step tends to lr g / (1 - mu): ten times plain SGD's at mu = 0.9."""
    param = Parameter(np.zeros(2), "w")
    optimizer = SGD([param], lr=0.01, momentum=0.9)
    g = np.array([1.0, -2.0])
    for _ in range(300):
        before = param.data.copy()
        param.grad[...] = g
        optimizer.step()
    np.testing.assert_allclose(before - param.data, 0.01 * g / (1 - 0.9), rtol=1e-12)


@pytest.mark.parametrize(
    "momentum, nesterov, threshold",
    [(0.0, False, 2.0), (0.9, False, 2 * 1.9), (0.9, True, 2 * 1.9 / 2.8)],
)
def test_stability_threshold_on_a_quadratic(momentum, nesterov, threshold):
    """convergence.md (O.10): on f(w) = lam w^2 / 2 the iterates converge iff lr * lam is below
    2 (plain), 2 (1 + mu) (heavy ball) or 2 (1 + mu) / (1 + 2 mu) (Nesterov)."""
    lam = 4.0
    for factor, converges in ((0.97, True), (1.03, False)):
        lr = factor * threshold / lam
        with np.errstate(over="ignore", invalid="ignore"):  # diverging runs overflow to inf
            path = run_sgd(np.array([[lam]]), np.zeros(1), np.ones(1), 3000, [lr] * 3000,
                           momentum=momentum, nesterov=nesterov)  # fmt: skip
        final = abs(path[-1, 0])
        assert final < 1e-6 if converges else not final < 1e6  # NaN or inf: diverged


def test_sgd_noise_floor_is_proportional_to_the_learning_rate():
    """convergence.md (O.11): plain SGD on f(w) = lam w^2 / 2 with gradient noise of variance
    s^2 settles at E[f] = lr s^2 / (2 (2 - lr lam)), proportional to lr for small lr."""
    lam, noise = 2.0, 0.5
    rng = np.random.default_rng(33)
    for lr in (0.1, 0.02):
        param = Parameter(np.zeros(2000), "w")  # 2,000 independent copies of the 1-D problem
        optimizer = SGD([param], lr=lr)
        losses = []
        for t in range(1500):
            param.grad[...] = lam * param.data + noise * rng.standard_normal(param.size)
            optimizer.step()
            if t >= 500:  # past the transient (the variance relaxes like (1 - lr lam)^(2t))
                losses.append(0.5 * lam * np.mean(param.data**2))
        expected = lr * noise**2 / (2 * (2 - lr * lam))
        assert abs(np.mean(losses) / expected - 1) < 0.03


def test_schedule_formulas():
    """convergence.md (O.12)-(O.14): step decay; linear warm-up then cosine; one-cycle (two
    cosine phases)."""
    lr, total, warm, floor = 0.1, 50, 5, 0.001
    cosine = CosineLR(lr, total, warmup_steps=warm, min_lr=floor)
    for t in range(total + 3):
        if t < warm:
            expected = lr * (t + 1) / warm
        else:
            progress = min(1.0, (t - warm) / (total - warm))
            expected = floor + (lr - floor) * (1 + math.cos(math.pi * progress)) / 2
        assert math.isclose(cosine(t), expected, rel_tol=1e-12)
    one = OneCycleLR(lr, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
    start, end = lr / 25, lr / 25 / 1e4
    peak = 0.3 * total - 1
    for t in range(total):
        if t <= peak:
            expected = lr + (start - lr) * (1 + math.cos(math.pi * t / peak)) / 2
        else:
            pct = (t - peak) / (total - 1 - peak)
            expected = end + (lr - end) * (1 + math.cos(math.pi * pct)) / 2
        assert math.isclose(one(t), expected, rel_tol=1e-12)
    step = StepLR(lr, step_size=7, gamma=0.5)
    assert [step(t) for t in (0, 6, 7, 13, 14, 21)] == [lr * 0.5 ** (t // 7) for t in
                                                        (0, 6, 7, 13, 14, 21)]  # fmt: skip


def test_batchnorm_makes_the_layer_before_it_scale_invariant(backend):
    """convergence.md (O.15)-(O.16): conv(alpha W) followed by training-mode batch norm gives the
    same output; its weight gradient scales by 1/alpha and is orthogonal to W."""
    rng = np.random.default_rng(28)
    conv = Conv2d(3, 4, 3, padding=1, bias=False, rng=rng, dtype=F64)
    model = Sequential(conv, BatchNorm2d(4, eps=1e-12, dtype=F64), ReLU())
    x = rng.standard_normal((4, 3, 5, 5))
    grad_out = rng.standard_normal((4, 4, 5, 5))
    out1 = model.forward(x, training=True)
    model.backward(grad_out)
    grad1, w1 = conv.weight.grad.copy(), conv.weight.data.copy()
    conv.weight.data = 3.0 * w1
    out3 = model.forward(x, training=True)
    model.backward(grad_out)
    np.testing.assert_allclose(out3, out1, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(conv.weight.grad, grad1 / 3.0, rtol=1e-8, atol=1e-10)
    # <dL/dW, W> = d/d alpha L(alpha W) at alpha = 1 = 0: the gradient never grows ||W||
    # to first order, per output channel.
    per_filter = np.einsum("ocij,ocij->o", grad1, w1)
    np.testing.assert_allclose(per_filter, 0, atol=1e-9 * np.abs(grad1).sum())


def test_committed_run_followed_warmup_then_cosine():
    """convergence.md (O.13) against models/seed_cnn_cifar10-run: the learning rate recorded at
    each epoch's end is CosineLR's at that epoch's last step (a one-epoch warm-up, then cosine)."""
    run = Path(__file__).resolve().parents[1] / "models" / "seed_cnn_cifar10-run"
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps_per_epoch = math.ceil(40_000 / config["batch_size"])  # 50,000 minus 10,000 validation
    assert (config["schedule"], config["warmup_epochs"], config["val_size"]) == (
        "cosine",
        1.0,
        10_000,
    )
    schedule = CosineLR(
        config["lr"], steps_per_epoch * config["epochs"], warmup_steps=steps_per_epoch
    )
    for record in history:
        assert record["step"] == record["epoch"] * steps_per_epoch
        assert math.isclose(record["lr"], schedule(record["step"] - 1), rel_tol=1e-9, abs_tol=1e-15)
