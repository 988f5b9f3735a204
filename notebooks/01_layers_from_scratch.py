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
# # 1. Layers from scratch
#
# A convolution three ways: by plain loops, by **im2col** (every receptive field unrolled into
# a row, so the whole convolution is one matrix product), and by the library's `Conv2d`. Then
# the backward pass, checked the way every layer of scratchcnn is checked: against centred
# finite differences, first by hand and then with `scratchcnn.tools.gradcheck`.
#
# The derivations are on the theory page [Convolution](../docs/theory/convolution.md); the
# output-size formula on [Shapes and receptive fields](../docs/theory/shapes-receptive-fields.md).
#
# Run it top to bottom (a few seconds). `SCRATCHCNN_NOTEBOOK_QUICK=1` in the environment picks
# the small sizes the test suite uses; this notebook is small either way.

# %%
import os
import time

import numpy as np

import scratchcnn as sc
from scratchcnn import functional as F
from scratchcnn.tools import gradcheck

QUICK = os.environ.get("SCRATCHCNN_NOTEBOOK_QUICK") == "1"  # the test suite's small sizes
rng = np.random.default_rng(0)

# %% [markdown]
# ## A convolution by loops
#
# A 2-D convolution layer (a cross-correlation, in every deep-learning library) slides each
# filter over the padded input; output pixel $(i, j)$ of output channel $o$ is the dot product
# of filter $o$ with the window under it:
#
# $$y_{n,o,i,j} = b_o + \sum_{c,u,v} w_{o,c,u,v}\, x^{pad}_{n,c,\,i s + u,\,j s + v}$$
#
# and along each axis the output has $\lfloor (H + 2p - k) / s \rfloor + 1$ pixels.
# Written as loops, this is the definition and nothing else:


# %%
def conv2d_loops(x, weight, bias, stride=1, padding=0):
    """The definition of a convolution: one dot product per output pixel.

    Shape: x (N, C, H, W), weight (O, C, K, K), bias (O,) -> (N, O, OH, OW).
    """
    n, c, h, w = x.shape
    out_channels, _, k, _ = weight.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (h + 2 * padding - k) // stride + 1
    out_w = (w + 2 * padding - k) // stride + 1
    out = np.zeros((n, out_channels, out_h, out_w))
    for b in range(n):
        for o in range(out_channels):
            for i in range(out_h):
                for j in range(out_w):
                    window = x_pad[b, :, i * stride : i * stride + k, j * stride : j * stride + k]
                    out[b, o, i, j] = np.sum(window * weight[o]) + bias[o]
    return out


x = rng.standard_normal((2, 3, 7, 7))  # (N, C, H, W)
weight = rng.standard_normal((4, 3, 3, 3))  # (out_channels, in_channels, KH, KW)
bias = rng.standard_normal(4)
y_loops = conv2d_loops(x, weight, bias, stride=2, padding=1)
print("output shape:", y_loops.shape)  # (7 + 2 - 3) // 2 + 1 = 4
assert y_loops.shape == (2, 4, 4, 4)

# %% [markdown]
# ## The same convolution by im2col
#
# The loops above compute `N * O * OH * OW` small dot products. **im2col** gathers every window
# into one row of a matrix, `(N * OH * OW, C * K * K)`, and flattens the filters into
# `(O, C * K * K)`: the whole convolution is then a single matrix product, which BLAS runs at
# close to the machine's peak. Here it is written out, then compared with the library's
# `scratchcnn.functional.im2col`.


# %%
def im2col_loops(x, k, stride, padding):
    """Unroll each k x k window into a row; rows in (n, i, j) order, columns in (c, u, v) order.

    Shape: (N, C, H, W) -> (N * OH * OW, C * K * K).
    """
    n, c, h, w = x.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (h + 2 * padding - k) // stride + 1
    out_w = (w + 2 * padding - k) // stride + 1
    rows = []
    for b in range(n):
        for i in range(out_h):
            for j in range(out_w):
                window = x_pad[b, :, i * stride : i * stride + k, j * stride : j * stride + k]
                rows.append(window.reshape(-1))  # (C * K * K,)
    return np.stack(rows), (out_h, out_w)


cols, (out_h, out_w) = im2col_loops(x, 3, stride=2, padding=1)
print("im2col matrix:", cols.shape, "  flattened filters:", weight.reshape(4, -1).shape)
y_im2col = cols @ weight.reshape(4, -1).T + bias  # (N * OH * OW, O)
y_im2col = y_im2col.reshape(2, out_h, out_w, 4).transpose(0, 3, 1, 2)  # back to NCHW
np.testing.assert_allclose(y_im2col, y_loops, rtol=1e-12, atol=1e-12)

# The library builds the same matrix without a Python loop (a strided view of the windows).
cols_library, _ = F.im2col(x, (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1))
np.testing.assert_array_equal(cols_library, cols)
print("loops, im2col by hand and scratchcnn.functional.im2col agree")

# %% [markdown]
# ## The library's `Conv2d`
#
# `scratchcnn.Conv2d` takes PyTorch's arguments and keeps its weight in PyTorch's layout
# `(out_channels, in_channels, KH, KW)`. Its forward pass hands the arrays to the current
# backend: `"reference"` is the im2col code of `scratchcnn.functional`, `"fast"` (the
# default) the channels-last, multi-threaded implementation of notebook 6. Both must agree
# with the loops.

