"""The fast backend against the reference backend and against naive loops, with and without Numba.

Every test that takes the ``numba_path`` fixture runs twice: once with the Numba kernels and once
with ``fast.USE_NUMBA = False``, the NumPy-only path that runs wherever Numba is missing.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest

import scratchcnn as sc
from scratchcnn import functional as F
from scratchcnn.backend import functional_module, get_backend, set_backend, use_backend
from scratchcnn.functional import fast
from scratchcnn.tools.gradcheck import check_layer

HAVE_NUMBA = fast.numba_kernels() is not None


@pytest.fixture(params=["numba", "numpy"])
def numba_path(request, monkeypatch):
    """Run a test on the Numba kernels and on the NumPy-only fallback."""
    if request.param == "numba" and not HAVE_NUMBA:
        pytest.skip("Numba is not installed")
    monkeypatch.setattr(fast, "USE_NUMBA", request.param == "numba")
    return request.param


def tolerance(dtype) -> dict:
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


# --- naive loop references ---------------------------------------------------------------------
def naive_conv2d(x, weight, bias, stride, padding, dilation):
    """Direct six-loop cross-correlation. Shape: ``(N, C, H, W) -> (N, OC, OH, OW)``."""
    n, c, h, w = x.shape
    oc, _, kh, kw = weight.shape
    (top, bottom), (left, right) = padding
    xp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=np.float64)
    xp[:, :, top : top + h, left : left + w] = x
    out_h = (h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (w + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, oc, out_h, out_w))
    for b in range(n):
        for o in range(oc):
            for i in range(out_h):
                for j in range(out_w):
                    total = 0.0 if bias is None else float(bias[o])
                    for p in range(kh):
                        for q in range(kw):
                            row = i * stride[0] + p * dilation[0]
                            col = j * stride[1] + q * dilation[1]
                            total += np.dot(xp[b, :, row, col], weight[o, :, p, q])
                    out[b, o, i, j] = total
    return out


def naive_max_pool(x, kernel_size, stride, padding):
    """Loop max pooling with -inf padding. Shape: ``(N, C, H, W) -> (N, C, OH, OW)``."""
    n, c, h, w = x.shape
    (top, bottom), (left, right) = padding
    xp = np.full((n, c, h + top + bottom, w + left + right), -np.inf)
    xp[:, :, top : top + h, left : left + w] = x
    out_h = (h + top + bottom - kernel_size[0]) // stride[0] + 1
    out_w = (w + left + right - kernel_size[1]) // stride[1] + 1
    out = np.empty((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = xp[:, :, i * stride[0] : i * stride[0] + kernel_size[0]]
            window = window[:, :, :, j * stride[1] : j * stride[1] + kernel_size[1]]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out


CONV_CASES = [
    # (N, C, H, W), (OC, KH, KW), stride, padding, dilation
    ((2, 3, 8, 8), (4, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 5, 7, 9), (3, 3, 2), (2, 1), ((0, 0), (1, 1)), (1, 1)),
    ((1, 4, 9, 8), (2, 3, 3), (1, 2), ((2, 2), (0, 0)), (2, 1)),
    ((3, 2, 6, 6), (5, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((2, 3, 8, 8), (4, 4, 4), (1, 1), ((1, 2), (1, 2)), (1, 1)),  # "same" with an even kernel
    ((2, 6, 10, 10), (3, 3, 3), (3, 3), ((1, 1), (1, 1)), (2, 2)),
]


# --- convolution ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "dilation"), CONV_CASES)
def test_conv_forward_matches_reference_and_naive_loops(
    numba_path, dtype, x_shape, w_shape, stride, padding, dilation
):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal((w_shape[0], x_shape[1], *w_shape[1:])).astype(dtype)
    bias = rng.standard_normal(w_shape[0]).astype(dtype)
    out, cols = fast.conv2d_forward(x, weight, bias, stride, padding, dilation)
    ref, _ = F.conv2d_forward(x, weight, bias, stride, padding, dilation)
    assert out.shape == ref.shape and out.dtype == dtype
    np.testing.assert_allclose(out, ref, **tolerance(dtype))
    np.testing.assert_allclose(
        out, naive_conv2d(x, weight, bias, stride, padding, dilation), **tolerance(dtype)
    )
    np.testing.assert_array_equal(cols.x_nhwc, fast.to_nhwc(x))
    if cols.cols is not None:  # kept for inputs with few channels, else rebuilt in backward
        np.testing.assert_array_equal(
            cols.cols, fast.im2col_nhwc(fast.to_nhwc(x), w_shape[1:], stride, padding, dilation)
        )


# One image per chunk on 1 or 2 worker threads, im2col kept or rebuilt; the whole batch at once.
@pytest.mark.parametrize(
    ("chunk_bytes", "workers", "keep_below"), [(1, 1, 0), (1, 2, 0), (1, 2, 99), (1 << 20, 2, 8)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "dilation"), CONV_CASES)
def test_conv_backward_matches_reference(
    numba_path,
    monkeypatch,
    chunk_bytes,
    workers,
    keep_below,
    dtype,
    x_shape,
    w_shape,
    stride,
    padding,
    dilation,
):
    monkeypatch.setattr(fast, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(fast, "WORKERS", workers)
    monkeypatch.setattr(fast, "KEEP_COLS_BELOW_CHANNELS", keep_below)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal((w_shape[0], x_shape[1], *w_shape[1:])).astype(dtype)
    out, cols = fast.conv2d_forward(x, weight, None, stride, padding, dilation)
    _, ref_cols = F.conv2d_forward(x, weight, None, stride, padding, dilation)
    grad_out = rng.standard_normal(out.shape).astype(dtype)
    got = fast.conv2d_backward(grad_out, cols, x.shape, weight, stride, padding, dilation)
    want = F.conv2d_backward(grad_out, ref_cols, x.shape, weight, stride, padding, dilation)
    for name, g, r in zip(("input", "weight", "bias"), got, want, strict=True):
        assert g.shape == r.shape, name
        np.testing.assert_allclose(g, r, **tolerance(dtype), err_msg=name)
    skipped = fast.conv2d_backward(
        grad_out, cols, x.shape, weight, stride, padding, dilation, need_input_grad=False
    )
    assert skipped[0] is None
    np.testing.assert_allclose(skipped[1], want[1], **tolerance(dtype))


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize(("n", "chunk_bytes"), [(1, 1), (5, 1), (64, 1 << 21), (7, 1 << 30)])
def test_conv_chunks_cover_the_batch_evenly(monkeypatch, workers, n, chunk_bytes):
    monkeypatch.setattr(fast, "WORKERS", workers)
    monkeypatch.setattr(fast, "CHUNK_BYTES", chunk_bytes)
    chunks = fast._chunks(n, (n, 16, 16, 32), (16, 16), (3, 3), 4)
    assert [i for images in chunks for i in range(images.start, images.stop)] == list(range(n))
    sizes = [images.stop - images.start for images in chunks]
    assert max(sizes) - min(sizes) <= 1
    assert max(sizes) * 16 * 16 * 9 * 32 * 4 <= max(chunk_bytes, 16 * 16 * 9 * 32 * 4)
    if n >= workers:
        assert len(chunks) % workers == 0 or len(chunks) == n


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "dilation"), CONV_CASES)
def test_col2im_is_the_adjoint_of_im2col(numba_path, x_shape, w_shape, stride, padding, dilation):
    """<im2col(x), c> == <x, col2im(c)> for every x and c: the defining property of col2im."""
    rng = np.random.default_rng(2)
    n, c, h, w = x_shape
    x = rng.standard_normal((n, h, w, c))
    kernel = w_shape[1:]
    cols = fast.im2col_nhwc(x, kernel, stride, padding, dilation)
    grad_cols = rng.standard_normal(cols.shape)
    folded = fast.col2im_nhwc(grad_cols, x.shape, kernel, stride, padding, dilation)
    assert folded.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * grad_cols), np.sum(x * folded), rtol=1e-10)


def naive_im2col_nhwc(x, kernel_size, stride, padding, dilation):
    """Loop im2col. Shape: ``(N, H, W, C) -> (N, OH, OW, KH*KW*C)``, columns ``(kh, kw, c)``."""
    n, h, w, c = x.shape
    (top, bottom), (left, right) = padding
    xp = np.zeros((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    xp[:, top : top + h, left : left + w] = x
    out_h = (h + top + bottom - dilation[0] * (kernel_size[0] - 1) - 1) // stride[0] + 1
    out_w = (w + left + right - dilation[1] * (kernel_size[1] - 1) - 1) // stride[1] + 1
    out = np.empty((n, out_h, out_w, kernel_size[0] * kernel_size[1] * c), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            column = 0
            for p in range(kernel_size[0]):
                for q in range(kernel_size[1]):
                    row, col = i * stride[0] + p * dilation[0], j * stride[1] + q * dilation[1]
                    out[:, i, j, column : column + c] = xp[:, row, col]
                    column += c
    return out


# keep_below 8: few-channel inputs take the whole-kernel-row copy; 0: every input the general path
@pytest.mark.parametrize("keep_below", [0, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "dilation"), CONV_CASES)
def test_im2col_matches_naive_loops(
    numba_path, monkeypatch, keep_below, dtype, x_shape, w_shape, stride, padding, dilation
):
    monkeypatch.setattr(fast, "KEEP_COLS_BELOW_CHANNELS", keep_below)
    x = np.random.default_rng(20).standard_normal(x_shape).astype(dtype)
    x_nhwc = fast.to_nhwc(x)  # strided, as the layers pass it
    want = naive_im2col_nhwc(x_nhwc, w_shape[1:], stride, padding, dilation)
    got = fast.im2col_nhwc(x_nhwc, w_shape[1:], stride, padding, dilation)
    np.testing.assert_array_equal(got, want)
    buffer = np.full(want.shape, np.nan, dtype=dtype)
    fast.im2col_nhwc(x_nhwc, w_shape[1:], stride, padding, dilation, out=buffer)
    np.testing.assert_array_equal(buffer, want)


def test_im2col_reads_channels_first_memory_too(numba_path):
    """A plain NCHW array (its NHWC view is strided) gives the same columns as a contiguous one."""
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 5)).astype(np.float32)
    strided = fast.im2col_nhwc(fast.to_nhwc(x), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1))
    contiguous = np.ascontiguousarray(fast.to_nhwc(x))
    dense = fast.im2col_nhwc(contiguous, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1))
    np.testing.assert_array_equal(strided, dense)


# --- max pooling ---------------------------------------------------------------------------------
POOL_CASES = [
    # (N, C, H, W), kernel, stride, padding
    ((2, 3, 8, 8), (2, 2), (2, 2), ((0, 0), (0, 0))),  # the seed model's unrolled fast path
    ((2, 3, 7, 9), (2, 2), (2, 2), ((0, 0), (0, 0))),  # ... with a row and a column left over
    ((2, 3, 7, 9), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((1, 4, 6, 6), (2, 3), (1, 2), ((1, 1), (0, 0))),
    ((2, 2, 5, 5), (3, 3), (1, 1), ((0, 0), (0, 0))),  # overlapping windows
]


# On 2 workers (the batch split between them, however small) and in the caller alone.
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), POOL_CASES)
def test_max_pool_matches_reference_and_naive_loops(
    numba_path, monkeypatch, workers, dtype, x_shape, kernel, stride, padding
):
    monkeypatch.setattr(fast, "WORKERS", workers)
    monkeypatch.setattr(fast, "SPLIT_MIN_BYTES", 0)
    rng = np.random.default_rng(4)
    x = rng.standard_normal(x_shape).astype(dtype)
    out, argmax = fast.max_pool2d_forward(x, kernel, stride, padding)
    ref, ref_argmax = F.max_pool2d_forward(x, kernel, stride, padding)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out, naive_max_pool(x, kernel, stride, padding))
    np.testing.assert_array_equal(fast.to_nchw(argmax), ref_argmax)
    grad_out = rng.standard_normal(out.shape).astype(dtype)
    got = fast.max_pool2d_backward(grad_out, argmax, x.shape, kernel, stride, padding)
    want = F.max_pool2d_backward(grad_out, ref_argmax, x.shape, kernel, stride, padding)
    np.testing.assert_allclose(got, want, **tolerance(dtype))


def test_max_pool_ties_go_to_the_first_position(numba_path):
    x = np.zeros((1, 2, 4, 4), dtype=np.float32)
    out, argmax = fast.max_pool2d_forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)))
    assert np.all(argmax == 0)
    grad = fast.max_pool2d_backward(
        np.ones_like(out), argmax, x.shape, (2, 2), (2, 2), ((0, 0),) * 2
    )
    assert grad.sum() == out.size
    assert np.all(grad[:, :, ::2, ::2] == 1)


# --- ReLU ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_relu_matches_numpy_in_every_layout(numba_path, layout):
    rng = np.random.default_rng(5)
    base = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    if layout == "channels_last":
        x = fast.to_nchw(np.ascontiguousarray(fast.to_nhwc(base)))
    elif layout == "strided":
        x = rng.standard_normal((2, 3, 8, 5)).astype(np.float32)[:, :, ::2]
    else:
        x = base
    out, positive = fast.relu_forward(x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    np.testing.assert_array_equal(positive, x > 0)
    grad_out = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(fast.relu_backward(grad_out, positive), grad_out * (x > 0))


# --- layers, models and the backend switch ---------------------------------------------------
def test_backend_switch_and_context_manager():
    assert get_backend() == "fast"
    with use_backend("reference"):
        assert get_backend() == "reference"
        assert functional_module() is F
    assert get_backend() == "fast"
    assert functional_module() is fast
    set_backend("reference")
    try:
        assert sc.get_backend() == "reference"
    finally:
        set_backend("fast")
    with pytest.raises(ValueError, match="backend must be one of"):
        set_backend("gpu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seed_cnn_step_is_the_same_on_both_backends(numba_path, dtype):
    rng = np.random.default_rng(6)
    model = sc.seed_cnn(rng=np.random.default_rng(0), dtype=dtype)
    x = rng.standard_normal((3, 3, 32, 32)).astype(dtype)
    y = rng.integers(0, 10, 3)
    loss = sc.CrossEntropyLoss()
    results = {}
    for backend in ("reference", "fast"):
        with use_backend(backend):
            logits = model.forward(x, training=True)
            loss(logits, y)
            grad_x = model.backward(loss.backward())
            results[backend] = [logits, grad_x] + [p.grad.copy() for p in model.parameters()]
    for got, want in zip(results["fast"], results["reference"], strict=True):
        np.testing.assert_allclose(got, want, **tolerance(dtype))


def test_backward_uses_the_backend_of_its_forward():
    """Switching backend between forward and backward must not mix cache layouts."""
    rng = np.random.default_rng(7)
    model = sc.Sequential(sc.Conv2d(2, 3, 3, padding=1, rng=rng), sc.ReLU(), sc.MaxPool2d(2))
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    grad_out = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    with use_backend("reference"):
        model.forward(x, training=True)
        want = model.backward(grad_out)
    with use_backend("fast"):
        model.forward(x, training=True)
    with use_backend("reference"):
        got = model.backward(grad_out)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_conv_can_skip_its_input_gradient():
    rng = np.random.default_rng(8)
    conv = sc.Conv2d(3, 4, 3, padding=1, rng=rng)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    grad_out = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    conv.forward(x, training=True)
    assert conv.backward(grad_out) is not None
    want = conv.weight.grad.copy()
    conv.needs_input_grad = False
    for backend in ("fast", "reference"):
        with use_backend(backend):
            conv.forward(x, training=True)
            assert conv.backward(grad_out) is None
            np.testing.assert_allclose(conv.weight.grad, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("build", "input_shape"),
    [
        (lambda rng: sc.Conv2d(3, 4, 3, stride=2, padding=1, rng=rng), (2, 3, 6, 6)),
        (lambda rng: sc.Conv2d(2, 3, (2, 3), padding="same", dilation=2, rng=rng), (2, 2, 6, 7)),
        (lambda rng: sc.MaxPool2d(2), (2, 3, 6, 6)),
        (lambda rng: sc.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
        (lambda rng: sc.ReLU(), (2, 3, 4, 4)),
    ],
)
def test_fast_layers_pass_gradient_checks(numba_path, build, input_shape):
    rng = np.random.default_rng(9)
    with use_backend("fast"):
        errors = check_layer(build(rng), input_shape, rng)
    assert max(errors.values()) < 1e-6, errors


def test_engine_runs_when_numba_cannot_be_imported(monkeypatch):
    """Simulate a machine without Numba: the import fails and the NumPy path takes over."""
    monkeypatch.setattr(fast, "_kernels_tried", False)
    monkeypatch.setattr(fast, "_kernels", None)
    monkeypatch.setitem(sys.modules, "scratchcnn.functional.fast_numba", None)  # import fails
    monkeypatch.delattr(sc.functional, "fast_numba", raising=False)
    assert fast.numba_kernels() is None
    rng = np.random.default_rng(10)
    model = sc.seed_cnn(rng=rng)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    with use_backend("fast"):
        fast_logits = model.forward(x)
    with use_backend("reference"):
        ref_logits = model.forward(x)
    np.testing.assert_allclose(fast_logits, ref_logits, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fast_conv_works_in_a_forked_child():
    """A child forked after the worker threads started must not wait on threads it lacks."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 3, 8, 8)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    geometry = ((1, 1), ((1, 1), (1, 1)), (1, 1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fast, "CHUNK_BYTES", 1)
        patch.setattr(fast, "WORKERS", 2)
        want, _ = fast.conv2d_forward(x, weight, None, *geometry)  # starts the workers
        pid = os.fork()
        if pid == 0:  # child: exit status 0 only if the result matches
            signal.alarm(30)  # a hang (the bug this guards against) ends as a failure
            try:
                got, _ = fast.conv2d_forward(x, weight, None, *geometry)
                os._exit(0 if np.allclose(got, want) else 1)
            finally:
                os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- inference: no caches, fused ReLU + max-pool -------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "dilation"), CONV_CASES)
