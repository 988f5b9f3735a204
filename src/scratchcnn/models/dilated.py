"""A network that grows its receptive field with dilated convolutions instead of pooling."""

from __future__ import annotations

import numpy as np

from scratchcnn import layers as L
from scratchcnn.layers.base import Layer
from scratchcnn.models._common import check_common, check_int_tuple, conv_bn_relu, scaled


def dilated(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    rng: np.random.Generator | None = None,
    dtype: type = np.float32,
    width: float = 1.0,
    dilations: tuple[int, ...] = (1, 2, 4, 8),
) -> L.Sequential:
    """Dilated convolutions on the full grid (the context module of Yu & Koltun 2016).

    A 3x3 stem (32 channels), then one 3x3 conv with 48 channels per entry of ``dilations``
    (same padding, so the grid never shrinks), each -> BatchNorm2d -> ReLU; then global average
    pooling -> Linear. A 3x3 conv with dilation ``d`` widens the receptive field by ``2 d``, so
    the default dilations 1, 2, 4, 8 reach ``3 + 2 (1 + 2 + 4 + 8) = 33`` pixels, the whole
    32x32 image, with no pooling and a constant cost per layer. Channels are multiplied by
    ``width``. 77,834 parameters for 32x32 RGB inputs and 10 classes.

    Shape: ``(N, in_channels, image_size, image_size) -> (N, num_classes)`` logits.

    ``rng`` draws the initial weights (``None``: a fresh generator) and ``dtype`` is the
    parameters' dtype, as for every builder of :data:`MODELS`.
    """
    check_common("dilated", num_classes, in_channels, image_size, width)
    dilations = check_int_tuple("dilated", "dilations", dilations)
    rng = rng if rng is not None else np.random.default_rng(0)
    stem, c = scaled(32, width), scaled(48, width)
    layers: list[Layer] = conv_bn_relu(in_channels, stem, 3, rng, dtype)
    c_in = stem
    for dilation in dilations:
        layers += conv_bn_relu(c_in, c, 3, rng, dtype, dilation=dilation)
        c_in = c
    layers += [L.GlobalAvgPool2d(), L.Linear(c, num_classes, rng=rng, dtype=dtype)]
    return L.Sequential(*layers)
