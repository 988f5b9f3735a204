"""Weight initialisation, always drawing from a ``numpy.random.Generator`` that is passed in."""

from __future__ import annotations

import math

import numpy as np

INITIALIZERS = ("he", "xavier", "zeros")


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight: ``(in * kh * kw, out * kh * kw)`` for a conv kernel.

    Shape: ``(out, in)`` or ``(out, in, kh, kw)``.
    """
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def he_normal(shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """He/Kaiming normal: ``N(0, 2 / fan_in)``, which keeps ReLU activations' variance steady."""
    fan_in, _ = fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def xavier_uniform(
    shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """Xavier/Glorot uniform: ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def zeros(shape: tuple[int, ...], rng: np.random.Generator | None = None, dtype=np.float32):
    """All zeros (biases, or a layer you want to start as the identity's complement)."""
    return np.zeros(shape, dtype=dtype)


def initialize(
    name: str, shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """Draw a weight by initializer name: ``"he"``, ``"xavier"`` or ``"zeros"``."""
    if name == "he":
        return he_normal(shape, rng, dtype)
    if name == "xavier":
        return xavier_uniform(shape, rng, dtype)
    if name == "zeros":
        return zeros(shape, rng, dtype)
    raise ValueError(f"init must be one of {INITIALIZERS}, got {name!r}")
