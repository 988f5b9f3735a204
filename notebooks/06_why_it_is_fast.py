# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Why it is fast
#
# The layers of scratchcnn read like the textbook; the speed lives below them, in the `"fast"`
# backend (`scratchcnn/fast/`, see [How scratchcnn is put together](../docs/architecture.md)).
# Five ideas make it fast, and each is measured here on small shapes:
#
# 1. **channels-last memory**, so that an im2col row is a few long contiguous copies;
# 2. **chunking**, so that the im2col matrix of a few images stays in cache between being
#    written and being multiplied, and each worker thread takes its own chunks;
# 3. **Numba kernels** for the loops NumPy cannot express without temporary arrays;
# 4. **Winograd F(2x2, 3x3) and F(4x4, 3x3)**: 16 multiplications per 2x2 output block instead
#    of 36, or 36 per 4x4 block instead of 144;
# 5. **fusion**: Conv2d -> ReLU -> MaxPool2d as one pass over memory.
#
# Every switch is scoped, `with scratchcnn.fast.settings(...)`, and every variant computes the
# same numbers: that is asserted. The timings are reported, never asserted: they depend on the
# machine and on what else runs on it (the benchmark proper is `scratchcnn bench`, with results
# in `benchmarks/README.md`). `SCRATCHCNN_NOTEBOOK_QUICK=1` in the environment uses smaller
# batches and fewer repeats (the test suite's setting; its timings mean even less).

# %%
import os
import time

import numpy as np

import scratchcnn as sc
from scratchcnn import fast
from scratchcnn import functional as F
from scratchcnn.fast.layout import pad_nhwc, windows_nhwc

QUICK = os.environ.get("SCRATCHCNN_NOTEBOOK_QUICK") == "1"  # the test suite's small sizes
BATCH = 8 if QUICK else 64
REPEATS = 2 if QUICK else 7
rng = np.random.default_rng(0)
print("fast backend settings:", fast.current_settings())


def median_ms(fn, repeats=REPEATS):
    """Median wall time of ``fn()`` in milliseconds, after one warm-up call."""
    fn()  # the first call compiles Numba kernels (cached on disk) and allocates buffers
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def train_step(layer, x, grad):
    """One forward and backward pass of ``layer``; returns (output, input gradient)."""
    out = layer.forward(x, training=True)
    return out, layer.backward(grad)


# %% [markdown]
# ## The starting point: the reference backend
#
# One convolution of the seed CNN's second layer (32 -> 64 channels, 3x3, 16x16 images),
# forward and backward, on the readable im2col backend and on the fast backend.

# %%
conv = sc.Conv2d(32, 64, 3, padding=1, rng=rng)
x = rng.standard_normal((BATCH, 32, 16, 16)).astype(np.float32)
grad = rng.standard_normal((BATCH, 64, 16, 16)).astype(np.float32)
results, times = {}, {}
for backend in ("reference", "fast"):
    with sc.use_backend(backend):
        times[backend] = median_ms(lambda: train_step(conv, x, grad))
        results[backend] = train_step(conv, x, grad)
for backend, ms in times.items():
    print(f"{backend:<10} {ms:8.2f} ms  ({times['reference'] / ms:.1f}x the reference)")
np.testing.assert_allclose(results["fast"][0], results["reference"][0], rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(results["fast"][1], results["reference"][1], rtol=1e-4, atol=1e-4)

# %% [markdown]
# ## 1. Channels-last
#
# An im2col row holds one receptive field: `C x 3 x 3` numbers. In NCHW memory the 9 values of
# one channel are 3 runs of 3 floats, and the next channel is a whole image plane away: building
# a row is `3 C` tiny copies. In channels-last (NHWC) memory, the `C` channels of one pixel are
# adjacent, so a row is 9 copies of `C` contiguous floats, and the product with the weights
# gives `(N, OH, OW, OC)`, already channels-last for the next layer. The fast backend keeps
# NCHW *shapes* at the API (as PyTorch's `channels_last` does) and NHWC *memory* inside.

# %%
x_nchw = rng.standard_normal((BATCH, 32, 16, 16)).astype(np.float32)
x_nhwc = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))  # (N, H, W, C) in memory
padding = ((1, 1), (1, 1))
print("NCHW strides (bytes):", x_nchw.strides, "  NHWC strides:", x_nhwc.strides)


def im2col_nchw():
    return F.im2col(x_nchw, (3, 3), (1, 1), padding, (1, 1))[0]  # columns (c, kh, kw)