# %%
conv = sc.Conv2d(3, 4, kernel_size=3, stride=2, padding=1, rng=rng).astype(np.float64)
conv.weight.data[...] = weight
conv.bias.data[...] = bias
for backend in ("reference", "fast"):
    with sc.use_backend(backend):
        y_layer = conv.forward(x)
    np.testing.assert_allclose(y_layer, y_loops, rtol=1e-10, atol=1e-10)
    print(f"Conv2d on the {backend} backend matches the loops")

# %% [markdown]
# How much the matrix product buys, on a batch of CIFAR-sized images (timings vary with the
# machine and its load; they are reported, never asserted):

# %%
images = rng.standard_normal((4 if QUICK else 16, 3, 32, 32))
big_weight = rng.standard_normal((16, 3, 3, 3))
timings = {}
start = time.perf_counter()
reference_out = conv2d_loops(images, big_weight, np.zeros(16), stride=1, padding=1)
timings["loops"] = time.perf_counter() - start
big_conv = sc.Conv2d(3, 16, 3, padding=1, rng=rng).astype(np.float64)
big_conv.weight.data[...] = big_weight
big_conv.bias.data[...] = 0.0
for backend in ("reference", "fast"):
    with sc.use_backend(backend):
        big_conv.forward(images)  # warm-up: the fast backend compiles its kernels once
        start = time.perf_counter()
        out = big_conv.forward(images)
        timings[f"Conv2d ({backend})"] = time.perf_counter() - start
    np.testing.assert_allclose(out, reference_out, rtol=1e-10, atol=1e-10)
for name, seconds in timings.items():
    print(f"{name:<22} {seconds * 1e3:9.2f} ms   {timings['loops'] / seconds:8.0f}x the loops")

# %% [markdown]
# ## The backward pass, checked by hand
#
# `backward(grad_out)` receives $\partial L / \partial y$ and returns $\partial L / \partial x$,
# filling `weight.grad` and `bias.grad` on the way. To check it, pick a scalar objective
# whose gradient with respect to the output we know: $L = \sum y \odot R$ for a fixed random
# $R$, so $\partial L / \partial y = R$. Then nudge one input entry by $\pm\varepsilon$ and
# compare the centred difference $\frac{L(x + \varepsilon) - L(x - \varepsilon)}{2\varepsilon}$
# with the analytic gradient. In float64 the truncation error ($O(\varepsilon^2)$) and the
# rounding error ($O(10^{-16} / \varepsilon)$) both sit far below $10^{-7}$.

# %%
R = rng.standard_normal(y_loops.shape)
y = conv.forward(x, training=True)  # training=True keeps what backward needs
grad_x = conv.backward(R)
print("grad_x:", grad_x.shape, " weight.grad:", conv.weight.grad.shape)


def objective():
    return float(np.sum(conv.forward(x) * R))


eps = 1e-6
worst = 0.0
for index in [(0, 0, 0, 0), (1, 2, 3, 4), (0, 1, 6, 6), (1, 0, 2, 5)]:
    original = x[index]
    x[index] = original + eps
    plus = objective()
    x[index] = original - eps
    minus = objective()
    x[index] = original
    numeric = (plus - minus) / (2 * eps)
    error = abs(numeric - grad_x[index]) / max(abs(numeric), abs(grad_x[index]))
    worst = max(worst, error)
    print(
        f"dL/dx{index}: analytic {grad_x[index]: .8f}  numeric {numeric: .8f}  rel. err {error:.1e}"
    )
assert worst < 1e-7

# %% [markdown]
# ## The same check with `scratchcnn.tools.gradcheck`
#
# `gradcheck.check_layer` does this for **every** entry of the input and of each parameter,
# casts the layer to float64, and keeps inputs away from the kinks of ReLU and max pooling
# (where a centred difference measures neither side's slope). It returns one norm-wise
# relative error per tensor; `check_model` does the same through a loss.

# %%
errors = gradcheck.check_layer(sc.Conv2d(3, 4, 3, stride=2, padding=1, rng=rng), (2, 3, 7, 7), rng)
print({name: f"{error:.1e}" for name, error in errors.items()})
assert max(errors.values()) < 1e-7

small_cnn = sc.Sequential(
    sc.Conv2d(3, 4, 3, padding=1, rng=rng),
    sc.ReLU(),
    sc.MaxPool2d(2),
    sc.Flatten(),
    sc.Linear(4 * 4 * 4, 5, rng=rng),
)
errors = gradcheck.check_model(
    small_cnn, sc.CrossEntropyLoss(), (3, 3, 8, 8), rng.integers(0, 5, size=3), rng
)
print({name: f"{error:.1e}" for name, error in errors.items()})
assert max(errors.values()) < 1e-6

# %% [markdown]
# ## A gradient check catches a wrong backward pass
#
# A check that cannot fail proves nothing, so here is a layer with a classic bug: the
# derivative of $x^2$ written as $x$ instead of $2x$. A layer keeps what its backward pass
# needs in its one cache slot, `self._cache`, only when `training` is true.


# %%
class Square(sc.Layer):
    """y = x ** 2, with a deliberately wrong backward pass (the factor 2 is missing).

    Shape: any -> same.
    """

    def forward(self, x, training=False):
        if training:
            self._cache = x
        return x**2

    def backward(self, grad_out):
        x = self._pop_cache()  # the bug: d(x^2)/dx is 2x, not x
        return grad_out * x


errors = gradcheck.check_layer(Square(), (2, 5), rng)
print(f"relative error of the buggy layer: {errors['input']:.2f}")
assert errors["input"] > 0.1  # caught: a correct layer is below 1e-7

# %% [markdown]
# Next: [the backward pass, visualised](02_backward_pass.py): why the input gradient of a
# convolution is a *full* convolution with the flipped kernel, and where max pooling sends
# its gradient.
