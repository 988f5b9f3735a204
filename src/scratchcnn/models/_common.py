"""Argument checks and building blocks shared by the zoo's model builders."""

from __future__ import annotations

import math

import numpy as np

from scratchcnn import layers as L
from scratchcnn.layers.base import Layer


def check_common(
    model: str, num_classes: int, in_channels: int, image_size: int, width: float
) -> None:
    """Reject bad arguments every builder takes, naming the model, before building anything."""
    for name, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("image_size", image_size),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{model}: {name} must be an int >= 1, got {value!r}")
    if (
        isinstance(width, bool)
        or not isinstance(width, (int, float, np.number))
        or not math.isfinite(width)
        or width <= 0
    ):
        raise ValueError(f"{model}: width must be a number > 0, got {width!r}")


def check_choice(model: str, name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{model}: {name} must be one of {choices}, got {value!r}")
    return value  # type: ignore[return-value]


def check_int_tuple(model: str, name: str, value: object, length: int | None = None) -> tuple:
    """A non-empty sequence of ints >= 1 (of ``length`` items when given), as a tuple."""
    ok = (
        isinstance(value, (tuple, list))
        and len(value) > 0
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
        and min(value) >= 1
    )
    if not ok or (length is not None and len(value) != length):
        count = f"{length} " if length is not None else ""
        raise ValueError(f"{model}: {name} must be a sequence of {count}ints >= 1, got {value!r}")
    return tuple(int(v) for v in value)


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to the nearest int, at least 1 (the width multiplier)."""
    return max(1, round(channels * width))


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    rng: np.random.Generator,
    dtype: type,
    stride: int = 1,
    dilation: int = 1,
    batch_norm: bool = True,
) -> list[Layer]:
    """Conv (no bias: the batch norm's shift replaces it) -> BatchNorm2d -> ReLU; without
    ``batch_norm``, Conv (with bias) -> ReLU.

    Padding keeps the grid at stride 1 (``"same"``) and halves it at stride 2 (``k // 2``).

    Shape: ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """
    padding: int | str = "same" if stride == 1 else dilation * (kernel_size // 2)
    conv = L.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=not batch_norm,
        rng=rng,
        dtype=dtype,
    )
    norm = [L.BatchNorm2d(out_channels, dtype=dtype)] if batch_norm else []
    return [conv, *norm, L.ReLU()]
