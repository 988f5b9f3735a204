"""The seed write-up's CNN."""

from __future__ import annotations

import numpy as np

from scratchcnn import layers as L
from scratchcnn.models._common import check_common, scaled


def seed_cnn(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    rng: np.random.Generator | None = None,
    dtype: type = np.float32,
    width: float = 1.0,
) -> L.Sequential:
    """The seed write-up's CNN: 545,098 parameters for 32x32 RGB inputs and 10 classes.

    conv 3->32 (3x3, same) -> ReLU -> maxpool 2 -> conv 32->64 (3x3, same) -> ReLU -> maxpool 2
    -> flatten (64 * 8 * 8 = 4096) -> linear 4096->128 -> ReLU -> linear 128->num_classes.
    ``width`` multiplies the 32, 64 and 128 (``width=1`` is the write-up's model).

    Args:
        num_classes: outputs of the last layer.
        in_channels: channels of the input images (3 for RGB).
        image_size: side of the square input images; sets the first linear layer's width.
        rng: the generator the initial weights are drawn from; ``None`` draws a fresh one.
        dtype: dtype of the parameters.
        width: multiplies every layer's channel count.

    Shape: ``(N, in_channels, image_size, image_size) -> (N, num_classes)`` logits.
    """
    check_common("seed_cnn", num_classes, in_channels, image_size, width)
    if image_size % 4:
        raise ValueError(f"image_size must be divisible by 4 (two 2x2 pools), got {image_size}")
    rng = rng if rng is not None else np.random.default_rng(0)
    c1, c2, hidden = (scaled(c, width) for c in (32, 64, 128))
    flat = c2 * (image_size // 4) ** 2
    return L.Sequential(
        L.Conv2d(in_channels, c1, 3, padding="same", rng=rng, dtype=dtype),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Conv2d(c1, c2, 3, padding="same", rng=rng, dtype=dtype),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Flatten(),
        L.Linear(flat, hidden, rng=rng, dtype=dtype),
        L.ReLU(),
        L.Linear(hidden, num_classes, rng=rng, dtype=dtype),
    )