def test_conv_forward_for_inference_keeps_nothing(
    numba_path, monkeypatch, dtype, x_shape, w_shape, stride, padding, dilation
):
    """``for_backward=False`` gives the same output from reused scratch rows and keeps nothing."""
    monkeypatch.setattr(fast, "CHUNK_BYTES", 1)  # one image per chunk: the scratch is reused
    rng = np.random.default_rng(12)
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal((w_shape[0], x_shape[1], *w_shape[1:])).astype(dtype)
    bias = rng.standard_normal(w_shape[0]).astype(dtype)
    out, saved = fast.conv2d_forward(x, weight, bias, stride, padding, dilation, for_backward=False)
    assert saved is None
    np.testing.assert_allclose(
        out, naive_conv2d(x, weight, bias, stride, padding, dilation), **tolerance(dtype)
    )


def test_conv_layer_keeps_no_cache_in_inference():
    conv = sc.Conv2d(3, 4, 3, padding=1, rng=np.random.default_rng(13))
    x = np.random.default_rng(14).standard_normal((2, 3, 5, 5)).astype(np.float32)
    for backend in ("fast", "reference"):
        with use_backend(backend):
            conv.forward(x, training=False)
            assert conv._cache is None
            with conv.recording():
                conv.forward(x, training=False)
            assert conv._cache is not None
            conv.backward(np.ones((2, 4, 5, 5), dtype=np.float32))


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), POOL_CASES)
def test_relu_max_pool_matches_naive_loops(
    numba_path, monkeypatch, workers, dtype, x_shape, kernel, stride, padding
):
    monkeypatch.setattr(fast, "WORKERS", workers)
    monkeypatch.setattr(fast, "SPLIT_MIN_BYTES", 0)
    rng = np.random.default_rng(15)
    x = rng.standard_normal(x_shape).astype(dtype)
    out = fast.relu_max_pool2d_forward(x, kernel, stride, padding)
    want = naive_max_pool(np.maximum(x, 0), kernel, stride, padding)
    assert out.shape == want.shape and out.dtype == dtype
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_sequential_inference_fuses_without_changing_results(numba_path, backend):
    """Fused inference (conv + ReLU + pool per chunk) equals the layer-by-layer forward."""
    rng = np.random.default_rng(16)
    model = sc.seed_cnn(rng=np.random.default_rng(0), dtype=np.float64)
    x = rng.standard_normal((3, 3, 32, 32))
    with use_backend(backend):
        fused = model.forward(x, training=False)
        layer_by_layer = x
        for layer in model:
            layer_by_layer = layer.forward(layer_by_layer, training=False)
        np.testing.assert_allclose(fused, layer_by_layer, rtol=1e-12, atol=1e-12)
        assert all(layer._cache is None for layer in model.modules())
        assert model._fuses_relu_pool(1, training=False) == (backend == "fast")
        with model.recording():  # keeps every cache, so backward works
            model.forward(x, training=False)
            model.backward(np.ones_like(fused))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("pool", "input_shape"),
    [
        (lambda: sc.MaxPool2d(2), (2, 3, 8, 8)),
        (lambda: sc.MaxPool2d(2), (2, 3, 7, 9)),
        (lambda: sc.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
    ],
)
def test_fused_relu_pool_training_matches_separate_layers(numba_path, dtype, pool, input_shape):
    """Training through a fused ReLU + max-pool gives the unfused outputs and gradients."""
    rng = np.random.default_rng(17)
    model = sc.Sequential(
        sc.Conv2d(input_shape[1], 4, 3, padding=1, rng=rng, dtype=dtype), sc.ReLU(), pool()
    )
    x = rng.standard_normal(input_shape).astype(dtype)
    x[0, 0, 0, :2] = -1.0  # a window that is all <= 0 after the conv is likely somewhere
    assert model._fuses_relu_pool(1, training=True)
    out = model.forward(x, training=True)
    grad_out = rng.standard_normal(out.shape).astype(dtype)
    grad_x = model.backward(grad_out)
    grads = [p.grad.copy() for p in model.parameters()]
    with use_backend("reference"):  # layer by layer, no fusion
        want = model.forward(x, training=True)
        want_grad_x = model.backward(grad_out)
    np.testing.assert_allclose(out, want, **tolerance(dtype))
    np.testing.assert_allclose(grad_x, want_grad_x, **tolerance(dtype))
    for got, param in zip(grads, model.parameters(), strict=True):
        np.testing.assert_allclose(got, param.grad, **tolerance(dtype))


