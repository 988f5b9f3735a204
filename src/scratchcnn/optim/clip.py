"""Gradient clipping by the global L2 norm over all parameters (PyTorch's ``clip_grad_norm_``)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from scratchcnn.parameter import Parameter

__all__ = ["clip_grad_norm"]


def clip_grad_norm(
    params: Iterable[Parameter], max_norm: float, error_if_nonfinite: bool = False
) -> float:
    """Scale all gradients in place so that their joint L2 norm is at most ``max_norm``.

    With ``total = sqrt(sum_p ||p.grad||^2)`` (one norm over every gradient entry), each
    gradient is multiplied by ``min(1, max_norm / (total + 1e-6))``, exactly as PyTorch does;
    the ``1e-6`` keeps the division finite for an all-zero gradient. Call it after ``backward``
    and before ``optimizer.step()``. Frozen parameters (``requires_grad = False``) are left
    out of the norm and left alone, as PyTorch leaves out parameters without a gradient: their
    ``grad`` is not used by any optimizer and may be stale.

    Args:
        params: parameters whose ``grad`` is clipped; an iterable (e.g. a generator) is fine.
        max_norm: the largest allowed global norm, ``> 0``.
        error_if_nonfinite: raise if the norm is ``nan`` or ``inf`` instead of (as PyTorch
            does by default) scaling the gradients by a non-finite factor.

    Returns:
        The global norm before clipping, as a Python float.

    Shape: each ``p.grad`` keeps its shape and dtype.
    """
    max_norm = float(max_norm)
    if not max_norm > 0.0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    params = [param for param in params if param.requires_grad]
    if not params:
        return 0.0
    # Accumulate in float64 so that many float32 gradients do not lose precision.
    sum_sq = 0.0
    for param in params:
        flat = param.grad.reshape(-1).astype(np.float64, copy=False)
        sum_sq += float(np.dot(flat, flat))
    total_norm = math.sqrt(sum_sq)
    if error_if_nonfinite and not math.isfinite(total_norm):
        raise RuntimeError(
            f"clip_grad_norm: the total gradient norm is {total_norm}; expected a finite value"
        )
    clip_coef = max_norm / (total_norm + 1e-6)
    if not clip_coef >= 1.0:  # also true for nan, so non-finite norms propagate like torch
        for param in params:
            param.grad *= clip_coef
    return total_norm
