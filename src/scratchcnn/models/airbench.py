"""The airbench network (Keller Jordan, github.com/KellerJordan/cifar10-airbench)."""

from __future__ import annotations

import numpy as np

from scratchcnn import layers as L
from scratchcnn.models._common import check_common, check_int_tuple, scaled

WHITENING_KERNEL = 2  # 2x2 patches: whitening acts on the covariance of 2x2 pixel patches
BN_EPS = 1e-12
# torch-style momentum (weight of the new batch statistics); airbench writes it as 1 - 0.6.
BN_MOMENTUM = 0.4
LOGIT_SCALE = 1 / 9  # airbench's scaling_factor: no bias or temperature on the logits
# Weights are drawn as PyTorch draws them, U(+-1/sqrt(fan_in)): airbench's learning rates are
# tuned for that scale. He's normal init is sqrt(6) times larger, and behind batch norm a
# larger weight is a smaller effective step (lr / |w|^2): the recipe would train far slower.
WEIGHT_INIT = "torch_default"


def _batch_norm(channels: int, dtype: type) -> L.BatchNorm2d:
    """Batch norm with the scale frozen at 1: only the shift trains (as in airbench)."""
    norm = L.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM, dtype=dtype)
    norm.weight.requires_grad = False
    return norm


def _identity_init(conv: L.Conv2d) -> None:
    """Make the first ``in_channels`` filters pass their input channel through unchanged.

    airbench's ``dirac_`` initialisation of ``weight[:in_channels]``: an implicit residual
    connection at the start of training. The other filters keep their random values.
    """
    weight = conv.weight.data  # (out, in, kh, kw)
    identity = min(conv.in_channels, conv.out_channels)
    weight[:identity] = 0
    centre_h, centre_w = weight.shape[2] // 2, weight.shape[3] // 2
    weight[np.arange(identity), np.arange(identity), centre_h, centre_w] = 1


def conv_group(
    in_channels: int,
    out_channels: int,
    rng: np.random.Generator,
    dtype: type,
    identity_init: bool,
) -> L.Sequential:
    """conv 3x3 -> max-pool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU (airbench's ConvGroup).

    Convolutions have same padding and no bias; the batch norms are :func:`_batch_norm`.

    Shape: ``(N, in_channels, H, W) -> (N, out_channels, H // 2, W // 2)``.
    """
    conv1, conv2 = (
        L.Conv2d(
            c, out_channels, 3, padding="same", bias=False, init=WEIGHT_INIT, rng=rng, dtype=dtype
        )
        for c in (in_channels, out_channels)
    )
    if identity_init:
        _identity_init(conv1)
        _identity_init(conv2)
    return L.Sequential(
        conv1,
        L.MaxPool2d(2),
        _batch_norm(out_channels, dtype),
        L.GELU(),
        conv2,
        _batch_norm(out_channels, dtype),
        L.GELU(),
    )


def airbench(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    rng: np.random.Generator | None = None,
    dtype: type = np.float32,
    width: float = 1.0,
    widths: tuple[int, int, int] = (64, 128, 128),
    identity_init: bool = True,
) -> L.Sequential:
    """The airbench CIFAR-10 network (airbench93's widths by default; airbench94 uses 64/256/256).

    A 2x2 whitening conv ``in_channels -> 2 * in_channels * 4`` (24 for RGB; padding 0, with
    bias) -> GELU, three :func:`conv_group` blocks of ``widths`` channels (times ``width``),
    MaxPool2d(3) -> Flatten -> Linear without bias -> x 1/9. Batch norms use eps 1e-12 and
    momentum 0.4 (airbench's 0.6 counted the other way round), their scales frozen at 1.

    airbench initialises the whitening conv from the training images' patch covariance (its
    eigenvectors and their negatives) and freezes its weight; here it is an ordinary trainable
    conv with random weights until such an initialisation is applied. With ``identity_init``
    each 3x3 conv starts as an identity on its first ``in_channels`` filters, as in airbench.
    Every other weight is drawn as PyTorch draws it (``torch_default``, see ``WEIGHT_INIT``).

    For 32x32 RGB inputs and 10 classes: 569,656 parameters (569,016 trainable: the 640
    batch-norm scales are frozen), of which 312 in the whitening conv.

    Shape: ``(N, in_channels, image_size, image_size) -> (N, num_classes)`` logits.

    ``rng`` draws the initial weights (``None``: a fresh generator) and ``dtype`` is the
    parameters' dtype, as for every builder of :data:`MODELS`.
    """
    check_common("airbench", num_classes, in_channels, image_size, width)
    widths = check_int_tuple("airbench", "widths", widths, length=3)
    if not isinstance(identity_init, bool):
        raise ValueError(f"airbench: identity_init must be a bool, got {identity_init!r}")
    # The whitening conv takes one pixel off; three 2x2 pools then need a 3x3 grid for the last
    # 3x3 max-pool: image_size - 1 >= 3 * 2**3.
    grid = (image_size - WHITENING_KERNEL + 1) // 8
    if grid < 3:
        raise ValueError(
            f"airbench: image_size must be >= 25 (a 3x3 grid after the three "
            f"groups), got {image_size}"
        )
    rng = rng if rng is not None else np.random.default_rng(0)
    c1, c2, c3 = (scaled(c, width) for c in widths)
    whiten_width = 2 * in_channels * WHITENING_KERNEL**2
    features = c3 * (grid // 3) ** 2
    return L.Sequential(
        L.Conv2d(
            in_channels,
            whiten_width,
            WHITENING_KERNEL,
            padding=0,
            init=WEIGHT_INIT,
            rng=rng,
            dtype=dtype,
        ),
        L.GELU(),
        conv_group(whiten_width, c1, rng, dtype, identity_init),
        conv_group(c1, c2, rng, dtype, identity_init),
        conv_group(c2, c3, rng, dtype, identity_init),
        L.MaxPool2d(3),
        L.Flatten(),
        L.Linear(features, num_classes, bias=False, init=WEIGHT_INIT, rng=rng, dtype=dtype),
        L.Scale(LOGIT_SCALE),
    )
