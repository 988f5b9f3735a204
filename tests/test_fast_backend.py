"""The fast backend's own machinery: its kernels against naive loops (with and without Numba),
its chunking and worker threads, its scoped settings, and what it must never change.

The backend interface itself is tested on both backends in ``test_backends.py``; the tests here
take the ``numba_path`` fixture (conftest.py) to run on the Numba kernels and on the NumPy
fallback that runs wherever Numba is missing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import reference as ref

import scratchcnn as sc
from scratchcnn import fast
from scratchcnn.backend import ConvGeometry, PoolGeometry, use_backend
from scratchcnn.fast import conv, elementwise, linear, pool, runtime
from scratchcnn.fast.layout import to_nchw, to_nhwc
from scratchcnn.tools.gradcheck import check_layer

CONV_CASES = [
    # (N, C, H, W), (OC, KH, KW), stride, padding, dilation
    ((2, 3, 8, 8), (4, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 5, 7, 9), (3, 3, 2), (2, 1), ((0, 0), (1, 1)), (1, 1)),
    ((1, 4, 9, 8), (2, 3, 3), (1, 2), ((2, 2), (0, 0)), (2, 1)),
    ((3, 2, 6, 6), (5, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((2, 3, 8, 8), (4, 4, 4), (1, 1), ((1, 2), (1, 2)), (1, 1)),  # "same" with an even kernel
    ((2, 6, 10, 10), (3, 3, 3), (3, 3), ((1, 1), (1, 1)), (2, 2)),
]

POOL_CASES = [
    ((2, 3, 8, 8), (2, 2), (2, 2), ((0, 0), (0, 0))),  # the unrolled 2x2 kernels
    ((2, 3, 7, 9), (2, 2), (2, 2), ((0, 0), (0, 0))),
    ((2, 3, 7, 9), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((1, 4, 6, 6), (2, 3), (1, 2), ((1, 1), (0, 0))),
]


def tolerance(dtype) -> dict:
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


# --- im2col and col2im -------------------------------------------------------------------------
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


# keep_below 8: few-channel inputs take the whole-kernel-row copy; 1: every input the kernel path
@pytest.mark.parametrize("keep_below", [1, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "dilation"), CONV_CASES)
def test_im2col_matches_naive_loops(
    numba_path, keep_below, dtype, x_shape, w_shape, stride, padding, dilation
):
    x_nhwc = to_nhwc(np.random.default_rng(20).standard_normal(x_shape).astype(dtype))  # strided
    want = naive_im2col_nhwc(x_nhwc, w_shape[1:], stride, padding, dilation)
    with fast.settings(keep_cols_below_channels=keep_below) as settings:
        got = conv.im2col_nhwc(x_nhwc, w_shape[1:], stride, padding, dilation, settings)
        np.testing.assert_array_equal(got, want)
        buffer = np.full(want.shape, np.nan, dtype=dtype)
        conv.im2col_nhwc(x_nhwc, w_shape[1:], stride, padding, dilation, settings, out=buffer)
        np.testing.assert_array_equal(buffer, want)


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "dilation"), CONV_CASES)
def test_col2im_is_the_adjoint_of_im2col(numba_path, x_shape, w_shape, stride, padding, dilation):
    """<im2col(x), c> == <x, col2im(c)> for every x and c: the defining property of col2im."""
    rng = np.random.default_rng(2)
    n, c, h, w = x_shape
    x = rng.standard_normal((n, h, w, c))
    kernel = w_shape[1:]
    settings = fast.current_settings()
    cols = conv.im2col_nhwc(x, kernel, stride, padding, dilation, settings)
    grad_cols = rng.standard_normal(cols.shape)
    folded = conv.col2im_nhwc(grad_cols, x.shape, kernel, stride, padding, dilation, settings)
    assert folded.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * grad_cols), np.sum(x * folded), rtol=1e-10)


# --- the im2col convolution in chunks ----------------------------------------------------------
# One image per chunk on 1 or 2 worker threads, im2col kept or rebuilt; the whole batch at once.
@pytest.mark.parametrize(
    ("chunk_bytes", "workers", "keep_below"), [(1, 1, 1), (1, 2, 1), (1, 2, 99), (1 << 20, 2, 8)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "dilation"), CONV_CASES)
def test_chunked_im2col_convolution_matches_naive_loops(
    numba_path, chunk_bytes, workers, keep_below, dtype, x_shape, w_shape, stride, padding, dilation
):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal((w_shape[0], x_shape[1], *w_shape[1:])).astype(dtype)
    bias = rng.standard_normal(w_shape[0]).astype(dtype)
    geometry = ConvGeometry(w_shape[1:], stride, padding, dilation)
    with fast.settings(
        im2col_chunk_bytes=chunk_bytes, workers=workers, keep_cols_below_channels=keep_below,
        winograd=False,
    ) as settings:  # fmt: skip
        out, saved = conv.conv2d_forward(x, weight, bias, geometry, True, settings)
        assert (saved.cols is not None) == (x_shape[1] < keep_below)
        grad_out = rng.standard_normal(out.shape).astype(dtype)
        got = conv.conv2d_backward(saved, grad_out, True, True, settings)
    np.testing.assert_allclose(
        out, ref.conv2d(x, weight, bias, stride, padding, dilation), **tolerance(dtype)
    )
    want = ref.conv2d_backward(grad_out, x, weight, stride, padding, dilation)
    for name, g, w in zip(("input", "weight", "bias"), got, want, strict=True):
        np.testing.assert_allclose(g, w, **tolerance(dtype), err_msg=name)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize(("n", "most"), [(0, 1), (1, 1), (5, 1), (64, 9), (7, 1 << 30)])
def test_batch_chunks_cover_the_batch_evenly(workers, n, most):
    chunks = runtime.batch_chunks(n, most, workers)
    assert [i for images in chunks for i in range(images.start, images.stop)] == list(range(n))
    if n == 0:
        assert chunks == []
        return
    sizes = [images.stop - images.start for images in chunks]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= max(most, 1)
    if n >= workers:
        assert len(chunks) % workers == 0 or len(chunks) == n


def test_fast_conv_works_in_a_forked_child():
    """A child forked after the worker threads started must not wait on threads it lacks."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 3, 8, 8)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    geometry = ConvGeometry((3, 3), (1, 1), ((1, 1), (1, 1)))
    with fast.settings(im2col_chunk_bytes=1, workers=2) as settings:
        want, _ = conv.conv2d_forward(x, weight, None, geometry, False, settings)  # starts threads
        pid = os.fork()
        if pid == 0:  # child: exit status 0 only if the result matches
            signal.alarm(30)  # a hang (the bug this guards against) ends as a failure
            try:
                got, _ = conv.conv2d_forward(x, weight, None, geometry, False, settings)
                os._exit(0 if np.allclose(got, want) else 1)
            finally:
                os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- pooling and ReLU --------------------------------------------------------------------------
