"""Weight initialisation, always drawing from a ``numpy.random.Generator`` that is passed in.

Random initialisers (``he``, ``xavier``, ``torch_default``, ``small_normal``, ``orthogonal``,
``partial_dirac``)
and deterministic ones (``zeros``, ``dirac``) return a new array for a weight shape;
:func:`initialize` picks one by name, which is what ``Conv2d(..., init=...)`` and
``Linear(..., init=...)`` call. Patch whitening needs data, so it is a separate step after the
layer is built: :func:`init_patch_whitening`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

if TYPE_CHECKING:  # only for the type hint: layers import this module, not the other way
    from scratchcnn.layers.conv import Conv2d

INITIALIZERS = (
    "he",
    "xavier",
    "torch_default",
    "small_normal",
    "zeros",
    "orthogonal",
    "dirac",
    "partial_dirac",
)
SMALL_NORMAL_STD = 0.01  # the fixed scale of the 2012-era default (AlexNet, Caffe's examples)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight: ``(in * kh * kw, out * kh * kw)`` for a conv kernel.

    Args:
        shape: the weight's shape.

    Shape: ``(out, in)`` or ``(out, in, kh, kw)``.
    """
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def he_normal(shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """He/Kaiming normal: ``N(0, 2 / fan_in)``, which keeps ReLU activations' variance steady.

    Args:
        shape: the weight's shape, ``(out, in)`` or ``(out, in, kh, kw)``; fans are read from it.
        rng: the generator the values are drawn from.
        dtype (type): dtype of the returned array.
    """
    fan_in, _ = fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def xavier_uniform(
    shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """Xavier/Glorot uniform: ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``.

    Args:
        shape: the weight's shape, ``(out, in)`` or ``(out, in, kh, kw)``; fans are read from it.
        rng: the generator the values are drawn from.
        dtype (type): dtype of the returned array.
    """
    fan_in, fan_out = fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def torch_default(shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """PyTorch's default ``nn.Conv2d``/``nn.Linear`` weight: ``U(-a, a)``, ``a = 1 / sqrt(fan_in)``.

    That is ``kaiming_uniform_(w, a=sqrt(5))``: gain ``sqrt(2 / (1 + 5))``, bound
    ``gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)``; the variance ``1 / (3 fan_in)`` is a sixth
    of He's. Networks tuned in PyTorch (airbench) assume this scale.

    Args:
        shape: the weight's shape, ``(out, in)`` or ``(out, in, kh, kw)``; fans are read from it.
        rng: the generator the values are drawn from.
        dtype (type): dtype of the returned array.
    """
    fan_in, _ = fans(shape)
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def small_normal(
    shape: tuple[int, ...], rng: np.random.Generator, dtype: type = np.float32
) -> np.ndarray:
    """``N(0, 0.01^2)`` whatever the layer's size: the 2012-era default (Krizhevsky et al.).

    The scale ignores the fan-in, so each layer multiplies the activations' standard deviation
    by about ``0.01 * sqrt(fan_in)`` (0.16 for a 3x3 conv over 32 channels): in a deep
    network the signal, and with it the gradient, shrinks layer after layer. He and Xavier
    initialisation choose the scale from the fan-in to avoid exactly that.

    Args:
        shape: the weight's shape.
        rng: the random generator.
        dtype: the weight's dtype.
    """
    return (rng.standard_normal(shape) * SMALL_NORMAL_STD).astype(dtype)


def zeros(shape: tuple[int, ...], rng: np.random.Generator | None = None, dtype=np.float32):
    """All zeros (biases, or a layer you want to start as the identity's complement).

    Args:
        shape: the array's shape.
        rng: unused (every initializer takes one, so they are interchangeable).
        dtype (type): dtype of the returned array.
    """
    return np.zeros(shape, dtype=dtype)


def orthogonal(
    shape: tuple[int, ...], rng: np.random.Generator, gain: float = 1.0, dtype=np.float32
) -> np.ndarray:
    """A (semi-)orthogonal weight, as ``torch.nn.init.orthogonal_`` (Saxe et al., 2014).

    The weight is viewed as a matrix ``W`` of ``rows = out`` by ``cols = in * kh * kw``. A
    Gaussian matrix ``A`` (transposed first when ``rows < cols``, so that it is tall) is
    factored as ``A = Q R``; multiplying each column of ``Q`` by ``sign(R_jj)`` makes the result
    uniformly (Haar) distributed rather than biased by the QR algorithm's sign convention. Then::

        W W^T = gain^2 I   (rows <= cols: orthonormal rows)
        W^T W = gain^2 I   (rows >= cols: orthonormal columns)

    Args:
        rng: the generator of the Gaussian matrix.
        dtype (type): dtype of the returned array.

    Shape: ``(out, in)`` or ``(out, in, kh, kw)``; returns that shape.
    """
    if len(shape) < 2:
        raise ValueError(f"orthogonal init needs a weight with >= 2 dimensions, got shape {shape}")
    if not math.isfinite(gain):
        raise ValueError(f"orthogonal init: gain must be a finite number, got {gain}")
    rows = shape[0]
    cols = math.prod(shape[1:])
    flat = rng.standard_normal((rows, cols))  # (rows, cols)
    if rows < cols:
        flat = flat.T  # (cols, rows): QR of a tall matrix gives orthonormal columns
    q, r = np.linalg.qr(flat)  # q (max, min), r (min, min)
    q *= np.sign(np.diag(r))  # each column times the sign of its R diagonal entry
    if rows < cols:
        q = q.T  # (rows, cols) with orthonormal rows
    return (gain * q).reshape(shape).astype(dtype)


def dirac(
    shape: tuple[int, ...],
    rng: np.random.Generator | None = None,
    dtype=np.float32,
    groups: int = 1,
) -> np.ndarray:
    """The identity convolution, as ``torch.nn.init.dirac_``: a 1 at each kernel's centre.

    For each group ``g`` of ``out // groups`` filters and ``d < min(out // groups, in)``::

        W[g * (out // groups) + d, d, kh // 2, kw // 2] = 1,   every other entry 0

    so with ``padding="same"`` and ``out == in`` the convolution returns its input; with
    ``out > in`` the first ``in`` filters copy the input channels and the rest output zero.

    Args:
        rng: unused (every initializer takes one, so they are interchangeable).
        dtype (type): dtype of the returned array.

    Shape: ``(out, in, kh, kw)`` (any conv weight with 3 to 5 dimensions); returns that shape.
    """
    if not 3 <= len(shape) <= 5:
        raise ValueError(
            f"dirac init needs a conv weight (out, in, *kernel) with 3 to 5 dimensions, "
            f"got shape {shape}"
        )
    if groups < 1 or shape[0] % groups != 0:
        raise ValueError(
            f"dirac init: groups must be >= 1 and divide out_channels={shape[0]}, got {groups}"
        )
    weight = np.zeros(shape, dtype=dtype)
    out_per_group = shape[0] // groups
    identity = np.arange(min(out_per_group, shape[1]))  # the channels each group copies
    centre = tuple(size // 2 for size in shape[2:])
    for group in range(groups):
        weight[(group * out_per_group + identity, identity, *centre)] = 1
    return weight


def partial_dirac(shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """PyTorch's default init, then the first ``min(out, in)`` filters set to the identity.

    airbench's "partial identity" initialisation of its 3x3 convolutions
    (``torch.nn.init.dirac_(w[:in_channels])`` after the default init): the layer starts as a
    residual-like map (its first ``in`` outputs pass the input through unchanged) plus random
    features, drawn by :func:`torch_default`, in the remaining filters.

    Args:
        rng: the generator of the random filters.
        dtype (type): dtype of the returned array.

    Shape: ``(out, in, kh, kw)``; returns that shape.
    """
    weight = torch_default(shape, rng, dtype)
    kept = min(shape[0], shape[1])
    weight[:kept] = dirac((kept, *shape[1:]), dtype=dtype)
    return weight


def initialize(
    name: str, shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """Draw a weight by initializer name: one of :data:`INITIALIZERS`.

    ``"he"``, ``"xavier"``, ``"torch_default"``, ``"small_normal"`` (``N(0, 0.01^2)``),
    ``"zeros"``, ``"orthogonal"`` (gain 1),
    ``"dirac"`` (identity filters, zeros elsewhere) or ``"partial_dirac"`` (PyTorch's default
    plus identity filters).

    Args:
        name: the initializer.
        shape: the weight's shape.
        rng: the generator the values are drawn from.
        dtype (type): dtype of the returned array.
    """
    if name == "he":
        return he_normal(shape, rng, dtype)
    if name == "xavier":
        return xavier_uniform(shape, rng, dtype)
    if name == "torch_default":
        return torch_default(shape, rng, dtype)
    if name == "small_normal":
        return small_normal(shape, rng, dtype)
    if name == "zeros":
        return zeros(shape, rng, dtype)
    if name == "orthogonal":
        return orthogonal(shape, rng, dtype=dtype)
    if name == "dirac":
        return dirac(shape, rng, dtype)
    if name == "partial_dirac":
        return partial_dirac(shape, rng, dtype)
    raise ValueError(f"init must be one of {INITIALIZERS}, got {name!r}")


# --- patch whitening --------------------------------------------------------------------------

# Patch rows held in memory at once while accumulating the covariance (about 32 MB in float64
# for 2x2x3 patches): 5,000 CIFAR images give 4.8 million patches, too many to copy at once.
_PATCH_CHUNK_ROWS = 1 << 18


def patch_second_moment(images: np.ndarray, kernel_size: tuple[int, int]) -> np.ndarray:
    """The uncentred covariance ``S = (1 / P) sum_p v_p v_p^T`` of all ``kh x kw`` patches.

    Every stride-1 window of every image (``P = N * (H - kh + 1) * (W - kw + 1)`` patches) is
    flattened in the order ``(c, i, j)``, the order of a conv weight's ``(in, kh, kw)`` axes, so
    ``S`` lives in the same space as a flattened filter. It is accumulated in float64, a chunk
    of images at a time.

    Args:
        images: normalised images.
        kernel_size: ``(kh, kw)`` of the patches.

    Shape: ``images (N, C, H, W)`` -> ``(C * kh * kw, C * kh * kw)`` float64.
    """
    if images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"patch whitening expects float (N, C, H, W) images, got {images.dtype} {images.shape}"
        )
    n, channels, height, width = images.shape
    kh, kw = kernel_size
    if n == 0 or height < kh or width < kw:
        raise ValueError(
            f"patch whitening needs at least one image of at least {kh}x{kw} pixels, got "
            f"images of shape {images.shape}"
        )
    dim = channels * kh * kw
    per_image = (height - kh + 1) * (width - kw + 1)
    chunk = max(1, _PATCH_CHUNK_ROWS // per_image)
    moment = np.zeros((dim, dim))
    for start in range(0, n, chunk):
        batch = images[start : start + chunk]
        # (n, C, OH, OW, kh, kw) view -> (n, OH, OW, C, kh, kw) -> one row per patch
        windows = sliding_window_view(batch, (kh, kw), axis=(2, 3))
        patches = windows.transpose(0, 2, 3, 1, 4, 5).reshape(-1, dim).astype(np.float64)
        moment += patches.T @ patches
    return moment / (n * per_image)


def patch_whitening(
    shape: tuple[int, ...], images: np.ndarray, eps: float = 5e-4, dtype=np.float32
) -> np.ndarray:
    """Filters that whiten the ``kh x kw`` patches of ``images`` (airbench's first layer).

    With ``S = V diag(lambda) V^T`` the patches' uncentred covariance
    (:func:`patch_second_moment`, eigenvalues in decreasing order), filter ``k`` is eigenvector
    ``v_k`` scaled by ``1 / sqrt(lambda_k + eps)``: ``W = diag(lambda + eps)^(-1/2) V^T``. Its
    outputs ``W v`` on the patches then have covariance::

        W S W^T = diag(lambda_k / (lambda_k + eps))   ~ I   (exactly I when eps = 0)

    so every output channel has unit second moment and no two are correlated; ``eps`` keeps the
    directions of near-zero variance (noise) from being blown up. With ``out = 2 * d``
    (``d = C * kh * kw``) the second half holds the negated filters, so that a following ReLU
    or GELU keeps both signs of each whitened component. The covariance is uncentred (as in
    airbench): on normalised images, whose mean is about zero, it is the covariance.

    Args:
        shape: the conv weight's shape ``(out, C, kh, kw)`` with ``out`` equal to ``d`` or
            ``2 * d``.
        images: training images, normalised as the network will see them.
        eps: added to each eigenvalue before the inverse square root, ``>= 0``.
        dtype (type): dtype of the returned weight.

    Shape: ``images (N, C, H, W)`` -> weight ``(out, C, kh, kw)``.
    """
    if len(shape) != 4:
        raise ValueError(f"patch whitening needs a conv weight (out, C, kh, kw), got {shape}")
    out_channels, channels, kh, kw = shape
    dim = channels * kh * kw
    if out_channels not in (dim, 2 * dim):
        raise ValueError(
            f"patch whitening of {channels}x{kh}x{kw} patches makes {dim} filters (or {2 * dim} "
            f"with their negatives), but the weight has out_channels={out_channels}"
        )
    if images.ndim != 4 or images.shape[1] != channels:
        raise ValueError(
            f"patch whitening for a weight with {channels} input channels expects images "
            f"(N, {channels}, H, W), got shape {images.shape}"
        )
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"patch whitening: eps must be a finite number >= 0, got {eps}")
    moment = patch_second_moment(images, (kh, kw))
    eigenvalues, eigenvectors = np.linalg.eigh(moment)  # ascending; columns are eigenvectors
    eigenvalues = np.maximum(eigenvalues[::-1], 0.0)  # descending; clip round-off below 0
    eigenvectors = eigenvectors[:, ::-1]
    if np.any(eigenvalues + eps <= 0.0):
        raise ValueError(
            "patch whitening: the patch covariance is singular (some direction has zero "
            "variance, e.g. constant images); use eps > 0"
        )
    filters = eigenvectors.T / np.sqrt(eigenvalues + eps)[:, None]  # (d, d): row k is v_k / s_k
    if out_channels == 2 * dim:
        filters = np.concatenate([filters, -filters])  # (2d, d)
    return filters.reshape(shape).astype(dtype)


def init_patch_whitening(conv: Conv2d, images: np.ndarray, eps: float = 5e-4) -> None:
    """Fill ``conv.weight`` in place with :func:`patch_whitening` filters from ``images``.

    The weight keeps its dtype; the bias (if any) is left as it is. airbench then freezes the
    weight (``conv.weight.requires_grad = False``) and trains only the bias for a few epochs.

    Args:
        conv: the convolution whose weight is set.
        images: training images, normalised as the network will see them.
        eps: added to each eigenvalue before the inverse square root.

    Shape: ``images (N, in_channels, H, W)``; ``conv.weight (out, in_channels, kh, kw)``.
    """
    weight = getattr(conv, "weight", None)
    data = getattr(weight, "data", None)
    if not isinstance(data, np.ndarray) or data.ndim != 4:
        raise TypeError(
            f"init_patch_whitening expects a Conv2d (a layer whose weight is (out, in, kh, kw)), "
            f"got {type(conv).__name__}"
        )
    data[...] = patch_whitening(data.shape, images, eps, data.dtype)