def test_fused_model_passes_gradient_check(numba_path):
    rng = np.random.default_rng(18)
    model = sc.Sequential(sc.Conv2d(2, 3, 3, padding=1, rng=rng), sc.ReLU(), sc.MaxPool2d(2))
    with use_backend("fast"):
        errors = check_layer(model, (2, 2, 6, 6), rng)
    assert max(errors.values()) < 1e-6, errors


def test_conv_relu_pool_inference_matches_naive_loops(numba_path):
    """The chunked conv + bias + ReLU + 2x2 pool against the naive conv and pool loops."""
    rng = np.random.default_rng(19)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((5, 3, 9, 7)).astype(dtype)
        weight = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
        bias = rng.standard_normal(4).astype(dtype)
        geometry = ((1, 1), ((1, 1), (1, 1)), (1, 1))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fast, "CHUNK_BYTES", 1)  # chunks of one image
            got = fast.conv2d_relu_max_pool2d_forward(
                x, weight, bias, *geometry, (2, 2), (2, 2), ((0, 0), (0, 0))
            )
        conv = naive_conv2d(x, weight, bias, *geometry)
        want = naive_max_pool(np.maximum(conv, 0), (2, 2), (2, 2), ((0, 0), (0, 0)))
        assert got.shape == want.shape == (5, 4, 4, 3) and got.dtype == dtype
        np.testing.assert_allclose(got, want, **tolerance(dtype))


