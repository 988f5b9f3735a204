"""A VGG-style network: blocks of same-size convolutions with batch norm, pooling and dropout."""

from __future__ import annotations

import numpy as np

from scratchcnn import layers as L
from scratchcnn.layers.base import Layer
from scratchcnn.models._common import (
    check_choice,
    check_common,
    check_int_tuple,
    conv_bn_relu,
    scaled,
)

POOLS = ("max", "avg")


def vgg(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    rng: np.random.Generator | None = None,
    dtype: type = np.float32,
    width: float = 1.0,
    channels: tuple[int, ...] = (64, 128, 256),
    convs_per_block: int = 2,
    kernel_size: int = 3,
    pointwise: bool = False,
    pool: str = "max",
    global_pool: bool = True,
    dropout: float = 0.25,
    batch_norm: bool = True,
) -> L.Sequential:
    """VGG-style CNN (Simonyan & Zisserman 2015) with batch norm and dropout, sized for CIFAR.

    Each block: ``convs_per_block`` x (conv ``kernel_size`` x ``kernel_size``, same padding, no
    bias -> BatchNorm2d -> ReLU), then, with ``pointwise``, a 1x1 conv -> BatchNorm2d -> ReLU
    that mixes channels (as in Network in Network), then a 2x2 ``pool`` ("max" or "avg") that
    halves the grid, then Dropout(``dropout``). One block per entry of ``channels`` (times
    ``width``). The head is global average pooling -> Linear (``global_pool``), or Flatten ->
    Linear over the whole last grid. ``batch_norm=False`` drops every BatchNorm2d (each conv
    then has a bias), for ablations.

    The default (3 blocks of 64/128/256 channels, 3x3, max-pool, global pool) has 1,148,874
    parameters for 32x32 RGB inputs and 10 classes; ``kernel_size=5`` makes it 3,183,562.

    Shape: ``(N, in_channels, image_size, image_size) -> (N, num_classes)`` logits.

    ``rng`` draws the initial weights (``None``: a fresh generator) and ``dtype`` is the
    parameters' dtype, as for every builder of :data:`MODELS`.
    """
    check_common("vgg", num_classes, in_channels, image_size, width)
    channels = check_int_tuple("vgg", "channels", channels)
    convs_per_block = check_int_tuple("vgg", "convs_per_block", (convs_per_block,))[0]
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, int)
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise ValueError(
            f"vgg: kernel_size must be an odd int >= 1 (e.g. 3 or 5), got {kernel_size!r}"
        )
    check_choice("vgg", "pool", pool, POOLS)
    for name, flag in (
        ("pointwise", pointwise),
        ("global_pool", global_pool),
        ("batch_norm", batch_norm),
    ):
        if not isinstance(flag, bool):
            raise ValueError(f"vgg: {name} must be a bool, got {flag!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"vgg: dropout must be a probability in [0, 1), got {dropout!r}")
    grid = image_size // 2 ** len(channels)
    if grid < 1:
        raise ValueError(
            f"vgg: {len(channels)} blocks halve the grid {len(channels)} times; image_size must "
            f"be >= {2 ** len(channels)}, got {image_size}"
        )
    rng = rng if rng is not None else np.random.default_rng(0)
    pool_layer = L.MaxPool2d if pool == "max" else L.AvgPool2d
    layers: list[Layer] = []
    c_in = in_channels
    for c in (scaled(c, width) for c in channels):
        for _ in range(convs_per_block):
            layers += conv_bn_relu(c_in, c, kernel_size, rng, dtype, batch_norm=batch_norm)
            c_in = c
        if pointwise:
            layers += conv_bn_relu(c, c, 1, rng, dtype, batch_norm=batch_norm)
        layers += [pool_layer(2), L.Dropout(dropout, rng=rng)]
    if global_pool:
        layers += [L.GlobalAvgPool2d(), L.Linear(c_in, num_classes, rng=rng, dtype=dtype)]
    else:
        layers += [L.Flatten(), L.Linear(c_in * grid * grid, num_classes, rng=rng, dtype=dtype)]
    return L.Sequential(*layers)
