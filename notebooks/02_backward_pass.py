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
# # 2. The backward pass of convolution and pooling, visualised
#
# Three facts carry every CNN's backward pass:
#
# 1. the **input gradient** of a convolution is a *full* convolution of the output gradient
#    with the **flipped** kernel (the "transposed convolution");
# 2. the **weight gradient** is a correlation of the input with the output gradient;
# 3. **max pooling** sends each output's gradient to the one input that won its window, and
#    nowhere else.
#
# Each is computed here by its formula on small arrays you can read, drawn, and checked against
# the library's `backward` and against finite differences. The derivations, with stride,
# padding and dilation, are on the theory pages [Convolution](../docs/theory/convolution.md)
# and [Pooling](../docs/theory/pooling.md).
#
# Runs in seconds; `SCRATCHCNN_NOTEBOOK_QUICK=1` (the test suite's setting) changes nothing here.

# %%
import matplotlib.pyplot as plt
import numpy as np

import scratchcnn as sc
from scratchcnn.tools.gradcheck import numerical_gradient, relative_error

rng = np.random.default_rng(0)


def show_grids(panels, title=None):
    """Draw 2-D arrays side by side, each cell labelled with its value."""
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8))
    for ax, (name, grid) in zip(np.atleast_1d(axes), panels.items(), strict=True):
        limit = max(np.abs(grid).max(), 1e-12)
        ax.imshow(grid, cmap="coolwarm", vmin=-limit, vmax=limit)
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.show()