def test_allocator_tuning_runs_once_and_can_be_turned_off(monkeypatch):
    """Keeping freed memory is a process-wide malloc setting: applied once, never an error."""
    monkeypatch.setattr(fast, "_allocator_tuned", False)
    monkeypatch.setattr(fast, "KEEP_FREED_MEMORY", False)
    with fast.blas_limit():
        pass
    assert not fast._allocator_tuned
    monkeypatch.setattr(fast, "KEEP_FREED_MEMORY", True)
    with fast.blas_limit():
        pass
    assert fast._allocator_tuned
    fast._tune_allocator()  # a second call does nothing


# (M, K, N): the inner dimension split, the output's columns split, its rows split; too small.
@pytest.mark.parametrize("shape", [(4, 33, 5), (5, 4, 33), (33, 5, 4), (1, 1, 1)])
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_matmul_matches_numpy(monkeypatch, shape, workers, dtype):
    monkeypatch.setattr(fast, "WORKERS", workers)
    monkeypatch.setattr(fast, "SPLIT_MIN_PRODUCT", 0)
    rng = np.random.default_rng(16)
    a = rng.standard_normal(shape[:2]).astype(dtype)
    b = rng.standard_normal(shape[1:]).astype(dtype)
    got = fast.matmul(a, b.T.copy().T)  # b as a transposed view, as Linear passes its weight
    assert got.shape == shape[::2] and got.dtype == dtype
    np.testing.assert_allclose(got, a @ b, **tolerance(dtype))