# On 2 workers (the batch split between them, however small) and in the caller alone.
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), POOL_CASES)
def test_max_pool_kernels_match_naive_loops(
    numba_path, workers, dtype, x_shape, kernel, stride, padding
):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(x_shape).astype(dtype)
    geometry = PoolGeometry(kernel, stride, padding)
    with fast.settings(workers=workers, split_min_bytes=1) as settings:
        out, saved = pool.max_pool2d_forward(x, geometry, True, settings)
        grad_out = rng.standard_normal(out.shape).astype(dtype)
        grad_x = pool.max_pool2d_backward(saved, grad_out, settings)
        relu_out, relu_saved = pool.relu_max_pool2d_forward(x, geometry, True, settings)
        relu_inference, _ = pool.relu_max_pool2d_forward(x, geometry, False, settings)
        relu_grad = pool.max_pool2d_backward(relu_saved, grad_out, settings)
    want, winner = ref.max_pool2d(x, kernel, stride, padding)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_allclose(
        grad_x, ref.max_pool2d_backward(grad_out, winner, x.shape, padding), **tolerance(dtype)
    )
    relu_want, relu_winner = ref.max_pool2d(np.maximum(x, 0), kernel, stride, padding)
    np.testing.assert_array_equal(relu_out, relu_want)
    np.testing.assert_array_equal(relu_inference, relu_want)
    want_relu_grad = ref.max_pool2d_backward(grad_out, relu_winner, x.shape, padding) * (x > 0)
    np.testing.assert_allclose(relu_grad, want_relu_grad, **tolerance(dtype))


