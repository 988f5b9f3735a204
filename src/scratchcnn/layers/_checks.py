"""Argument and input checks shared by the layers, so every error reads the same way."""

from __future__ import annotations

import numpy as np


def pair(value: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    """Normalise an int or a pair of ints and check both are >= ``minimum``."""
    received = value  # the error quotes what the caller passed, not the normalised pair
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, (int, np.integer)) for v in value)
    ):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {received!r}")
    return int(value[0]), int(value[1])


def positive_int(value: int, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def check_input(layer: object, x: np.ndarray, ndim: int, channels: int | None, layout: str) -> None:
    """Raise a ``ValueError`` naming the layer, the expected layout and the received shape."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{layer!r} expected a numpy array, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{layer!r} expected input of shape {layout}, got shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{layer!r} expected input of shape {layout} with {channels} channels/features, "
            f"got shape {x.shape}"
        )