def correlate2d(image, kernel):
    """Valid cross-correlation of one 2-D image with one 2-D kernel (what Conv2d computes).

    Shape: (H, W), (K, K) -> (H - K + 1, W - K + 1).
    """
    k_h, k_w = kernel.shape
    out = np.zeros((image.shape[0] - k_h + 1, image.shape[1] - k_w + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(image[i : i + k_h, j : j + k_w] * kernel)
    return out


# %% [markdown]
# ## One channel, stride 1, no padding
#
# A 5x5 input and a 3x3 kernel give a 3x3 output, $y_{ij} = \sum_{u,v} w_{uv}\, x_{i+u,\,j+v}$.
# The loss sends back $G = \partial L / \partial y$, one number per output pixel.

# %%
x = rng.integers(-3, 4, size=(5, 5)).astype(np.float64)
w = rng.integers(-2, 3, size=(3, 3)).astype(np.float64)
G = rng.integers(-2, 3, size=(3, 3)).astype(np.float64)  # dL/dy, as the next layer hands it

conv = sc.Conv2d(1, 1, kernel_size=3, bias=False, rng=rng).astype(np.float64)
conv.weight.data[0, 0] = w
y = conv.forward(x[None, None], training=True)[0, 0]
np.testing.assert_allclose(y, correlate2d(x, w))
grad_x = conv.backward(G[None, None])[0, 0]
grad_w = conv.weight.grad[0, 0]
show_grids({"input x": x, "kernel w": w, "output y": y, "G = dL/dy": G}, "the forward pass")

# %% [markdown]
# ### The input gradient is a full convolution with the flipped kernel
#
# Input pixel $x_{pq}$ touched output $y_{ij}$ through weight $w_{p-i,\,q-j}$, so
# $\partial L / \partial x_{pq} = \sum_{i,j} G_{ij}\, w_{p-i,\,q-j}$. Read as an operation on
# images: pad $G$ with $K - 1 = 2$ zeros on every side and slide the kernel rotated by 180°
# over it. Every input pixel, corners included, collects from every output it fed.

# %%
G_padded = np.pad(G, 2)  # "full": the kernel also hangs over the edges
w_flipped = w[::-1, ::-1]
grad_x_formula = correlate2d(G_padded, w_flipped)
show_grids(
    {"G padded by K-1": G_padded, "w flipped": w_flipped, "dL/dx (formula)": grad_x_formula},
    "input gradient = full convolution of G with the flipped kernel",
)
np.testing.assert_allclose(grad_x_formula, grad_x)
print("Conv2d.backward's input gradient equals the full convolution with the flipped kernel")

# %% [markdown]
# ### The weight gradient is a correlation of the input with G
#
# Weight $w_{uv}$ was used at every output pixel, each time on input $x_{i+u,\,j+v}$:
# $\partial L / \partial w_{uv} = \sum_{i,j} G_{ij}\, x_{i+u,\,j+v}$. That is the forward
# correlation again, with $G$ playing the kernel.

# %%
grad_w_formula = correlate2d(x, G)
show_grids(
    {"input x": x, "G as a kernel": G, "dL/dw (formula)": grad_w_formula},
    "weight gradient = correlation of the input with G",
)
np.testing.assert_allclose(grad_w_formula, grad_w)
print("Conv2d.backward's weight gradient equals the correlation of x with G")

# %% [markdown]
# ### Checked numerically
#
# Both formulas, and the layer, against centred finite differences of
# $L = \sum_{ij} G_{ij}\, y_{ij}$ (whose gradient with respect to $y$ is exactly $G$).

# %%
x_batch = x[None, None].copy()


def loss():
    return float(np.sum(conv.forward(x_batch) * G))


numeric_x = numerical_gradient(loss, x_batch)[0, 0]
numeric_w = numerical_gradient(loss, conv.weight.data)[0, 0]
print(f"input gradient:  relative error {relative_error(grad_x_formula, numeric_x):.1e}")
print(f"weight gradient: relative error {relative_error(grad_w_formula, numeric_w):.1e}")
assert relative_error(grad_x_formula, numeric_x) < 1e-8
assert relative_error(grad_w_formula, numeric_w) < 1e-8

# %% [markdown]
# ## Many channels, a batch, stride and padding
#
# With channels the formulas only gain sums: $dX_{n,c} = \sum_o \mathrm{full}(G_{n,o},
# \mathrm{flip}(w_{o,c}))$ and $dW_{o,c} = \sum_n \mathrm{corr}(x_{n,c}, G_{n,o})$. With stride
# $s$, output $i$ reads input row $i s + u$: the output gradient first gets $s - 1$ zeros
# inserted between its entries (that is what "transposed" convolution means: the stride moves
# from the output to the input side). Padding $p$ is cropped off the result.


# %%
def conv_input_grad(G, weight, input_shape, stride, padding):
    """dL/dx of a convolution, by full convolutions of the zero-inserted G with flipped kernels.

    Shape: G (N, O, OH, OW), weight (O, C, K, K) -> (N, C, H, W).
    """
    n, c, h, w_ = input_shape
    out_channels, _, k, _ = weight.shape
    dilated = np.zeros(
        (n, out_channels, (G.shape[2] - 1) * stride + 1, (G.shape[3] - 1) * stride + 1)
    )
    dilated[:, :, ::stride, ::stride] = G  # s - 1 zeros between neighbours
    padded_h, padded_w = h + 2 * padding, w_ + 2 * padding
    grad_padded = np.zeros((n, c, padded_h, padded_w))
    for b in range(n):
        for ch in range(c):
            for o in range(out_channels):
                full = correlate2d(np.pad(dilated[b, o], k - 1), weight[o, ch, ::-1, ::-1])
                grad_padded[b, ch, : full.shape[0], : full.shape[1]] += full
    return grad_padded[:, :, padding : padding + h, padding : padding + w_]


def conv_weight_grad(x, G, kernel_size, stride, padding):
    """dL/dw of a convolution: correlations of the padded input with the zero-inserted G.

    Shape: x (N, C, H, W), G (N, O, OH, OW) -> (O, C, K, K).
    """
    x_padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    grad = np.zeros((G.shape[1], x.shape[1], kernel_size, kernel_size))
    for b in range(x.shape[0]):
        for o in range(G.shape[1]):
            dilated = np.zeros(((G.shape[2] - 1) * stride + 1, (G.shape[3] - 1) * stride + 1))
            dilated[::stride, ::stride] = G[b, o]
            for ch in range(x.shape[1]):
                grad[o, ch] += correlate2d(x_padded[b, ch], dilated)[:kernel_size, :kernel_size]
    return grad


for stride, padding in [(1, 0), (1, 1), (2, 1), (3, 2)]:
    layer = sc.Conv2d(3, 4, kernel_size=3, stride=stride, padding=padding, rng=rng)
    layer.astype(np.float64)
    x4 = rng.standard_normal((2, 3, 9, 9))
    out = layer.forward(x4, training=True)
    G4 = rng.standard_normal(out.shape)
    grad_x4 = layer.backward(G4)
    np.testing.assert_allclose(
        conv_input_grad(G4, layer.weight.data, x4.shape, stride, padding), grad_x4, atol=1e-10
    )
    np.testing.assert_allclose(
        conv_weight_grad(x4, G4, 3, stride, padding), layer.weight.grad, atol=1e-10
    )
    print(f"stride {stride}, padding {padding}: both formulas match Conv2d.backward")

# %% [markdown]
# ## Max pooling routes the gradient to the winners
#
# A 2x2 max pool keeps one input of each window. Its output moves only if that input moves, so
# the whole gradient of the output goes to the winner and every other input gets zero.

# %%
x_pool = rng.permutation(16).reshape(4, 4).astype(np.float64)  # distinct values: no ties
pool = sc.MaxPool2d(kernel_size=2, stride=2)
y_pool = pool.forward(x_pool[None, None], training=True)[0, 0]
G_pool = np.array([[1.0, -2.0], [3.0, 0.5]])
grad_pool = pool.backward(G_pool[None, None])[0, 0]

expected = np.zeros_like(x_pool)
for i in range(2):
    for j in range(2):
        window = x_pool[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
        u, v = np.unravel_index(window.argmax(), window.shape)
        expected[2 * i + u, 2 * j + v] = G_pool[i, j]
show_grids(
    {"input x": x_pool, "max-pooled y": y_pool, "G = dL/dy": G_pool, "dL/dx": grad_pool},
    "max pooling: each gradient goes to its window's winner",
)
np.testing.assert_array_equal(grad_pool, expected)
x_pool_batch = x_pool[None, None].copy()
numeric = numerical_gradient(
    lambda: float(np.sum(pool.forward(x_pool_batch) * G_pool)), x_pool_batch
)
np.testing.assert_allclose(numeric[0, 0], expected, atol=1e-8)
print("MaxPool2d.backward routes to the argmax, as finite differences confirm")

# %% [markdown]
# With overlapping windows (3x3, stride 2) one input can win several windows; its gradient is
# the **sum** of what each of them sends.

# %%
x_big = np.zeros((5, 5))
x_big[2, 2] = 10.0  # the centre wins all four windows
x_big += rng.uniform(0, 1, size=(5, 5))
overlap = sc.MaxPool2d(kernel_size=3, stride=2)
overlap.forward(x_big[None, None], training=True)
G_overlap = np.array([[1.0, 2.0], [3.0, 4.0]])
grad_overlap = overlap.backward(G_overlap[None, None])[0, 0]
show_grids({"input x": x_big, "G": G_overlap, "dL/dx": grad_overlap}, "overlapping windows add up")
assert grad_overlap[2, 2] == G_overlap.sum() and np.count_nonzero(grad_overlap) == 1

# %% [markdown]
# ## Average pooling spreads it evenly
#
# Each input is $1/K^2$ of its window's mean, so each receives $G_{ij} / K^2$ from every
# window that holds it.

# %%
avg = sc.AvgPool2d(kernel_size=2, stride=2)
avg.forward(x_pool[None, None], training=True)
grad_avg = avg.backward(G_pool[None, None])[0, 0]
show_grids({"G": G_pool, "dL/dx": grad_avg}, "average pooling: G / 4 to every input of the window")
np.testing.assert_allclose(grad_avg, np.kron(G_pool, np.ones((2, 2))) / 4)

# %% [markdown]
# Next: [training the seed CNN on CIFAR-10](03_training_cifar10.py), where these backward passes
# run a few hundred thousand times.
