"""Residual networks: the CIFAR ResNets of He et al. 2016 and the DAWNBench ResNet-9."""

from __future__ import annotations

import numpy as np

from scratchcnn import layers as L
from scratchcnn.layers.base import Layer
from scratchcnn.models._common import check_choice, check_common, conv_bn_relu, scaled

SHORTCUTS = ("padding", "projection")


def basic_block(
    in_channels: int,
    out_channels: int,
    stride: int,
    shortcut: str,
    rng: np.random.Generator,
    dtype: type,
) -> L.Sequential:
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``, the basic block of He et al. 2016.

    Both convolutions are 3x3 without bias; the first one has ``stride``. Where the shape
    changes, the shortcut is ``"padding"`` (option A: :class:`~scratchcnn.layers.ChannelPad`,
    no parameters) or ``"projection"`` (option B: 1x1 conv with ``stride`` -> BatchNorm2d);
    elsewhere it is the identity.

    Shape: ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """
    body = L.Sequential(
        *conv_bn_relu(in_channels, out_channels, 3, rng, dtype, stride=stride),
        L.Conv2d(out_channels, out_channels, 3, padding=1, bias=False, rng=rng, dtype=dtype),
        L.BatchNorm2d(out_channels, dtype=dtype),
    )
    skip: Layer | None = None
    if stride != 1 or in_channels != out_channels:
        if shortcut == "padding":
            skip = L.ChannelPad(in_channels, out_channels, stride)
        else:
            skip = L.Sequential(
                L.Conv2d(
                    in_channels, out_channels, 1, stride=stride, bias=False, rng=rng, dtype=dtype
                ),
                L.BatchNorm2d(out_channels, dtype=dtype),
            )
    return L.Sequential(L.Residual(body, skip), L.ReLU())


def cifar_resnet(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    rng: np.random.Generator | None = None,
    dtype: type = np.float32,
    width: float = 1.0,
    depth: int = 20,
    shortcut: str = "padding",
) -> L.Sequential:
    """The CIFAR-10 ResNet of He et al. 2016 (section 4.2) with ``depth = 6n + 2`` layers.

    3x3 conv (16 channels) -> BatchNorm2d -> ReLU, then three stages of ``n`` basic blocks with
    16, 32 and 64 channels (times ``width``); the first block of stages 2 and 3 halves the grid
    with stride 2. Then global average pooling -> Linear. ``shortcut`` is ``"padding"`` (option
    A, the paper's CIFAR choice) or ``"projection"`` (option B), used where the shape changes.

    For 32x32 RGB inputs and 10 classes, with padding shortcuts: ResNet-8 has 75,290
    parameters, ResNet-20 269,722 and ResNet-32 464,154 (the paper's 0.27M and 0.46M).
    Projection shortcuts add 2,752 (two 1x1 convs with batch norm).

    Shape: ``(N, in_channels, image_size, image_size) -> (N, num_classes)`` logits.

    ``rng`` draws the initial weights (``None``: a fresh generator) and ``dtype`` is the
    parameters' dtype, as for every builder of :data:`MODELS`.
    """
    check_common("resnet", num_classes, in_channels, image_size, width)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"resnet: depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), "
            f"got {depth!r}"
        )
    check_choice("resnet", "shortcut", shortcut, SHORTCUTS)
    rng = rng if rng is not None else np.random.default_rng(0)
    blocks_per_stage = (depth - 2) // 6
    widths = [scaled(c, width) for c in (16, 32, 64)]
    layers: list[Layer] = conv_bn_relu(in_channels, widths[0], 3, rng, dtype)
    c_in = widths[0]
    for stage, c_out in enumerate(widths):
        for index in range(blocks_per_stage):
            stride = 2 if stage > 0 and index == 0 else 1
            layers.append(basic_block(c_in, c_out, stride, shortcut, rng, dtype))
            c_in = c_out
    layers += [L.GlobalAvgPool2d(), L.Linear(c_in, num_classes, rng=rng, dtype=dtype)]
    return L.Sequential(*layers)


def resnet9(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    rng: np.random.Generator | None = None,
    dtype: type = np.float32,
    width: float = 1.0,
) -> L.Sequential:
    """The DAWNBench ResNet-9 (Myrtle.ai, "How to train your ResNet", Page 2018).

    prep: conv 64 -> layer1: conv 128, max-pool 2, residual(conv 128, conv 128) -> layer2:
    conv 256, max-pool 2 -> layer3: conv 512, max-pool 2, residual(conv 512, conv 512) ->
    global max pool -> Linear without bias -> x 0.125. Every conv is 3x3 (same padding, no
    bias) -> BatchNorm2d -> ReLU; the residuals add the input to two such convs. Widths are
    multiplied by ``width``. 6,573,120 parameters for 32x32 RGB inputs and 10 classes.

    Shape: ``(N, in_channels, image_size, image_size) -> (N, num_classes)`` logits.

    ``rng`` draws the initial weights (``None``: a fresh generator) and ``dtype`` is the
    parameters' dtype, as for every builder of :data:`MODELS`.
    """
    check_common("resnet9", num_classes, in_channels, image_size, width)
    if image_size < 8:
        raise ValueError(f"resnet9: three 2x2 max-pools need image_size >= 8, got {image_size}")
    rng = rng if rng is not None else np.random.default_rng(0)
    c1, c2, c3, c4 = (scaled(c, width) for c in (64, 128, 256, 512))

    def residual(c: int) -> L.Residual:
        return L.Residual(
            L.Sequential(*conv_bn_relu(c, c, 3, rng, dtype), *conv_bn_relu(c, c, 3, rng, dtype))
        )

    return L.Sequential(
        *conv_bn_relu(in_channels, c1, 3, rng, dtype),
        *conv_bn_relu(c1, c2, 3, rng, dtype),
        L.MaxPool2d(2),
        residual(c2),
        *conv_bn_relu(c2, c3, 3, rng, dtype),
        L.MaxPool2d(2),
        *conv_bn_relu(c3, c4, 3, rng, dtype),
        L.MaxPool2d(2),
        residual(c4),
        L.GlobalMaxPool2d(),
        L.Linear(c4, num_classes, bias=False, rng=rng, dtype=dtype),
        L.Scale(0.125),
    )