def test_linear_on_split_products_matches_reference(monkeypatch):
    monkeypatch.setattr(fast, "SPLIT_MIN_PRODUCT", 0)
    monkeypatch.setattr(fast, "WORKERS", 2)
    rng = np.random.default_rng(17)
    x = rng.standard_normal((6, 40))
    grad_out = rng.standard_normal((6, 7))
    results = {}
    for backend in ("fast", "reference"):
        layer = sc.layers.Linear(40, 7, rng=np.random.default_rng(3), dtype=np.float64)
        with use_backend(backend):
            out = layer.forward(x, training=True)
            grad_x = layer.backward(grad_out)
        results[backend] = (out, grad_x, layer.weight.grad.copy(), layer.bias.grad.copy())
    for got, want in zip(results["fast"], results["reference"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with use_backend("fast"):
        errors = check_layer(sc.layers.Linear(5, 3, rng=rng, dtype=np.float64), (4, 5), rng)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_map_chunks_keeps_order_and_raises(monkeypatch, workers):
    """The caller and the pool threads share the chunks; results come back in chunk order."""
    monkeypatch.setattr(fast, "WORKERS", workers)
    chunks = list(range(17))
    assert fast._map_chunks(lambda chunk: chunk * chunk, chunks) == [c * c for c in chunks]

    def fails_on_five(chunk: int) -> int:
        if chunk == 5:
            raise ValueError("chunk 5")
        return chunk

    with pytest.raises(ValueError, match="chunk 5"):
        fast._map_chunks(fails_on_five, chunks)