def im2col_nhwc():
    windows = windows_nhwc(pad_nhwc(x_nhwc, padding, 0.0), (3, 3), (1, 1), (1, 1), (16, 16))
    return windows.reshape(BATCH * 16 * 16, 9 * 32)  # columns (kh, kw, c): one copy


cols_nchw, cols_nhwc = im2col_nchw(), im2col_nhwc()
# The same numbers, in another column order: (c, kh, kw) -> (kh, kw, c).
reordered = cols_nchw.reshape(-1, 32, 3, 3).transpose(0, 2, 3, 1).reshape(cols_nhwc.shape)
np.testing.assert_array_equal(reordered, cols_nhwc)
nchw_ms, nhwc_ms = median_ms(im2col_nchw), median_ms(im2col_nhwc)
print(f"im2col from NCHW memory {nchw_ms:7.2f} ms;  from NHWC memory {nhwc_ms:7.2f} ms")

# %% [markdown]
# ## 2. Chunking and worker threads
#
# The im2col matrix of a whole batch is 9 times the input: for 64 images of 32x16x16 floats,
# 18 MB, far larger than a core's cache. The fast backend cuts the batch into chunks of about
# `im2col_chunk_bytes` of rows (2 MiB by default, about a core's L2 cache), builds and
# multiplies one chunk at a time while it is still in cache, and hands chunks to `workers`
# threads (Numba kernels and BLAS release the GIL). Winograd is off in this comparison, so every
# variant runs im2col.

# %%
variants = {
    "one chunk of the whole batch, 1 thread": dict(im2col_chunk_bytes=1 << 30, workers=1),
    "2 MiB chunks, 1 thread": dict(workers=1),
    "2 MiB chunks, all cores": dict(),
    "64 KiB chunks, all cores": dict(im2col_chunk_bytes=1 << 16),
}
reference_out = None
for name, changes in variants.items():
    with fast.settings(winograd=False, **changes):
        ms = median_ms(lambda: train_step(conv, x, grad))
        out, grad_in = train_step(conv, x, grad)
    if reference_out is None:
        reference_out, reference_grad = out, grad_in
    np.testing.assert_allclose(out, reference_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_in, reference_grad, rtol=1e-5, atol=1e-5)
    print(f"{name:<40} {ms:8.2f} ms")
print("cores here:", os.cpu_count())

# %% [markdown]
# ## 3. Numba kernels
#
# Some steps are loops that NumPy can only express with temporary arrays: max pooling's
# forward (a running maximum and its position) and its backward (a scatter to the winners),
# ReLU fused into pooling, the im2col copy itself. The fast backend compiles them with Numba;
# `numba=False` runs the NumPy equivalents (what runs wherever Numba is not installed).

# %%
pool = sc.MaxPool2d(2)
activations = rng.standard_normal((BATCH, 64, 32, 32)).astype(np.float32)
pool_grad = rng.standard_normal((BATCH, 64, 16, 16)).astype(np.float32)
outputs = {}
for numba in (False, True):
    with fast.settings(numba=numba):
        pool_ms = median_ms(lambda: train_step(pool, activations, pool_grad))
        conv_ms = median_ms(lambda: train_step(conv, x, grad))
        outputs[numba] = train_step(pool, activations, pool_grad)
    label = "Numba kernels" if numba else "NumPy only"
    print(f"{label:<14} max pool {pool_ms:8.2f} ms   conv {conv_ms:8.2f} ms")
np.testing.assert_array_equal(outputs[True][0], outputs[False][0])
np.testing.assert_array_equal(outputs[True][1], outputs[False][1])

# %% [markdown]
# ## 4. Winograd F(2x2, 3x3)
#
# Two outputs of a 3-tap filter over four inputs take six multiplications directly, four
# Winograd's way: $y = A^\top[(G g) \odot (B^\top d)]$. The filter side, $G g$, is computed once
# per filter; the input side, $B^\top d$, only adds and subtracts. Nested over rows and columns
# a 2x2 output block costs 16 multiplications instead of 36. The derivation, and why the
# backward pass uses the transposed transforms, is on the theory page
# [Winograd F(2x2, 3x3)](../docs/theory/winograd.md). In one dimension:

# %%
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)
d = rng.standard_normal(4)  # four inputs
g = rng.standard_normal(3)  # a 3-tap filter
direct = np.array([d[0:3] @ g, d[1:4] @ g])  # 6 multiplications
winograd = A_T @ ((G @ g) * (B_T @ d))  # 4 multiplications: the elementwise product
np.testing.assert_allclose(winograd, direct, rtol=1e-12)

