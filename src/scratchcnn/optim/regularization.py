"""Explicit L1 and L2 penalties that return their value and add their gradient to ``p.grad``.

Call them after the backward pass and before ``optimizer.step()``: backward overwrites
``p.grad`` with the data-loss gradient, then the penalty adds its own gradient on top. Add the
returned value to the data loss if you want to log the total objective. Frozen parameters
(``requires_grad = False``) are not penalised: no optimizer moves them, so their penalty is a
constant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from scratchcnn.parameter import Parameter

__all__ = ["l1_penalty", "l2_penalty"]


def _check_strength(strength: float) -> float:
    strength = float(strength)
    if not (math.isfinite(strength) and strength >= 0.0):
        raise ValueError(f"strength must be a finite number >= 0, got {strength}")
    return strength


def _penalised(params: Iterable[Parameter], skip_1d: bool) -> list[Parameter]:
    """The parameters a penalty applies to: trainable ones, and (with ``skip_1d``) only those
    with two or more dimensions. A frozen parameter's penalty would be a constant."""
    return [p for p in params if p.requires_grad and not (skip_1d and p.data.ndim <= 1)]


def l2_penalty(params: Iterable[Parameter], strength: float, skip_1d: bool = True) -> float:
    """Return ``0.5 * strength * sum(w**2)`` and add ``strength * w`` to each ``p.grad``.

    The ``0.5`` makes ``strength`` equal to an optimizer's ``weight_decay`` (both add
    ``strength * w`` to the gradient). Must run after backward, which overwrites ``p.grad``.

    Args:
        params: parameters to penalise.
        strength: penalty coefficient, ``>= 0``.
        skip_1d: leave 1-D (and 0-D) parameters alone: biases and batch-norm scales/shifts,
            which are conventionally not decayed.

    Returns:
        The penalty value as a Python float.

    Shape: each ``p.grad`` keeps the shape and dtype of ``p.data``.
    """
    strength = _check_strength(strength)
    total = 0.0
    for param in _penalised(params, skip_1d):
        flat = param.data.reshape(-1).astype(np.float64, copy=False)
        total += float(np.dot(flat, flat))
        param.grad += strength * param.data
    return 0.5 * strength * total


def l1_penalty(params: Iterable[Parameter], strength: float, skip_1d: bool = True) -> float:
    """Return ``strength * sum(|w|)`` and add ``strength * sign(w)`` to each ``p.grad``.

    ``sign(0) = 0`` is the subgradient used at zero. Must run after backward, which
    overwrites ``p.grad``.

    Args:
        params: parameters to penalise.
        strength: penalty coefficient, ``>= 0``.
        skip_1d: leave 1-D (and 0-D) parameters alone (biases, batch-norm scales/shifts).

    Returns:
        The penalty value as a Python float.

    Shape: each ``p.grad`` keeps the shape and dtype of ``p.data``.
    """
    strength = _check_strength(strength)
    total = 0.0
    for param in _penalised(params, skip_1d):
        total += float(np.abs(param.data).sum(dtype=np.float64))
        param.grad += strength * np.sign(param.data)
    return strength * total
