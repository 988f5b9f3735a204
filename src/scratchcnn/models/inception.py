"""A small GoogLeNet-style network built from Inception modules."""

from __future__ import annotations

import numpy as np

from scratchcnn import layers as L
from scratchcnn.models._common import check_common, conv_bn_relu, scaled

# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) output channels per module: GoogLeNet's
# pattern (the 3x3 branch widest, the 5x5 branch narrow and behind a strong reduction) at a
# fraction of its width, for 32x32 images.
MODULES = (
    (32, 32, 48, 8, 16, 16),  # 64 -> 112 channels, on the full grid
    (48, 48, 64, 12, 24, 24),  # 112 -> 160, after the first 2x2 max-pool
    (64, 64, 96, 16, 32, 32),  # 160 -> 224, after the second
)


def inception_module(
    in_channels: int,
    channels: tuple[int, int, int, int, int, int],
    rng: np.random.Generator,
    dtype: type,
) -> L.Concat:
    """Four branches side by side, concatenated on channels (Szegedy et al. 2015, figure 2b).

    ``channels = (c1, c3_reduce, c3, c5_reduce, c5, pool_proj)``: a 1x1 conv; a 1x1 reduction
    then a 3x3 conv; a 1x1 reduction then a 5x5 conv; a 3x3 stride-1 max-pool then a 1x1
    projection. Every conv is followed by BatchNorm2d and ReLU (as in BN-Inception) and keeps
    the grid, so the branches line up.

    Shape: ``(N, in_channels, H, W) -> (N, c1 + c3 + c5 + pool_proj, H, W)``.
    """
    c1, c3_reduce, c3, c5_reduce, c5, pool_proj = channels
    return L.Concat(
        L.Sequential(*conv_bn_relu(in_channels, c1, 1, rng, dtype)),
        L.Sequential(
            *conv_bn_relu(in_channels, c3_reduce, 1, rng, dtype),
            *conv_bn_relu(c3_reduce, c3, 3, rng, dtype),
        ),
        L.Sequential(
            *conv_bn_relu(in_channels, c5_reduce, 1, rng, dtype),
            *conv_bn_relu(c5_reduce, c5, 5, rng, dtype),
        ),
        L.Sequential(
            L.MaxPool2d(3, stride=1, padding=1),
            *conv_bn_relu(in_channels, pool_proj, 1, rng, dtype),
        ),
    )


def inception(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    rng: np.random.Generator | None = None,
    dtype: type = np.float32,
    width: float = 1.0,
    dropout: float = 0.2,
) -> L.Sequential:
    """A small GoogLeNet for CIFAR: a 3x3 stem and three Inception modules.

    stem conv 3x3 (64) -> BN -> ReLU -> Inception (112 channels) -> max-pool 2 -> Inception
    (160) -> max-pool 2 -> Inception (224) -> global average pool -> Dropout -> Linear. Each
    module is :func:`inception_module` with the channels of :data:`MODULES` (times ``width``).
    174,002 parameters for 32x32 RGB inputs and 10 classes.

    Shape: ``(N, in_channels, image_size, image_size) -> (N, num_classes)`` logits.

    ``rng`` draws the initial weights (``None``: a fresh generator) and ``dtype`` is the
    parameters' dtype, as for every builder of :data:`MODELS`. ``dropout`` is the drop probability
    before the classifier.
    """
    check_common("inception", num_classes, in_channels, image_size, width)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"inception: dropout must be a probability in [0, 1), got {dropout!r}")
    if image_size < 4:
        raise ValueError(f"inception: two 2x2 max-pools need image_size >= 4, got {image_size}")
    rng = rng if rng is not None else np.random.default_rng(0)
    stem = scaled(64, width)
    modules = [tuple(scaled(c, width) for c in module) for module in MODULES]
    outs = [c1 + c3 + c5 + pool for c1, _, c3, _, c5, pool in modules]
    return L.Sequential(
        *conv_bn_relu(in_channels, stem, 3, rng, dtype),
        inception_module(stem, modules[0], rng, dtype),
        L.MaxPool2d(2),
        inception_module(outs[0], modules[1], rng, dtype),
        L.MaxPool2d(2),
        inception_module(outs[1], modules[2], rng, dtype),
        L.GlobalAvgPool2d(),
        L.Dropout(dropout, rng=rng),
        L.Linear(outs[2], num_classes, rng=rng, dtype=dtype),
    )