def test_max_pool_kernels_let_nan_win(numba_path):
    """A NaN in a window makes the window's maximum NaN (as PyTorch), fused ReLU or not."""
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)
    x[0, 0, 1, 1] = np.nan
    geometry = PoolGeometry((2, 2), (2, 2), ((0, 0), (0, 0)))
    settings = fast.current_settings()
    for keep in (True, False):
        plain, _ = pool.max_pool2d_forward(x, geometry, keep, settings)
        fused, _ = pool.relu_max_pool2d_forward(x, geometry, keep, settings)
        for out in (plain, fused):
            assert np.isnan(out[0, 0, 0, 0]) and not np.isnan(out[0, 0, 1:, 1:]).any()


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_relu_matches_numpy_in_every_layout(numba_path, layout, workers):
    """Forward with and without the mask, and backward; on 3 workers every array is cut into
    three stretches of memory (120 elements: 40 each), in the caller alone into one."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    if layout == "channels_last":
        x = to_nchw(np.ascontiguousarray(to_nhwc(base)))
    elif layout == "strided":
        x = rng.standard_normal((2, 3, 8, 5)).astype(np.float32)[:, :, ::2]
    else:
        x = base
    grad_out = rng.standard_normal(x.shape).astype(np.float32)
    with fast.settings(workers=workers, split_min_bytes=1) as settings:
        out, positive = elementwise.relu_forward(x, True, settings)
        inference, no_mask = elementwise.relu_forward(x, False, settings)
        got = elementwise.relu_backward(positive, grad_out, settings)
    assert out.strides == inference.strides == np.empty_like(x).strides  # x's layout, no copy
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    np.testing.assert_array_equal(inference, np.maximum(x, 0))
    assert no_mask is None
    np.testing.assert_array_equal(positive, x > 0)
    np.testing.assert_array_equal(got, grad_out * (x > 0))


# --- matrix products split over the workers ----------------------------------------------------
# (M, K, N): the inner dimension split, the output's columns split, its rows split; too small.
@pytest.mark.parametrize("shape", [(4, 33, 5), (5, 4, 33), (33, 5, 4), (1, 1, 1)])
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_matmul_matches_numpy(shape, workers, dtype):
    rng = np.random.default_rng(16)
    a = rng.standard_normal(shape[:2]).astype(dtype)
    b = rng.standard_normal(shape[1:]).astype(dtype)
    with fast.settings(workers=workers, split_min_product=1) as settings:
        got = linear.matmul(a, b.T.copy().T, settings)  # b as a transposed view, as Linear has
    assert got.shape == shape[::2] and got.dtype == dtype
    np.testing.assert_allclose(got, a @ b, **tolerance(dtype))


# --- worker threads and BLAS limits ------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_map_chunks_keeps_order_and_raises(workers):
    """The caller and the pool threads share the chunks; results come back in chunk order."""
    chunks = list(range(17))
    assert runtime.map_chunks(lambda c: c * c, chunks, workers) == [c * c for c in chunks]

    def fails_on_five(chunk: int) -> int:
        if chunk == 5:
            raise ValueError("chunk 5")
        return chunk

    with pytest.raises(ValueError, match="chunk 5"):
        runtime.map_chunks(fails_on_five, chunks, workers)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_sum_over_chunks_adds_every_chunk_once_in_a_fixed_order(workers):
    """One set of running sums per worker; every chunk added once; and the same floating-point
    result however the threads are scheduled: the chunks are summed in consecutive runs, in
    order, and the runs' sums added in order (the weight gradients, and so an exact resume,
    depend on it)."""
    rng = np.random.default_rng(20)
    values = rng.standard_normal((40, 3)).astype(np.float32) * 10.0 ** rng.integers(-4, 5, (40, 1))
    delays = np.random.default_rng(21)
    made = []

    def zeros():
        made.append(1)
        return np.zeros(3, np.float32), np.zeros((2, 2))

    def add(chunk, sums):
        time.sleep(delays.uniform(0, 0.002))  # shuffle which thread gets ahead
        vector, matrix = sums
        vector += values[chunk]
        matrix += chunk * np.eye(2)

    chunks = list(range(40))
    runs = runtime.even_slices(40, workers)
    want = np.zeros(3, np.float32)
    for run in runs:  # each run in order, then the runs in order
        part = np.zeros(3, np.float32)
        for chunk in chunks[run]:
            part += values[chunk]
        want = part if run.start == 0 else want + part
    for _ in range(5):
        made.clear()
        vector, matrix = runtime.sum_over_chunks(add, chunks, workers, zeros)
        assert vector.tobytes() == want.tobytes()  # bit for bit
        np.testing.assert_array_equal(matrix, sum(chunks) * np.eye(2))
        assert len(made) == workers  # one set of sums per run, one run per worker
    vector, matrix = runtime.sum_over_chunks(add, [], workers, zeros)  # no chunks: zeros
    assert not vector.any() and not matrix.any()


def test_blas_limit_nests_across_threads_and_restores_the_limit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers:
        pytest.skip("no BLAS library found by threadpoolctl")
    before = controller.info()[0]["num_threads"]
    entered, release = threading.Barrier(3), threading.Event()

    def hold() -> None:
        with runtime.blas_limit(1):
            entered.wait()
            release.wait()

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    entered.wait()  # both scopes open, in two threads
    assert (
        threadpoolctl.ThreadpoolController().select(user_api="blas").info()[0]["num_threads"] == 1
    )
    release.set()
    for thread in threads:
        thread.join()
    after = threadpoolctl.ThreadpoolController().select(user_api="blas").info()[0]["num_threads"]
    assert after == before and runtime._blas_depth == 0


# --- settings ----------------------------------------------------------------------------------
def test_settings_are_scoped_and_restored_even_on_error():
    default = fast.current_settings()
    with fast.settings(workers=1, winograd=False) as inside:
        assert fast.current_settings() is inside and inside.workers == 1 and not inside.winograd
        with fast.settings(workers=3):
            assert fast.current_settings().workers == 3 and not fast.current_settings().winograd
        assert fast.current_settings().workers == 1
    assert fast.current_settings() == default
    with pytest.raises(RuntimeError), fast.settings(workers=1):
        raise RuntimeError("boom")
    assert fast.current_settings() == default


def test_settings_do_not_leak_into_other_threads():
    seen = []
    with fast.settings(workers=7):
        thread = threading.Thread(target=lambda: seen.append(fast.current_settings().workers))
        thread.start()
        thread.join()
    assert seen == [fast.Settings().workers]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"workers": 0}, "workers must be an int >= 1, got 0"),
        ({"im2col_chunk_bytes": 2.5}, "im2col_chunk_bytes must be an int >= 1, got 2.5"),
        ({"winograd": "no"}, "winograd must be a bool, got 'no'"),
        ({"winograd_tile": 3}, "winograd_tile must be 2 or 4, got 3"),
        ({"winograd_tile": 4.0}, "winograd_tile must be 2 or 4, got 4.0"),
        ({"wrokers": 2}, r"unknown fast setting\(s\) \['wrokers'\]; known settings: \["),
    ],
)
def test_settings_reject_bad_values_before_changing_anything(changes, message):
    before = fast.current_settings()
    with pytest.raises((ValueError, TypeError), match=message), fast.settings(**changes):
        pass
    assert fast.current_settings() == before


def test_winograd_setting_changes_the_algorithm_not_the_result():
    rng = np.random.default_rng(30)
    layer = sc.Conv2d(16, 8, 3, padding=1, rng=rng)
    x = rng.standard_normal((2, 16, 9, 9)).astype(np.float32)
    calls = []
    original = fast.winograd.conv2d_forward

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fast.winograd, "conv2d_forward", spy)
        with_winograd = layer.forward(x)
        with fast.settings(winograd=False):
            without = layer.forward(x)
    assert len(calls) == (1 if runtime.kernels(fast.current_settings()) is not None else 0)
    np.testing.assert_allclose(with_winograd, without, rtol=1e-4, atol=1e-4)


# --- no Numba, no side effects -----------------------------------------------------------------
def test_engine_runs_when_numba_cannot_be_imported(monkeypatch):
    """Simulate a machine without Numba: the import fails and the NumPy path takes over."""
    monkeypatch.setattr(runtime, "_kernels_tried", False)
    monkeypatch.setattr(runtime, "_kernels", None)
    monkeypatch.setitem(sys.modules, "scratchcnn.fast.kernels", None)  # the import fails
    monkeypatch.delattr(fast, "kernels", raising=False)
    assert runtime.kernels(fast.current_settings()) is None
    rng = np.random.default_rng(10)
    model = sc.seed_cnn(rng=rng)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    with use_backend("fast"):
        fast_logits = sc.fuse(model).forward(x)
    with use_backend("reference"):
        ref_logits = model.forward(x)
    np.testing.assert_allclose(fast_logits, ref_logits, rtol=1e-4, atol=1e-5)


def test_importing_and_running_the_library_leaves_the_process_alone():
    """No allocator tuning, no BLAS limit left behind, no settings changed: only the explicit
    ``keep_freed_memory`` (which the trainer calls) touches the allocator."""
    import subprocess

    code = (
        "import numpy as np, scratchcnn as sc\n"
        "from scratchcnn.fast import memory, runtime\n"
        "m = sc.seed_cnn(rng=np.random.default_rng(0))\n"
        "x = np.zeros((4, 3, 32, 32), np.float32)\n"
        "sc.fuse(m).forward(x, training=True)\n"
        "assert not memory._applied and runtime._blas_depth == 0\n"
        "assert sc.fast.keep_freed_memory() in (True, False)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


# --- layers on the fast backend ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "input_shape"),
    [
        (lambda rng: sc.Conv2d(3, 4, 3, stride=2, padding=1, rng=rng), (2, 3, 6, 6)),
        (lambda rng: sc.Conv2d(2, 3, (2, 3), padding="same", dilation=2, rng=rng), (2, 2, 6, 7)),
        (lambda rng: sc.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
        (lambda rng: sc.Linear(5, 3, rng=rng), (4, 5)),
    ],
)
def test_fast_layers_pass_gradient_checks_without_numba_too(numba_path, build, input_shape):
    rng = np.random.default_rng(9)
    with use_backend("fast"):
        errors = check_layer(build(rng), input_shape, rng)
    assert max(errors.values()) < 1e-6, errors


def test_backward_uses_the_backend_of_its_forward():
    """Switching backend between forward and backward must not mix what they keep."""
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


# --- GELU and batch norm kernels -----------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 3])
def test_gelu_kernel_is_float32_exact_and_keeps_nan(workers):
    """The kernel's rational erf and polynomial exp against ``math.erf``/``math.exp`` in float64:
    within two float32 rounding steps of the result over the whole range; NaN in -> NaN out. On
    3 workers each computes its own third of the array (NaN and inf fall in the last)."""
    import math

    if not runtime.kernels(fast.current_settings()):
        pytest.skip("Numba is not installed")
    x = np.concatenate([np.linspace(-12, 12, 200_001), [np.nan, np.inf]]).astype(np.float32)
    with fast.settings(workers=workers, split_min_bytes=1) as settings:
        out, kept = elementwise.gelu_forward(x, True, settings)
        grad = elementwise.gelu_backward(kept, np.ones_like(x), settings)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x[:-2].astype(float)])
    slope = np.array(
        [0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi)
         for v in x[:-2].astype(float)]
    )  # fmt: skip
    assert out.dtype == np.float32
    error = np.abs(out[:-2] - exact) / np.maximum(1, np.abs(exact))
    assert error.max() < 3e-7, error.max()  # float32 rounding (6e-8) plus the fit (6e-8)
    assert np.abs(grad[:-2] - slope).max() < 3e-7
    assert np.isnan(out[-2]) and np.isnan(grad[-2]) and out[-1] == np.inf
    assert elementwise.gelu_forward(x.astype(np.float64), True, settings) is None  # exact path


@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
@pytest.mark.parametrize("workers", [1, 3])
def test_batch_norm_kernels_match_the_reference_in_float32(numba_path, activation, workers):
    backend_ref = sc.backend.ReferenceBackend()
    rng = np.random.default_rng(31)
    x = (rng.standard_normal((6, 5, 7, 3)) * 3 + 2).astype(np.float32)
    x_channels_last = to_nchw(np.ascontiguousarray(to_nhwc(x)))  # as the fast layers produce
    weight, bias = (
        rng.standard_normal(5).astype(np.float32),
        rng.standard_normal(5).astype(np.float32),
    )
    grad_out = rng.standard_normal(x.shape).astype(np.float32)
    with fast.settings(workers=workers, split_min_bytes=1), use_backend("fast") as fast_backend:
        for inputs in (x, x_channels_last):
            got = (
                fast_backend.batch_norm_activation_forward(
                    inputs, weight, bias, 1e-5, activation or "relu", True
                )
                if activation
                else fast_backend.batch_norm_forward(inputs, weight, bias, 1e-5, True)
            )
            grads = (
                fast_backend.batch_norm_activation_backward(got[1], grad_out, True)
                if activation
                else fast_backend.batch_norm_backward(got[1], grad_out, True)
            )
            x64, w64, b64, g64 = (a.astype(np.float64) for a in (x, weight, bias, grad_out))
            if activation:
                want = backend_ref.batch_norm_activation_forward(
                    x64, w64, b64, 1e-5, activation, True
                )
                want_grads = backend_ref.batch_norm_activation_backward(want[1], g64, True)
            else:
                want = backend_ref.batch_norm_forward(x64, w64, b64, 1e-5, True)
                want_grads = backend_ref.batch_norm_backward(want[1], g64, True)
            assert got[0].dtype == np.float32
            np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=2e-5)
            np.testing.assert_allclose(got[2], want[2], rtol=1e-5, atol=1e-5)  # batch mean
            np.testing.assert_allclose(got[3], want[3], rtol=1e-5, atol=1e-5)  # batch variance
            for g, w in zip(grads, want_grads, strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_batch_norm_kernels_keep_nan():
    x = np.ones((4, 2, 3, 3), dtype=np.float32)
    x[0, 0, 0, 0] = np.nan
    with use_backend("fast") as backend:
        out, *_ = backend.batch_norm_activation_forward(
            x, np.ones(2, np.float32), np.zeros(2, np.float32), 1e-5, "gelu", False
        )
    assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1]).all()  # the channel's mean is NaN