# 2-D: a 4x4 input tile and a 3x3 filter give a 2x2 output block with 16 multiplications.
tile, kernel = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
block = A_T @ ((G @ kernel @ G.T) * (B_T @ tile @ B_T.T)) @ A_T.T
direct_block = np.array(
    [[np.sum(tile[i : i + 3, j : j + 3] * kernel) for j in range(2)] for i in range(2)]
)
np.testing.assert_allclose(block, direct_block, rtol=1e-12)
print("F(2,3) and F(2x2, 3x3) match the direct correlation")

# %% [markdown]
# Over channels, the 16 elementwise products of a tile become 16 matrix products (transformed
# tiles x channels, times channels x output channels), which BLAS runs. Measured on the same
# layer as above:

# %%
outputs, times = {}, {}
for enabled in (False, True):
    with fast.settings(winograd=enabled):
        times[enabled] = median_ms(lambda: train_step(conv, x, grad))
        outputs[enabled] = train_step(conv, x, grad)
print(f"im2col {times[False]:8.2f} ms;  Winograd {times[True]:8.2f} ms")
# The transforms add and subtract a few extra terms: equal up to float32 rounding.
np.testing.assert_allclose(outputs[True][0], outputs[False][0], rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(outputs[True][1], outputs[False][1], rtol=1e-4, atol=1e-4)

# %% [markdown]
# Larger tiles save more: F(4x4, 3x3) gets a 4x4 output block from a 6x6 input tile with 36
# multiplications instead of 144, 4x fewer, at the price of transforms whose coefficients reach 8
# (a little more float32 rounding; the matrices are on the theory page). The fast backend takes
# 4x4 tiles wherever they need fewer products than 2x2 tiles, as on this 16x16 layer;
# `winograd_tile=2` keeps the 2x2 tiles:

# %%
for tile in (2, 4):
    with fast.settings(winograd_tile=tile):
        times[tile] = median_ms(lambda: train_step(conv, x, grad))
        outputs[tile] = train_step(conv, x, grad)
print(f"2x2 tiles {times[2]:8.2f} ms;  4x4 tiles {times[4]:8.2f} ms")
np.testing.assert_allclose(outputs[4][0], outputs[2][0], rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(outputs[4][1], outputs[2][1], rtol=1e-4, atol=1e-4)

# %% [markdown]
# ## 5. Fusion
#
# Conv2d -> ReLU -> MaxPool2d reads and writes the full-size activation three times. The fused
# layer pools each chunk of the convolution's output while it is still in cache and applies
# ReLU to the four times smaller pooled output (ReLU and max commute). `sc.fuse(model)` is an
# explicit, visible step: it returns a model of fused layers that share every parameter with the
# original, so the summary shows what runs, and `state_dict()` is unchanged.

# %%
model = sc.seed_cnn(rng=rng)
fused = sc.fuse(model)
fused.summary((3, 32, 32))
assert fused.state_dict().keys() == model.state_dict().keys()

images = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
logits_grad = rng.standard_normal((BATCH, 10)).astype(np.float32)
results, times = {}, {}
for name, net in (("plain", model), ("fused", fused)):
    times[name, "inference"] = median_ms(lambda net=net: net.forward(images))
    times[name, "training"] = median_ms(lambda net=net: train_step(net, images, logits_grad))
    logits, _ = train_step(net, images, logits_grad)
    results[name] = (logits, {k: p.grad.copy() for k, p in net.named_parameters()})
for name in ("plain", "fused"):
    print(
        f"{name:<6} inference {times[name, 'inference']:8.2f} ms   "
        f"training step {times[name, 'training']:8.2f} ms"
    )
np.testing.assert_allclose(results["fused"][0], results["plain"][0], rtol=1e-4, atol=1e-4)
for key, grad_plain in results["plain"][1].items():
    np.testing.assert_allclose(results["fused"][1][key], grad_plain, rtol=1e-3, atol=1e-4)
print("the fused model computes the same logits and gradients")

# %% [markdown]
# The trainer, `evaluate` and `scratchcnn bench` run fused models; checkpoints, ONNX export and
# the PyTorch bridge describe the plain one (`sc.unfuse`). For the whole picture on an idle
# machine, with PyTorch beside it, run `scratchcnn bench --vs-torch`.
